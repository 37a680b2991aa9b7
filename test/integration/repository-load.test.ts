// RepositoryModelLoad/Unload (gRPC and REST) on the real CLI and workers, over a temp copy of the test models.
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelInferRequest, type ModelRepositoryParameter } from '../../proto/gen/inference.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { sample } from '../helpers/tensor-data.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

function inferRequest(model: string, inputName: string, shape: number[], version = ''): ModelInferRequest {
  const s = sample('FP32', shape.reduce((n, d) => n * d, 1));
  return {
    modelName: model,
    modelVersion: version,
    id: '',
    parameters: {},
    inputs: [{ name: inputName, datatype: 'FP32', shape: shape.map(BigInt), parameters: {} }],
    outputs: [],
    rawInputContents: [Buffer.from(s.raw.buffer, s.raw.byteOffset, s.raw.byteLength)],
  };
}

async function failure(p: Promise<unknown>): Promise<ServiceError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e as ServiceError,
  );
  expect(error, 'expected the call to fail').toBeDefined();
  return error as ServiceError;
}

describe('repository model load and unload', () => {
  let gw: GatewayProcess;
  let repo: string;
  let base: string;

  const load = (modelName: string, parameters: Record<string, ModelRepositoryParameter> = {}): Promise<void> =>
    new Promise((resolve, reject) =>
      gw.client.raw.repositoryModelLoad({ repositoryName: '', modelName, parameters }, (e) => (e ? reject(e) : resolve())),
    );
  const unload = (modelName: string): Promise<void> =>
    new Promise((resolve, reject) =>
      gw.client.raw.repositoryModelUnload({ repositoryName: '', modelName, parameters: {} }, (e) => (e ? reject(e) : resolve())),
    );
  const indexOf = async (name: string): Promise<Array<{ version: string; state: string; reason: string }>> =>
    (await gw.client.repositoryIndex()).models.filter((m) => m.name === name).map(({ version, state, reason }) => ({ version, state, reason }));
  const identity = (model = 'identity_fp32', version = ''): ReturnType<typeof gw.client.modelInfer> =>
    gw.client.modelInfer(inferRequest(model, 'INPUT0', [2, 16], version));
  const config = (json: unknown): ModelRepositoryParameter => ({ parameterChoice: { $case: 'stringParam', value: JSON.stringify(json) } });

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-load-test-'));
    for (const m of ['identity_fp32', 'mlp', 'add_sub']) await cp(join(TEST_REPOSITORY, m), join(repo, m), { recursive: true });
    // Batches of 8 through the dynamic batcher, so unload has a batcher queue to drain.
    await writeFile(join(repo, 'mlp', 'config.pbtxt'), 'max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 2000 }\n');
    gw = await startGateway(['--model-repository', repo, '--log-level', 'warn']);
    base = `http://127.0.0.1:${/HTTP on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1] ?? ''}`;
  });

  afterAll(async () => {
    const code = await gw?.stop();
    await rm(repo, { recursive: true, force: true });
    expect(code).toBe(0);
  });

  it('unload makes a model UNAVAILABLE "unloaded"; load serves it again', async () => {
    expect((await identity()).modelVersion).toBe('1');
    await unload('identity_fp32');
    const e = await failure(identity());
    expect(GrpcStatus[e.code]).toBe('UNAVAILABLE');
    expect(await indexOf('identity_fp32')).toEqual([{ version: '1', state: 'UNAVAILABLE', reason: 'unloaded' }]);
    expect(await gw.client.modelReady('identity_fp32')).toBe(false);
    await load('identity_fp32');
    expect((await identity()).modelVersion).toBe('1');
    expect(await indexOf('identity_fp32')).toEqual([{ version: '1', state: 'READY', reason: '' }]);
  });

  it('load rescans the directory: a new version 2 becomes the latest', async () => {
    await cp(join(repo, 'identity_fp32', '1'), join(repo, 'identity_fp32', '2'), { recursive: true });
    await load('identity_fp32');
    expect((await identity()).modelVersion).toBe('2');
    expect((await identity('identity_fp32', '2')).modelVersion).toBe('2');
    // The default version policy serves the latest only: version 1 went away.
    expect(await indexOf('identity_fp32')).toEqual([{ version: '2', state: 'READY', reason: '' }]);
    expect(await gw.client.modelReady('identity_fp32', '1')).toBe(false);
  });

  it('load with a config override applies it', async () => {
    await load('identity_fp32', { config: config({ max_batch_size: 2 }) });
    expect((await gw.client.modelConfig('identity_fp32')).config?.maxBatchSize).toBe(2);
    const e = await failure(gw.client.modelInfer(inferRequest('identity_fp32', 'INPUT0', [3, 16])));
    expect(GrpcStatus[e.code]).toBe('INVALID_ARGUMENT');
    await load('identity_fp32', { config: config({ max_batch_size: 4 }) });
    expect((await gw.client.modelConfig('identity_fp32')).config?.maxBatchSize).toBe(4);
    expect((await gw.client.modelInfer(inferRequest('identity_fp32', 'INPUT0', [3, 16]))).outputs[0]?.shape.map(Number)).toEqual([3, 16]);
  });

  it("passes Triton's onnxruntime tuning parameters to the session; a bad one fails the load naming it", async () => {
    const tuned = (value: string): ModelRepositoryParameter =>
      config({ max_batch_size: 4, parameters: { intra_op_thread_count: { string_value: value }, execution_mode: { string_value: '0' } } });
    const e = await failure(load('identity_fp32', { config: tuned('lots') }));
    expect(GrpcStatus[e.code]).toBe('INVALID_ARGUMENT');
    expect(e.details).toMatch(/parameters\["intra_op_thread_count"\]: expected a thread count .* got "lots"/);
    const [entry] = await indexOf('identity_fp32');
    expect(entry?.reason).toMatch(/intra_op_thread_count/);
    await load('identity_fp32', { config: tuned('1') });
    expect((await identity()).outputs[0]?.shape.map(Number)).toEqual([2, 16]);
  });

  it('load with uploaded files serves a model under a new name; unload removes it', async () => {
    const bytes = await readFile(join(TEST_REPOSITORY, 'identity_fp32', '1', 'model.onnx'));
    const file: ModelRepositoryParameter = { parameterChoice: { $case: 'bytesParam', value: bytes } };
    const noConfig = await failure(load('uploaded', { 'file:1/model.onnx': file }));
    expect(GrpcStatus[noConfig.code]).toBe('INVALID_ARGUMENT');
    expect(noConfig.details).toMatch(/config/);

    await load('uploaded', { config: config({ max_batch_size: 8 }), 'file:1/model.onnx': file });
    const res = await identity('uploaded');
    expect(res.modelName).toBe('uploaded');
    expect(res.modelVersion).toBe('1');
    expect(await indexOf('uploaded')).toEqual([{ version: '1', state: 'READY', reason: '' }]);
    await unload('uploaded');
    expect(await indexOf('uploaded')).toEqual([{ version: '1', state: 'UNAVAILABLE', reason: 'unloaded' }]);

    const escape = await failure(load('uploaded', { config: config({}), 'file:../../evil.onnx': file }));
    expect(GrpcStatus[escape.code]).toBe('INVALID_ARGUMENT');
  });

  it('a model that fails to load fails the RPC with the reason and is UNAVAILABLE', async () => {
    const junk: ModelRepositoryParameter = { parameterChoice: { $case: 'bytesParam', value: Buffer.from('not an onnx model') } };
    const e = await failure(load('broken', { config: config({}), 'file:1/model.onnx': junk }));
    expect(GrpcStatus[e.code]).toBe('INVALID_ARGUMENT');
    expect(e.details).toMatch(/failed to load 'broken'/);
    const [entry] = await indexOf('broken');
    expect(entry?.state).toBe('UNAVAILABLE');
    expect(entry?.reason).not.toBe('');
  });

  it('load or unload of an unknown name is NOT_FOUND', async () => {
    expect(GrpcStatus[(await failure(load('no_such_model'))).code]).toBe('NOT_FOUND');
    expect(GrpcStatus[(await failure(unload('no_such_model'))).code]).toBe('NOT_FOUND');
    expect(GrpcStatus[(await failure(load('../identity_fp32'))).code]).toBe('INVALID_ARGUMENT');
  });

  it('unload lets requests already in flight finish; every request gets exactly one answer', async () => {
    const answers: Array<{ ok: boolean; code?: string; at: number }> = [];
    let first!: () => void;
    const firstAnswer = new Promise<void>((r) => (first = r));
    const calls = Array.from({ length: 100 }, () =>
      gw.client.modelInfer(inferRequest('mlp', 'input', [8, 784])).then(
        () => answers.push({ ok: true, at: Date.now() }),
        (e: ServiceError) => answers.push({ ok: false, code: GrpcStatus[e.code], at: Date.now() }),
      ).finally(first),
    );
    // Once one has come back the others are on the server, queued or running.
    await firstAnswer;
    const unloadSentAt = Date.now();
    await unload('mlp');
    const unloadedAt = Date.now();
    await Promise.all(calls);
    expect(answers).toHaveLength(100);
    // Whatever reached the server before the unload ran to completion; later ones were refused.
    for (const a of answers) {
      if (a.ok) expect(a.at).toBeLessThanOrEqual(unloadedAt);
      else expect(a.code).toBe('UNAVAILABLE');
    }
    expect(answers.filter((a) => a.ok && a.at >= unloadSentAt).length, 'answered OK while the unload waited').toBeGreaterThan(0);
    expect(GrpcStatus[(await failure(gw.client.modelInfer(inferRequest('mlp', 'input', [8, 784])))).code]).toBe('UNAVAILABLE');
    await load('mlp');
    await gw.client.modelInfer(inferRequest('mlp', 'input', [8, 784]));
  });

  it('runs concurrent loads and unloads of one name one at a time, in arrival order', async () => {
    await Promise.all([unload('identity_fp32'), load('identity_fp32'), unload('identity_fp32'), load('identity_fp32')]);
    expect((await indexOf('identity_fp32')).map((v) => v.state)).toEqual(['READY']);
    expect((await identity()).modelName).toBe('identity_fp32');
  });

  it('serves load and unload over HTTP with Triton status codes', async () => {
    const post = (path: string, body?: unknown): Promise<Response> =>
      fetch(`${base}/v2/repository/models/${path}`, { method: 'POST', ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const unloaded = await post('add_sub/unload', {});
    expect(unloaded.status).toBe(200);
    const ready = await fetch(`${base}/v2/models/add_sub/ready`);
    expect(ready.status).toBe(400);

    const loaded = await post('add_sub/load', { parameters: { config: JSON.stringify({ max_batch_size: 2 }) } });
    expect(loaded.status, await loaded.text()).toBe(200);
    const cfg = (await (await fetch(`${base}/v2/models/add_sub/config`)).json()) as { max_batch_size: number };
    expect(cfg.max_batch_size).toBe(2);
    expect((await post('add_sub/load')).status).toBe(200);

    const missing = await post('no_such_model/load', {});
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toMatch(/no_such_model/);
    expect((await post('no_such_model/unload')).status).toBe(404);
    const badConfig = await post('add_sub/load', { parameters: { config: '{not json' } });
    expect(badConfig.status).toBe(400);
    const badBody = await fetch(`${base}/v2/repository/models/add_sub/load`, { method: 'POST', body: '{' });
    expect(badBody.status).toBe(400);
    const uploaded = await post('uploaded_http/load', {
      parameters: {
        config: '{}',
        'file:1/model.onnx': (await readFile(join(TEST_REPOSITORY, 'identity_fp32', '1', 'model.onnx'))).toString('base64'),
      },
    });
    expect(uploaded.status, await uploaded.text()).toBe(200);
    expect((await identity('uploaded_http')).modelName).toBe('uploaded_http');
  });
});
