import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildModel, EXAMPLE_CONFIGS } from '../../models/build/test-models.js';
import { failure } from '../helpers/call-outcome.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { failureSummary, startLoad } from '../helpers/load-driver.js';

// --model-control-mode explicit and poll (issue #13), on the real server.

async function place(repo: string, name: 'add_sub' | 'identity_fp32', config?: string): Promise<void> {
  await mkdir(join(repo, name, '1'), { recursive: true });
  await writeFile(join(repo, name, '1', 'model.onnx'), buildModel(name));
  if (config !== undefined) await writeFile(join(repo, name, 'config.pbtxt'), config);
}

/** Waits (bounded) until `check` holds; the poller works on its own clock. */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('model control modes', () => {
  let repo: string | undefined;
  let gw: GatewayProcess | undefined;

  afterEach(async () => {
    if (gw) expect(await gw.stop()).toBe(0);
    gw = undefined;
    if (repo) await rm(repo, { recursive: true, force: true });
  });

  it('explicit: loads only --load-model at start, lists the rest as not loaded, and is ready; the repository API loads them', async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-explicit-'));
    await place(repo, 'identity_fp32');
    await place(repo, 'add_sub', EXAMPLE_CONFIGS.add_sub);
    gw = await startGateway(['--model-repository', repo, '--model-control-mode', 'explicit', '--load-model', 'identity_fp32']);
    const { client } = gw;
    expect(await client.isModelReady('identity_fp32')).toBe(true);
    expect(await client.isModelReady('add_sub')).toBe(false);
    expect(await client.isServerReady()).toBe(true);
    const index = await client.repositoryIndex();
    expect(index.models.find((m) => m.name === 'add_sub')).toMatchObject({ state: 'UNAVAILABLE', reason: expect.stringMatching(/^not loaded/) });
    const refused = await failure(client.modelInfer({ modelName: 'add_sub', modelVersion: '', id: '', parameters: {}, inputs: [], outputs: [], rawInputContents: [] }));
    expect(refused.message).toMatch(/not loaded/);

    await client.loadModel('add_sub');
    expect(await client.isModelReady('add_sub')).toBe(true);
    const load = startLoad(() => client, 2);
    await eventually(async () => load.answered >= 5, 'add_sub answers');
    expect(failureSummary(await load.stop())).toEqual({});
  });

  it('poll: picks up a new model, reloads a changed config without failing requests in flight, unloads a removed one, and refuses the repository API', async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-poll-'));
    const dir = repo;
    await place(dir, 'add_sub', EXAMPLE_CONFIGS.add_sub);
    gw = await startGateway(['--model-repository', dir, '--model-control-mode', 'poll', '--repository-poll-secs', '1']);
    const { client } = gw;
    expect(await client.isModelReady('identity_fp32')).toBe(false);

    await place(dir, 'identity_fp32');
    await eventually(() => client.isModelReady('identity_fp32'), 'the new model is READY');

    const load = startLoad(() => client, 4);
    await eventually(async () => load.answered >= 20, 'add_sub answers before the change');
    const changed = (EXAMPLE_CONFIGS.add_sub ?? '').replace('max_batch_size: 8', 'max_batch_size: 4');
    await writeFile(join(dir, 'add_sub', 'config.pbtxt'), changed);
    await eventually(async () => (await client.getModelConfig('add_sub')).maxBatchSize === 4, 'the changed config is served');
    const before = load.answered;
    await eventually(async () => load.answered >= before + 20, 'add_sub answers after the change');
    const outcomes = await load.stop();
    expect(failureSummary(outcomes)).toEqual({});

    await rm(join(dir, 'identity_fp32'), { recursive: true });
    await eventually(async () => !(await client.isModelReady('identity_fp32')), 'the removed model is unloaded');

    const error = await failure(client.loadModel('identity_fp32'));
    expect(error.code).toBe(14); // UNAVAILABLE, as Triton
    expect(error.message).toMatch(/explicit model load \/ unload is not allowed if polling is enabled/);
    expect((await failure(client.unloadModel('add_sub'))).message).toMatch(/not allowed if polling is enabled/);
  });
});
