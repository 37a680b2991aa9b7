import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceGrpcClient, input } from '../../client/index.js';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { buildManyModels, constantOf, MANY_MODELS_WIDTH, manyModelName } from '../../models/build/many-models.js';
import { slowChainModel } from '../../models/build/test-models.js';
import { failure } from '../helpers/call-outcome.js';
import { type GatewayProcess, runCli, startGateway } from '../helpers/gateway-process.js';
import { sampleValue } from '../helpers/metrics-text.js';

// --model-control-mode on-demand (issue 13 item 4) on the real CLI: twelve
// small distinct models (y = x + c_i) under a budget of four, a slow model to
// keep busy, a model whose load fails, and a tenant limited to two models.

const COUNT = 12;
const BUDGET = 4;
const KEYS = { all: 'all-key-0123456789', narrow: 'narrow-key-0123456789' } as const;
const X = Float32Array.from({ length: MANY_MODELS_WIDTH }, (_, k) => k);
const SLOW_WIDTH = 512;
const CHAIN = `name: "chain"
platform: "ensemble"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_FP32 dims: [ ${MANY_MODELS_WIDTH} ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ ${MANY_MODELS_WIDTH} ] } ]
ensemble_scheduling { step [ { model_name: "${manyModelName(0)}" model_version: -1 input_map { key: "x" value: "X" } output_map { key: "y" value: "Y" } } ] }
`;

async function buildRepository(): Promise<string> {
  const repo = await mkdtemp(join(tmpdir(), 'fabriek-on-demand-'));
  await buildManyModels(repo, COUNT);
  await mkdir(join(repo, 'slow', '1'), { recursive: true });
  // 1 MiB of weights, tens of ms a request of 4 rows: a model that stays busy.
  await writeFile(join(repo, 'slow', '1', 'model.onnx'), slowChainModel('slow', SLOW_WIDTH, 2048));
  await mkdir(join(repo, 'broken', '1'), { recursive: true });
  await writeFile(join(repo, 'broken', '1', 'model.onnx'), 'not an onnx model');
  await mkdir(join(repo, 'chain', '1'), { recursive: true });
  await writeFile(join(repo, 'chain', 'config.pbtxt'), CHAIN);
  return repo;
}

async function expectOwnAnswer(client: InferenceGrpcClient, i: number): Promise<void> {
  const r = await client.infer(manyModelName(i), [input('x', 'FP32', [1, MANY_MODELS_WIDTH], X)], { timeoutMs: 20_000 });
  expect([...r.data('y', 'FP32')], manyModelName(i)).toEqual([...X].map((v) => v + constantOf(i)));
}

/** Enough slow calls to keep the model busy while five others load and go (under a loaded machine too). */
const SLOW_CALLS = 48;

function slowCall(client: InferenceGrpcClient): Promise<unknown> {
  const rows = 4;
  return client.infer('slow', [input('input', 'FP32', [rows, SLOW_WIDTH], new Float32Array(rows * SLOW_WIDTH).fill(0.5))], { timeoutMs: 30_000 });
}

function shuffled(n: number, seed: number): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  let s = seed;
  for (let i = n - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j] as number, out[i] as number];
  }
  return out;
}

function metricsUrlOf(gw: GatewayProcess): string {
  return `http://127.0.0.1:${/metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}/metrics`;
}

async function metric(url: string, series: string): Promise<number> {
  return sampleValue(await (await fetch(url)).text(), series) ?? Number.NaN;
}

describe(`--model-control-mode on-demand, ${COUNT} models, --model-memory-budget ${BUDGET}models`, () => {
  let repo: string;
  let gw: GatewayProcess;
  let client: InferenceGrpcClient;
  let metricsUrl: string;

  beforeAll(async () => {
    repo = await buildRepository();
    const tenants = join(repo, 'tenants.yaml');
    await writeFile(
      tenants,
      [
        'tenants:',
        '  all:',
        `    keys: [ "${hashKey(KEYS.all)}" ]`,
        '    models: [ "*" ]',
        '  narrow:',
        `    keys: [ "${hashKey(KEYS.narrow)}" ]`,
        `    models: [ "${manyModelName(0)}", "${manyModelName(1)}" ]`,
      ].join('\n'),
    );
    gw = await startGateway(['--model-repository', repo, '--model-control-mode', 'on-demand', '--model-memory-budget', `${BUDGET}models`, '--workers', '1', '--tenants', tenants, '--log-level', 'warn']);
    client = new InferenceGrpcClient(gw.address, { metadata: { authorization: `Bearer ${KEYS.all}` } });
    metricsUrl = metricsUrlOf(gw);
  }, 60_000);

  afterAll(async () => {
    client?.close();
    if (gw) expect(await gw.stop()).toBe(0);
    if (repo) await rm(repo, { recursive: true, force: true });
  });

  it('lists every model, none loaded, in the index and the ready line; the server is ready', async () => {
    expect(gw.readyLine).toContain(`0 model versions ready (); on demand within ${BUDGET} models per worker: ${COUNT + 2} model versions (broken/1, model_00000/1,`);
    const index = await client.repositoryIndex();
    expect(index.models).toHaveLength(COUNT + 3);
    expect(gw.readyLine).toContain('; unavailable: chain;');
    const chain = index.models.find((m) => m.name === 'chain');
    expect(chain).toMatchObject({ state: 'UNAVAILABLE', reason: expect.stringMatching(/^ensembles are not served in --model-control-mode on-demand/) });
    for (const m of index.models.filter((x) => x !== chain)) expect(m).toMatchObject({ state: 'UNAVAILABLE', reason: expect.stringMatching(/^not loaded \(--model-control-mode on-demand/) });
    expect(await client.isServerReady()).toBe(true);
    expect(await metric(metricsUrl, 'fabriek_model_memory_budget{unit="models"}')).toBe(BUDGET);
  });

  it('answers an ensemble UNAVAILABLE, saying why', async () => {
    const refused = await failure(client.infer('chain', [input('X', 'FP32', [1, MANY_MODELS_WIDTH], X)], { timeoutMs: 5_000 }));
    expect(refused.message).toMatch(/^UNAVAILABLE: model 'chain': ensembles are not served in --model-control-mode on-demand \(their steps would be loaded and evicted one by one\)/);
  });

  it('coalesces concurrent first requests for a model into one load', async () => {
    await Promise.all(Array.from({ length: 8 }, () => expectOwnAnswer(client, 0)));
    expect(await metric(metricsUrl, 'fabriek_model_loads_total{result="ok"}')).toBe(1);
    expect(await metric(metricsUrl, 'fabriek_model_cold_start_seconds_count')).toBe(1);
  });

  it('answers every model right in random order, never holding more than the budget', async () => {
    const order = [...shuffled(COUNT, 7), ...shuffled(COUNT, 11)];
    let next = 0;
    await Promise.all(
      Array.from({ length: 3 }, async () => {
        for (let k = next++; k < order.length; k = next++) await expectOwnAnswer(client, order[k] as number);
      }),
    );
    expect(await metric(metricsUrl, 'fabriek_models_loaded_peak{worker="cpu0"}')).toBeLessThanOrEqual(BUDGET);
    expect(await metric(metricsUrl, 'fabriek_models_loaded{worker="cpu0"}')).toBeLessThanOrEqual(BUDGET);
    expect(await metric(metricsUrl, 'fabriek_model_evictions_total')).toBeGreaterThan(0);
    const ready = (await client.repositoryIndex(true)).models.length;
    expect(ready).toBeLessThanOrEqual(BUDGET);
  });

  it('never evicts a model with requests in flight or queued', async () => {
    let slowDone = false;
    const slow = Promise.all(Array.from({ length: SLOW_CALLS }, () => slowCall(client))).finally(() => {
      slowDone = true;
    });
    // Wait until slow is loaded and busy, then load more models than the budget holds.
    while ((await client.repositoryIndex(true)).models.every((m) => m.name !== 'slow')) await new Promise((r) => setTimeout(r, 10));
    const evictionsBefore = await metric(metricsUrl, 'fabriek_model_evictions_total');
    for (let i = 2; i < 2 + BUDGET + 1; i++) await expectOwnAnswer(client, i);
    // The others came and went while slow was still busy...
    expect(slowDone).toBe(false);
    expect(await metric(metricsUrl, 'fabriek_model_evictions_total')).toBeGreaterThan(evictionsBefore);
    await slow;
    // ...and slow was never unloaded: its series (dropped at an unload) counts every request.
    expect(await metric(metricsUrl, 'nv_inference_request_success{model="slow",version="1"}')).toBe(SLOW_CALLS);
  }, 30_000);

  it('answers a failing load with its reason and does not retry it on every request', async () => {
    const empty = { modelVersion: '', id: '', parameters: {}, inputs: [], outputs: [], rawInputContents: [] };
    const first = await failure(client.modelInfer({ modelName: 'broken', ...empty }));
    expect(first.message).toMatch(/^UNAVAILABLE: cannot load model 'broken\/1' on demand: .*Protobuf parsing failed.* \(next attempt in 1 s at the earliest\)$/);
    const again = await failure(client.modelInfer({ modelName: 'broken', ...empty }));
    expect(again.message).toMatch(/^UNAVAILABLE: cannot load model 'broken\/1' on demand: .+ \(next attempt in 1 s\)$/);
    expect(await metric(metricsUrl, 'fabriek_model_loads_total{result="failed"}')).toBe(1);
  });

  it('lets a request whose deadline passes while its model loads leave; the load still completes', async () => {
    const loadsBefore = await metric(metricsUrl, 'fabriek_model_loads_total{result="ok"}');
    const late = await failure(client.infer(manyModelName(COUNT - 1), [input('x', 'FP32', [1, MANY_MODELS_WIDTH], X)], { timeoutMs: 1 }));
    expect(late.message).toMatch(/deadline/i);
    const until = Date.now() + 10_000;
    while ((await metric(metricsUrl, 'fabriek_model_loads_total{result="ok"}')) === loadsBefore && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    await expectOwnAnswer(client, COUNT - 1);
    expect(await metric(metricsUrl, 'fabriek_model_loads_total{result="ok"}')).toBe(loadsBefore + 1);
  });

  it('loads a model for its metadata or config, as clients ask for them before the first request', async () => {
    const loaded = new Set((await client.repositoryIndex(true)).models.map((m) => m.name));
    const [a, b] = Array.from({ length: COUNT }, (_, i) => manyModelName(i)).filter((n) => !loaded.has(n));
    expect(b).toBeDefined();
    const md = await client.getModelMetadata(a as string);
    expect(md.inputs.map((t) => [t.name, t.datatype, [...t.shape].map(Number)])).toEqual([['x', 'FP32', [-1, MANY_MODELS_WIDTH]]]);
    expect((await client.getModelConfig(b as string)).maxBatchSize).toBeGreaterThan(0);
  });

  it('lets a tenant cause loads only of models it may use', async () => {
    const narrow = new InferenceGrpcClient(gw.address, { metadata: { authorization: `Bearer ${KEYS.narrow}` } });
    try {
      const loadsBefore = await metric(metricsUrl, 'fabriek_model_loads_total{result="ok"}');
      const refused = await failure(narrow.infer(manyModelName(5), [input('x', 'FP32', [1, MANY_MODELS_WIDTH], X)], { timeoutMs: 10_000 }));
      expect(refused.message).toBe(`PERMISSION_DENIED: tenant 'narrow' may not use model '${manyModelName(5)}'`);
      expect((await failure(narrow.getModelMetadata(manyModelName(5)))).message).toMatch(/^PERMISSION_DENIED: /);
      expect(await metric(metricsUrl, 'fabriek_model_loads_total{result="ok"}')).toBe(loadsBefore);
      await expectOwnAnswer(narrow, 1);
    } finally {
      narrow.close();
    }
  });
});

describe('--model-control-mode on-demand with a budget in bytes', () => {
  let repo: string;
  let gw: GatewayProcess;

  beforeAll(async () => {
    repo = await buildRepository();
    gw = await startGateway(['--model-repository', repo, '--model-control-mode', 'on-demand', '--model-memory-budget', '1MiB', '--workers', '1', '--log-level', 'warn']);
  }, 60_000);

  afterAll(async () => {
    if (gw) expect(await gw.stop()).toBe(0);
    if (repo) await rm(repo, { recursive: true, force: true });
  });

  it('keeps the estimated bytes within the budget, and answers 429 for a model larger than it', async () => {
    const http = /HTTP on ([^ ;]+)/.exec(gw.readyLine)?.[1];
    // Over HTTP too, a model's metadata comes from its load.
    const md = await fetch(`http://${http}/v2/models/${manyModelName(0)}`);
    expect(md.status).toBe(200);
    expect(((await md.json()) as { inputs: unknown[] }).inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [-1, MANY_MODELS_WIDTH] }]);
    for (const i of shuffled(COUNT, 3)) await expectOwnAnswer(gw.client, i);
    const url = metricsUrlOf(gw);
    expect(await metric(url, 'fabriek_model_loaded_bytes_peak{worker="cpu0"}')).toBeLessThanOrEqual(2 ** 20);
    expect(await metric(url, 'fabriek_models_loaded_peak{worker="cpu0"}')).toBe(3);
    const body = JSON.stringify({ inputs: [{ name: 'input', shape: [1, SLOW_WIDTH], datatype: 'FP32', data: new Array<number>(SLOW_WIDTH).fill(0) }] });
    const res = await fetch(`http://${http}/v2/models/slow/infer`, { method: 'POST', body });
    expect(res.status).toBe(429);
    expect(((await res.json()) as { error: string }).error).toMatch(/^cannot load model 'slow\/1' on demand: 'slow\/1' needs 1\.\d+ MiB, more than the whole budget of 1 MiB per worker$/);
    expect(await metric(url, 'fabriek_model_loads_total{result="refused"}')).toBe(1);
  });
});

describe('on-demand flags', () => {
  it('refuse a bare budget and a budget without on-demand: exit 2 with the reason', async () => {
    const bare = await runCli(['serve', '--model-repository', '.', '--model-control-mode', 'on-demand', '--model-memory-budget', '100']);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toMatch(/^fabriek: --model-memory-budget: expected a size with a unit \(4GiB, 512MiB, 2GB\) or a count of models \(100models\), got '100': a bare number has no unit/);
    const stray = await runCli(['serve', '--model-repository', '.', '--model-memory-budget', '4GiB']);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toMatch(/^fabriek: --model-memory-budget is used only with --model-control-mode on-demand \(the mode is none\)/);
  });
});
