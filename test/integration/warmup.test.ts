import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModel, EXAMPLE_CONFIGS } from '../../models/build/test-models.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { failureSummary, startLoad } from '../helpers/load-driver.js';

// model_warmup (issue #13): samples run on every instance before READY; a
// sample that does not fit fails that model's load, naming file and field.

const WARMUP = `
model_warmup [
  {
    name: "zeros"
    batch_size: 2
    count: 3
    inputs { key: "INPUT0" value { data_type: TYPE_FP32 dims: [ 16 ] zero_data: true } }
    inputs { key: "INPUT1" value { data_type: TYPE_FP32 dims: [ 16 ] random_data: true } }
  }
]
`;

describe('model warm-up', () => {
  let repo: string;
  let gw: GatewayProcess;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-warmup-'));
    const base = (EXAMPLE_CONFIGS.add_sub ?? '').replace('name: "add_sub"\n', '');
    for (const [name, extra] of [
      ['add_sub', `${WARMUP}instance_group [ { count: 2 kind: KIND_CPU } ]\n`],
      ['add_sub_bad', WARMUP.replace('dims: [ 16 ] random_data', 'dims: [ 15 ] random_data')],
    ] as const) {
      await mkdir(join(repo, name, '1'), { recursive: true });
      await writeFile(join(repo, name, '1', 'model.onnx'), buildModel('add_sub'));
      await writeFile(join(repo, name, 'config.pbtxt'), base + extra);
    }
    gw = await startGateway(['--model-repository', repo, '--strict-readiness', 'false']);
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  it('runs the samples before READY, and they are not counted as inferences', async () => {
    const line = gw
      .stderr()
      .split('\n')
      .find((l) => l.includes('"msg":"model warmed up"') && l.includes('"model":"add_sub"'));
    expect(line, gw.stderr()).toBeDefined();
    expect(JSON.parse(line ?? '{}')).toMatchObject({ model: 'add_sub', version: 1, samples: 1 });
    const [stats] = await gw.client.getInferenceStatistics('add_sub');
    expect(stats?.inferenceCount).toBe(0n);
    expect(stats?.executionCount).toBe(0n);
    const load = startLoad(() => gw.client, 2);
    for (let i = 0; i < 200 && load.answered < 10; i++) await new Promise((r) => setTimeout(r, 50));
    expect(load.answered).toBeGreaterThanOrEqual(10);
    expect(failureSummary(await load.stop())).toEqual({});
  });

  it('fails the load of a model whose sample does not fit, naming file and field, and the others serve', async () => {
    expect(await gw.client.isModelReady('add_sub_bad')).toBe(false);
    const index = await gw.client.repositoryIndex();
    const bad = index.models.find((m) => m.name === 'add_sub_bad');
    expect(bad?.state).toBe('UNAVAILABLE');
    expect(bad?.reason).toMatch(/add_sub_bad\/config\.pbtxt: model_warmup\[0\]\.inputs: model 'add_sub_bad': input 'INPUT1': expected shape \[-1,16\], got \[2,15\]/);
    expect(await gw.client.isModelReady('add_sub')).toBe(true);
  });
});
