import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceHttpClient } from '../../client/http-client.js';
import { type InferenceClient } from '../../client/inference-client.js';
import { input } from '../../client/typed-tensors.js';
import { buildModel, EXAMPLE_CONFIGS } from '../../models/build/test-models.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { cacheCounts } from '../helpers/cache-repository.js';
import { failure } from '../helpers/call-outcome.js';
import { waitFor, workerPids } from '../helpers/processes.js';
import { putModel } from '../helpers/model-dir.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';

// Triton ensembles and the response cache (issue #14) in one Triton-layout
// repository, served unchanged by `fabriek serve --cache-config local,size=…`:
// a two-step pipeline and a diamond over add_sub and identity_fp32, and a
// response-cached add_sub, called through the client generated from
// grpc_service.proto (and over HTTP).

const IO = `max_batch_size: 4
input [ { name: "A" data_type: TYPE_FP32 dims: [ 16 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 16 ] } ]
`;
const map = (kind: 'input_map' | 'output_map', pairs: Record<string, string>): string =>
  Object.entries(pairs)
    .map(([k, v]) => `${kind} { key: "${k}" value: "${v}" }`)
    .join(' ');
const step = (model: string, inputs: Record<string, string>, outputs: Record<string, string>): string =>
  `{ model_name: "${model}" model_version: -1 ${map('input_map', inputs)} ${map('output_map', outputs)} }`;

const PIPELINE = `name: "pipeline"
platform: "ensemble"
${IO}output [ { name: "SUM" data_type: TYPE_FP32 dims: [ 16 ] } ]
ensemble_scheduling { step [
  ${step('add_sub', { INPUT0: 'A', INPUT1: 'B' }, { OUTPUT0: 'sum', OUTPUT1: 'diff' })},
  ${step('identity_fp32', { INPUT0: 'sum' }, { OUTPUT0: 'SUM' })}
] }
`;

// (A+B) + (A-B) = 2A and (A+B) - (A-B) = 2B, through two identity branches that run at once.
const DIAMOND = `name: "diamond"
platform: "ensemble"
${IO}output [ { name: "TWICE_A" data_type: TYPE_FP32 dims: [ 16 ] }, { name: "TWICE_B" data_type: TYPE_FP32 dims: [ 16 ] } ]
ensemble_scheduling { step [
  ${step('add_sub', { INPUT0: 'A', INPUT1: 'B' }, { OUTPUT0: 'sum', OUTPUT1: 'diff' })},
  ${step('identity_fp32', { INPUT0: 'sum' }, { OUTPUT0: 'left' })},
  ${step('identity_fp32', { INPUT0: 'diff' }, { OUTPUT0: 'right' })},
  ${step('add_sub', { INPUT0: 'left', INPUT1: 'right' }, { OUTPUT0: 'TWICE_A', OUTPUT1: 'TWICE_B' })}
] }
`;

// The pipeline over the response-cached add_sub: its first step is answered from the cache when it can.
const CACHED_PIPELINE = PIPELINE.replace('name: "pipeline"', 'name: "cached_pipeline"').replace('model_name: "add_sub"', 'model_name: "add_sub_cached"');

// Step 0 writes 'nothing' where step 1 reads 'sum'.
const BROKEN = PIPELINE.replace('name: "pipeline"', 'name: "broken"').replace('value: "sum" }', 'value: "nothing" }');

describe('ensembles', () => {
  let repo: string;
  let gw: GatewayProcess;
  let http: InferenceHttpClient;
  const a = Float32Array.from({ length: 16 }, (_, i) => i + 1);
  const b = Float32Array.from({ length: 16 }, (_, i) => 0.5 * i);

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-ensemble-'));
    const put = (name: string, config: string | undefined, model?: Uint8Array): Promise<void> => putModel(repo, name, config, model);
    await put('add_sub', EXAMPLE_CONFIGS.add_sub, buildModel('add_sub'));
    await put('identity_fp32', undefined, buildModel('identity_fp32'));
    await put('pipeline', PIPELINE);
    await put('diamond', DIAMOND);
    await put('broken', BROKEN);
    const cached = (EXAMPLE_CONFIGS.add_sub ?? '').replace('name: "add_sub"', 'name: "add_sub_cached"');
    await put('add_sub_cached', `${cached}response_cache { enable: true }\n`, buildModel('add_sub'));
    await put('cached_pipeline', CACHED_PIPELINE);
    gw = await startGateway(['--model-repository', repo, '--strict-readiness', 'false', '--cache-config', 'local,size=1048576']);
    const port = / HTTP on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1];
    http = new InferenceHttpClient(`http://127.0.0.1:${port}`);
  });

  afterAll(async () => {
    http?.close();
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  const clients = (): [string, InferenceClient][] => [
    ['gRPC', gw.client],
    ['HTTP', http],
  ];

  it("reports platform 'ensemble' and the ensemble's own inputs and outputs", async () => {
    for (const [protocol, client] of clients()) {
      const md = await client.getModelMetadata('diamond');
      expect(md.platform, protocol).toBe('ensemble');
      expect(md.inputs.map((t) => [t.name, t.shape]), protocol).toEqual([
        ['A', [-1, 16]],
        ['B', [-1, 16]],
      ]);
      expect(md.outputs.map((t) => t.name), protocol).toEqual(['TWICE_A', 'TWICE_B']);
    }
    const { config } = await gw.client.modelConfig('pipeline', '');
    expect(config?.platform).toBe('ensemble');
    expect(config?.schedulingChoice?.$case).toBe('ensembleScheduling');
  });

  it('runs the two-step pipeline and the diamond, answering only the ensemble outputs', async () => {
    for (const [protocol, client] of clients()) {
      const piped = await client.infer('pipeline', [input('A', 'FP32', [1, 16], a), input('B', 'FP32', [1, 16], b)]);
      expect(piped.outputs.map((o) => o.name), protocol).toEqual(['SUM']);
      expect([...piped.output('SUM').as('FP32')], protocol).toEqual([...a].map((x, i) => x + (b[i] ?? 0)));
      const diamond = await client.infer('diamond', [input('A', 'FP32', [2, 16], [...a, ...a]), input('B', 'FP32', [2, 16], [...b, ...b])]);
      expect(diamond.outputs.map((o) => o.name).sort(), protocol).toEqual(['TWICE_A', 'TWICE_B']);
      expect(diamond.output('TWICE_A').shape, protocol).toEqual([2, 16]);
      expect([...diamond.output('TWICE_A').as('FP32')].slice(0, 16), protocol).toEqual([...a].map((x) => 2 * x));
      expect([...diamond.output('TWICE_B').as('FP32')].slice(16), protocol).toEqual([...b].map((x) => 2 * x));
    }
  });

  it("counts statistics for the ensemble and for each step's model", async () => {
    const before = await gw.client.getInferenceStatistics('add_sub');
    await gw.client.infer('diamond', [input('A', 'FP32', [1, 16], a), input('B', 'FP32', [1, 16], b)]);
    const after = await gw.client.getInferenceStatistics('add_sub');
    // The diamond calls add_sub twice.
    expect(Number(after[0]?.inferenceStats?.success?.count ?? 0n) - Number(before[0]?.inferenceStats?.success?.count ?? 0n)).toBe(2);
    const [diamond] = await gw.client.getInferenceStatistics('diamond');
    expect(Number(diamond?.inferenceStats?.success?.count ?? 0n)).toBeGreaterThanOrEqual(3);
  });

  it('answers a repeated request to the cached model with the same bytes, a cache hit and no second execution', async () => {
    const request = (): ModelInferRequest => ({
      modelName: 'add_sub_cached',
      modelVersion: '',
      id: 'r',
      parameters: {},
      inputs: ['INPUT0', 'INPUT1'].map((name) => ({ name, datatype: 'FP32', shape: [1n, 16n], parameters: {} })),
      outputs: [],
      rawInputContents: [Buffer.from(a.buffer), Buffer.from(b.buffer)],
    });
    const first = await gw.client.modelInfer(request());
    const [afterFirst] = await gw.client.getInferenceStatistics('add_sub_cached');
    const second = await gw.client.modelInfer(request());
    const [afterSecond] = await gw.client.getInferenceStatistics('add_sub_cached');
    expect(second.rawOutputContents.map((r) => Buffer.from(r).toString('hex'))).toEqual(first.rawOutputContents.map((r) => Buffer.from(r).toString('hex')));
    expect(second.outputs).toEqual(first.outputs);
    const [x, y] = [cacheCounts(afterFirst), cacheCounts(afterSecond)];
    expect([x.misses, x.hits, x.executions]).toEqual([1, 0, 1]);
    expect([y.misses, y.hits, y.executions, y.success]).toEqual([1, 1, 1, 2]);
  });

  it("answers a step of a response-cached model from the cache, with the keys a direct request uses; the other steps run", async () => {
    const c = Float32Array.from({ length: 16 }, (_, i) => 100 + i);
    const counts = async (model: string) => cacheCounts((await gw.client.getInferenceStatistics(model))[0]);
    const run = () => gw.client.infer('cached_pipeline', [input('A', 'FP32', [1, 16], c), input('B', 'FP32', [1, 16], b)]);
    const [step0, ident0] = [await counts('add_sub_cached'), await counts('identity_fp32')];
    const first = await run();
    const [step1, ident1] = [await counts('add_sub_cached'), await counts('identity_fp32')];
    const second = await run();
    const [step2, ident2] = [await counts('add_sub_cached'), await counts('identity_fp32')];
    expect([...second.output('SUM').as('FP32')]).toEqual([...first.output('SUM').as('FP32')]);
    expect([...first.output('SUM').as('FP32')]).toEqual([...c].map((x, i) => x + (b[i] ?? 0)));
    // First: a miss and a run of the cached step; then a hit and no run. The uncached step runs both times.
    expect([step1.misses - step0.misses, step1.hits - step0.hits, step1.executions - step0.executions]).toEqual([1, 0, 1]);
    expect([step2.misses - step1.misses, step2.hits - step1.hits, step2.executions - step1.executions, step2.success - step1.success]).toEqual([0, 1, 0, 1]);
    expect([ident1.executions - ident0.executions, ident2.executions - ident1.executions]).toEqual([1, 1]);
    // A direct request asking for the outputs the step mapped is a hit on the entry the step made.
    const direct = await gw.client.infer('add_sub_cached', [input('INPUT0', 'FP32', [1, 16], c), input('INPUT1', 'FP32', [1, 16], b)], { outputs: ['OUTPUT0', 'OUTPUT1'] });
    expect([...direct.output('OUTPUT0').as('FP32')]).toEqual([...first.output('SUM').as('FP32')]);
    expect((await counts('add_sub_cached')).hits - step2.hits).toBe(1);
  });

  it('refuses an ensemble whose maps name a tensor nothing produces, naming file and field; the others serve', async () => {
    const index = await gw.client.repositoryIndex();
    const broken = index.models.find((m) => m.name === 'broken');
    expect(broken?.state).toBe('UNAVAILABLE');
    expect(broken?.reason).toMatch(/broken\/config\.pbtxt: ensemble_scheduling\.step\[1\]\.input_map\["INPUT0"\]: expected an ensemble input or a step output, got 'sum', which nothing produces/);
    expect(await gw.client.isModelReady('pipeline')).toBe(true);
  });

  it('fails a request whose input does not fit with the status of the check, and goes UNAVAILABLE while a step is unloaded', async () => {
    const bad = await failure(gw.client.infer('pipeline', [input('A', 'FP32', [1, 16], a), input('B', 'FP32', [1, 8], b.slice(0, 8))]));
    expect(bad.code).toBe(3); // INVALID_ARGUMENT

    await gw.client.unloadModel('identity_fp32');
    expect(await gw.client.isModelReady('pipeline')).toBe(false);
    const index = await gw.client.repositoryIndex();
    expect(index.models.find((m) => m.name === 'diamond')?.reason).toMatch(/step model 'identity_fp32'/);
    const refused = await failure(gw.client.infer('pipeline', [input('A', 'FP32', [1, 16], a), input('B', 'FP32', [1, 16], b)]));
    expect(refused.code).toBe(14); // UNAVAILABLE

    await gw.client.loadModel('identity_fp32');
    expect(await gw.client.isModelReady('pipeline')).toBe(true);
    const again = await gw.client.infer('pipeline', [input('A', 'FP32', [1, 16], a), input('B', 'FP32', [1, 16], b)]);
    expect([...again.output('SUM').as('FP32')][3]).toBe((a[3] ?? 0) + (b[3] ?? 0));
  });

  it('stays READY through a killed local worker, and answers again once the worker is back', async () => {
    const [worker] = workerPids(gw.child.pid as number);
    expect(worker).toBeDefined();
    process.kill(worker as number, 'SIGKILL');
    await waitFor(async () => workerPids(gw.child.pid as number).some((p) => p !== worker) && (await gw.client.isModelReady('add_sub')), 30_000, 'the worker to restart');
    const answers = (): Promise<boolean> => gw.client.infer('pipeline', [input('A', 'FP32', [1, 16], a), input('B', 'FP32', [1, 16], b)]).then(() => true, () => false);
    await waitFor(answers, 30_000, 'the pipeline to answer');
    const index = await gw.client.repositoryIndex();
    expect(index.models.filter((m) => ['pipeline', 'diamond'].includes(m.name)).map((m) => [m.name, m.state, m.reason])).toEqual([
      ['diamond', 'READY', ''],
      ['pipeline', 'READY', ''],
    ]);
    const again = await gw.client.infer('pipeline', [input('A', 'FP32', [1, 16], a), input('B', 'FP32', [1, 16], b)]);
    expect([...again.output('SUM').as('FP32')][5]).toBe((a[5] ?? 0) + (b[5] ?? 0));
  });
});
