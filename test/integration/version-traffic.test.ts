import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceHttpClient } from '../../client/http-client.js';
import { input } from '../../client/typed-tensors.js';
import { buildModel, EXAMPLE_CONFIGS } from '../../models/build/test-models.js';
import { type GatewayProcess, httpUrlOf, startGateway } from '../helpers/gateway-process.js';
import { putModel } from '../helpers/model-dir.js';

// A canary inside the server: version_traffic shares the requests that name
// no version among a model's versions by weight; the others get the version
// they name. Two versions of identity_fp32, told apart by model_version.

const canary = (name: string, traffic: string): string =>
  `name: "${name}"\nversion_policy: { all {} }\nparameters { key: "version_traffic" value { string_value: "${traffic}" } }\n`;

describe('version_traffic', () => {
  let repo: string;
  let gw: GatewayProcess;
  let http: InferenceHttpClient;
  const row = Array.from({ length: 16 }, (_, i) => i);

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-traffic-'));
    const identity = buildModel('identity_fp32');
    for (const [name, config] of [
      ['canary', canary('canary', '1:3,2:1')],
      ['only_one', canary('only_one', '1:1,7:1')],
      ['bad_traffic', canary('bad_traffic', '1:90;2:10')],
    ] as const) {
      await putModel(repo, name, config, identity);
      await mkdir(join(repo, name, '2'), { recursive: true });
      await writeFile(join(repo, name, '2', 'model.onnx'), identity);
    }
    const sequence = (EXAMPLE_CONFIGS.running_sum as string).replace('name: "running_sum"', 'name: "sequence_traffic"');
    await putModel(repo, 'sequence_traffic', `${sequence}parameters { key: "version_traffic" value { string_value: "1:1" } }\n`, buildModel('running_sum'));
    // One process whatever the environment says: the round robin is each process's own.
    gw = await startGateway(['--model-repository', repo, '--log-level', 'warn', '--gateway-processes', '1']);
    http = new InferenceHttpClient(httpUrlOf(gw));
  });

  afterAll(async () => {
    http?.close();
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  const served = async (model: string, n: number, version = ''): Promise<string[]> =>
    Promise.all(Array.from({ length: n }, async (_, i) => (await (i % 2 ? http : gw.client).infer(model, [input('INPUT0', 'FP32', [1, 16], row)], { version })).modelVersion));

  it('shares requests without a version 3:1 between versions 1 and 2, over gRPC and HTTP', async () => {
    const versions = await served('canary', 40);
    expect(versions.filter((v) => v === '1')).toHaveLength(30);
    expect(versions.filter((v) => v === '2')).toHaveLength(10);
    const stats = await gw.client.getInferenceStatistics('canary');
    const byVersion = Object.fromEntries(stats.map((s) => [s.version, Number(s.inferenceStats?.success?.count ?? 0n)]));
    expect(byVersion).toEqual({ '1': 30, '2': 10 });
  });

  it('gives a request that names a version that version, whatever the weights', async () => {
    expect(new Set(await served('canary', 8, '2'))).toEqual(new Set(['2']));
    expect(new Set(await served('canary', 8, '1'))).toEqual(new Set(['1']));
  });

  it('gives a listed version that is not served its share to the others', async () => {
    expect(new Set(await served('only_one', 10))).toEqual(new Set(['1']));
    // Said at load, as a probable typo.
    expect(gw.stderr()).toMatch(/"model":"only_one".*"versions":\[7\].*version_traffic lists versions the repository does not have/);
  });

  it('on demand: loads each listed version when its turn comes', async () => {
    const onDemand = await startGateway(['--model-repository', repo, '--log-level', 'warn', '--gateway-processes', '1', '--model-control-mode', 'on-demand']);
    try {
      const versions = await Promise.all(Array.from({ length: 8 }, async () => (await onDemand.client.infer('canary', [input('INPUT0', 'FP32', [1, 16], row)])).modelVersion));
      expect(versions.filter((v) => v === '1')).toHaveLength(6);
      expect(versions.filter((v) => v === '2')).toHaveLength(2);
    } finally {
      await onDemand.stop();
    }
  });

  it('leaves a model whose version_traffic is malformed, or is a sequence model, UNAVAILABLE with the reason', async () => {
    const index = await gw.client.repositoryIndex();
    const reasons = Object.fromEntries(index.models.map((m) => [`${m.name}/${m.version}`, `${m.state}: ${m.reason}`]));
    expect(reasons['bad_traffic/1']).toMatch(/^UNAVAILABLE: parameter 'version_traffic': expected VERSION:WEIGHT pairs separated by commas, e\.g\. "1:90,2:10" \('1:90;2:10' is not VERSION:WEIGHT with whole numbers\)/);
    expect(reasons['sequence_traffic/1']).toMatch(/^UNAVAILABLE: parameter 'version_traffic': expected none on a sequence model/);
    // The others serve.
    expect(await gw.client.modelReady('canary')).toBe(true);
  });
});
