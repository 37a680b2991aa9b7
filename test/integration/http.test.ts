// The KServe v2 REST API of the real `fabriek serve` CLI, driven by node's fetch.
import { mkdir, mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync, deflateSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Datatype } from '../../core/datatypes.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { sample } from '../helpers/tensor-data.js';
import { IDENTITY_MODELS, TEST_REPOSITORY, TEST_REPOSITORY_MODELS } from '../helpers/test-repository.js';

type Json = Record<string, unknown>;

/** Starts the CLI with HTTP on a free port; the args are harmless if the helper passes them too. */
async function startHttpGateway(args: string[]): Promise<{ gw: GatewayProcess; base: string }> {
  const gw = await startGateway([...args, '--http-port', '0', '--http-address', '127.0.0.1', '--log-level', 'warn']);
  const port = /HTTP on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1];
  if (port === undefined) throw new Error(`no HTTP port in the ready line: ${gw.readyLine}`);
  return { gw, base: `http://127.0.0.1:${port}` };
}

async function expectError(res: Response, status: number, message: RegExp): Promise<void> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/json');
  expect((JSON.parse(text) as { error: string }).error).toMatch(message);
}

/** Splits a binary-extension response into its JSON header and binary parts. */
async function splitBinary(res: Response): Promise<{ json: Json; rest: Buffer }> {
  const body = Buffer.from(await res.arrayBuffer());
  const length = Number(res.headers.get('inference-header-content-length'));
  expect(Number.isInteger(length)).toBe(true);
  return { json: JSON.parse(body.subarray(0, length).toString()) as Json, rest: body.subarray(length) };
}

function binaryBody(json: unknown, ...parts: Uint8Array[]): { body: Buffer; headers: Record<string, string> } {
  const head = Buffer.from(JSON.stringify(json));
  return {
    body: Buffer.concat([head, ...parts]),
    headers: { 'inference-header-content-length': String(head.byteLength), 'content-type': 'application/octet-stream' },
  };
}

const IDENTITY = IDENTITY_MODELS;

/** JSON values for a datatype; UINT64's sample is past 2^53, which JSON numbers cannot carry exactly. */
function jsonValues(datatype: Datatype, count: number): unknown[] {
  if (datatype === 'UINT64') return Array.from({ length: count }, (_, i) => i * 1_000_003);
  const c = sample(datatype, count).contents;
  if (!c) throw new Error(`${datatype} has no JSON form`);
  if (datatype === 'BYTES') return c.bytesContents.map((b) => b.toString('utf8'));
  const all: unknown[][] = [c.boolContents, c.intContents, c.int64Contents.map(Number), c.uintContents, c.fp32Contents, c.fp64Contents];
  return all.find((a) => a.length > 0) ?? [];
}

describe('KServe v2 REST API', () => {
  let gw: GatewayProcess;
  let base: string;
  const post = (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(base + path, {
      method: 'POST',
      body: body instanceof Uint8Array ? body : JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...headers },
    });

  beforeAll(async () => {
    ({ gw, base } = await startHttpGateway(['--model-repository', TEST_REPOSITORY, '--max-message-bytes', String(1 << 20)]));
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
  });

  it('names the HTTP port in the ready line', () => {
    expect(gw.readyLine).toMatch(/HTTP on 127\.0\.0\.1:\d+/);
  });

  it('answers health probes with 200 and an empty body', async () => {
    for (const path of ['/v2/health/live', '/v2/health/ready', '/v2/models/add_sub/ready', '/v2/models/add_sub/versions/1/ready']) {
      const res = await fetch(base + path);
      expect(res.status, path).toBe(200);
      expect(await res.text()).toBe('');
    }
    expect((await fetch(`${base}/v2/models/nope/ready`)).status).toBe(400);
    expect((await fetch(`${base}/v2/models/add_sub/versions/9/ready`)).status).toBe(400);
  });

  it('answers server and model metadata', async () => {
    const server = (await (await fetch(`${base}/v2`)).json()) as Json;
    expect(server).toMatchObject({ name: 'fabriek' });
    expect(server['extensions']).toContain('model_repository');
    for (const path of ['/v2/models/add_sub', '/v2/models/add_sub/versions/1']) {
      expect(await (await fetch(base + path)).json()).toEqual({
        name: 'add_sub',
        versions: ['1'],
        platform: 'onnxruntime_onnx',
        inputs: [
          { name: 'INPUT0', datatype: 'FP32', shape: [-1, 16] },
          { name: 'INPUT1', datatype: 'FP32', shape: [-1, 16] },
        ],
        outputs: [
          { name: 'OUTPUT0', datatype: 'FP32', shape: [-1, 16] },
          { name: 'OUTPUT1', datatype: 'FP32', shape: [-1, 16] },
        ],
      });
    }
    const fixed = (await (await fetch(`${base}/v2/models/fixed_fp32`)).json()) as { inputs: Json[] };
    expect(fixed.inputs[0]?.['shape']).toEqual([2, 3]);
  });

  it('prints the model config as Triton does: snake_case, enums by name', async () => {
    const cfg = (await (await fetch(`${base}/v2/models/add_sub/config`)).json()) as Json;
    expect(cfg).toMatchObject({ name: 'add_sub', platform: 'onnxruntime_onnx', max_batch_size: 4 });
    expect(cfg['input']).toEqual([
      expect.objectContaining({ name: 'INPUT0', data_type: 'TYPE_FP32', dims: [16] }),
      expect.objectContaining({ name: 'INPUT1', data_type: 'TYPE_FP32', dims: [16] }),
    ]);
    expect(JSON.stringify(cfg['instance_group'])).toMatch(/"kind":"KIND_(CPU|GPU)"/);
    expect((cfg['parameters'] as Record<string, Json>)['execution_provider']?.['string_value']).toMatch(/cpu/);
    const fixed = (await (await fetch(`${base}/v2/models/fixed_fp32/versions/1/config`)).json()) as Json;
    expect(fixed['max_batch_size']).toBe(0);
  });

  it('lists the repository index, all or ready only', async () => {
    const all = (await (await post('/v2/repository/index', {})).json()) as Json[];
    expect(all.map((m) => m['name']).sort()).toEqual([...TEST_REPOSITORY_MODELS].sort());
    for (const m of all) expect(m).toMatchObject({ version: '1', state: 'READY' });
    const empty = await fetch(`${base}/v2/repository/index`, { method: 'POST' });
    expect(((await empty.json()) as Json[]).length).toBe(all.length);
    expect(((await (await post('/v2/repository/index', { ready: true })).json()) as Json[]).length).toBe(all.length);
  });

  it.each(IDENTITY.filter(([, d]) => d !== 'FP16'))('%s: JSON data in, JSON data out', async (model, datatype) => {
    const shape = datatype === 'FP32' ? [2, 16] : [2, 3];
    const values = jsonValues(datatype, shape[0]! * shape[1]!);
    const res = await post(`/v2/models/${model}/infer`, {
      id: `json-${model}`,
      inputs: [{ name: 'INPUT0', datatype, shape, data: values }],
    });
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual({
      model_name: model,
      model_version: '1',
      id: `json-${model}`,
      outputs: [{ name: 'OUTPUT0', datatype, shape, data: values }],
    });
  });

  it.each(IDENTITY)('%s: binary data in, binary data out', async (model, datatype) => {
    const shape = datatype === 'FP32' ? [3, 16] : [2, 5];
    const s = sample(datatype, shape[0]! * shape[1]!);
    const { body, headers } = binaryBody(
      {
        inputs: [{ name: 'INPUT0', datatype, shape, parameters: { binary_data_size: s.raw.byteLength } }],
        parameters: { binary_data_output: true },
      },
      s.raw,
    );
    const res = await post(`/v2/models/${model}/versions/1/infer`, body, headers);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/octet-stream');
    const { json, rest } = await splitBinary(res);
    expect(json['outputs']).toEqual([
      { name: 'OUTPUT0', datatype, shape, parameters: { binary_data_size: s.raw.byteLength } },
    ]);
    expect(rest).toEqual(Buffer.from(s.raw));
  });

  it('takes Timeout-Ms as a deadline, and refuses values that are not one with 400 naming the header', async () => {
    const body = { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 2], data: [1, 2] }] };
    expect((await post('/v2/models/identity_int32/infer', body, { 'timeout-ms': '600000' })).status).toBe(200);
    for (const bad of ['0', '-5', '1.5', 'soon', String(2 ** 31), String(2 ** 53)]) {
      await expectError(await post('/v2/models/identity_int32/infer', body, { 'timeout-ms': bad }), 400, /Timeout-Ms must be a whole number of milliseconds from 1 to 2147483647/);
    }
  });

  it('takes nested data, mixes binary and JSON outputs per output, and keeps the requested order', async () => {
    const a = Array.from({ length: 16 }, (_, i) => i);
    const b = Array.from({ length: 16 }, () => 1);
    const res = await post('/v2/models/add_sub/infer', {
      inputs: [
        { name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: [a] },
        { name: 'INPUT1', datatype: 'FP32', shape: [1, 16], data: b },
      ],
      outputs: [{ name: 'OUTPUT1', parameters: { binary_data: true } }, { name: 'OUTPUT0' }],
    });
    const { json, rest } = await splitBinary(res);
    const outputs = json['outputs'] as Json[];
    expect(outputs.map((o) => o['name'])).toEqual(['OUTPUT1', 'OUTPUT0']);
    expect(outputs[1]?.['data']).toEqual(a.map((x) => x + 1));
    expect([...new Float32Array(new Uint8Array(rest).buffer)]).toEqual(a.map((x) => x - 1));
  });

  it('accepts gzip and deflate request bodies', async () => {
    const request = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 5], data: [1, 2, 3, 4, 5] }] });
    for (const [encoding, body] of [['gzip', gzipSync(request)], ['deflate', deflateSync(request)]] as const) {
      const res = await post('/v2/models/identity_int32/infer', body, { 'content-encoding': encoding });
      expect(res.status, encoding).toBe(200);
      expect(((await res.json()) as { outputs: Json[] }).outputs[0]?.['data']).toEqual([1, 2, 3, 4, 5]);
    }
    await expectError(await post('/v2/models/identity_int32/infer', Buffer.from('not gzip'), { 'content-encoding': 'gzip' }), 400, /cannot decode the gzip body/);
    await expectError(await post('/v2/models/identity_int32/infer', Buffer.from(request), { 'content-encoding': 'br' }), 400, /unsupported Content-Encoding 'br'/);
  });

  it('refuses bodies over --max-message-bytes, compressed or not, with 413', async () => {
    await expectError(await post('/v2/models/identity_fp32/infer', Buffer.alloc((1 << 20) + 1, 32)), 413, /larger than the server's limit of 1048576/);
    const bomb = gzipSync(Buffer.alloc(8 << 20, 32));
    expect(bomb.byteLength).toBeLessThan(1 << 20);
    await expectError(await post('/v2/models/identity_fp32/infer', bomb, { 'content-encoding': 'gzip' }), 413, /larger than the server's limit/);
  });

  it('reports statistics as Triton prints them, per model and for all', async () => {
    const before = (await (await fetch(`${base}/v2/models/identity_int16/stats`)).json()) as { model_stats: Json[] };
    const count = Number(before.model_stats[0]?.['inference_count'] ?? 0);
    const data = [1, 2, 3, 4, 5];
    await post('/v2/models/identity_int16/infer', { inputs: [{ name: 'INPUT0', datatype: 'INT16', shape: [1, 5], data }] });
    // Fails validation against the model (wrong datatype): counted as a failure.
    await post('/v2/models/identity_int16/infer', { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 5], data }] });
    const after = (await (await fetch(`${base}/v2/models/identity_int16/versions/1/stats`)).json()) as { model_stats: Json[] };
    expect(after.model_stats).toHaveLength(1);
    const s = after.model_stats[0] as Record<string, Record<string, { count: number; ns: number }>>;
    expect(s).toMatchObject({ name: 'identity_int16', version: '1', inference_count: count + 1 });
    expect(s['inference_stats']?.['fail']?.count).toBeGreaterThanOrEqual(1);
    for (const key of ['success', 'fail', 'queue', 'compute_input', 'compute_infer', 'compute_output', 'cache_hit', 'cache_miss']) {
      expect(s['inference_stats'], key).toHaveProperty(key);
    }
    const all = (await (await fetch(`${base}/v2/models/stats`)).json()) as { model_stats: Json[] };
    expect(all.model_stats.map((m) => m['name']).sort()).toEqual([...TEST_REPOSITORY_MODELS].sort());
  });

  it('maps errors as Triton does, with {"error": "..."} bodies', async () => {
    await expectError(await fetch(`${base}/v2/models/nope`), 404, /model 'nope' is not in the repository/);
    await expectError(await fetch(`${base}/v2/models/add_sub/versions/7/config`), 404, /has no version '7'/);
    await expectError(await fetch(`${base}/v2/models/nope/stats`), 404, /not in the repository/);
    await expectError(await post('/v2/models/nope/infer', { inputs: [] }), 404, /not in the repository/);
    await expectError(await fetch(`${base}/v2/nowhere`), 404, /no endpoint at GET \/v2\/nowhere/);
    await expectError(await fetch(`${base}/v2/models/add_sub/infer`), 405, /accepts POST, not GET/);
    expect((await fetch(`${base}/v2/models/add_sub/infer`)).headers.get('allow')).toBe('POST');
    await expectError(await post('/v2/models/add_sub', {}), 405, /accepts GET, not POST/);
    await expectError(await post('/v2/models/add_sub/infer', Buffer.from('{"inputs": [')), 400, /failed to parse the request JSON/);
    const fp16 = { inputs: [{ name: 'INPUT0', datatype: 'FP16', shape: [1, 5], data: [1, 2, 3, 4, 5] }] };
    await expectError(await post('/v2/models/identity_fp16/infer', fp16), 400, /FP16 cannot be sent as JSON/);
    const s = sample('FP16', 5);
    const { body, headers } = binaryBody({ inputs: [{ name: 'INPUT0', datatype: 'FP16', shape: [1, 5], parameters: { binary_data_size: 10 } }] }, s.raw);
    await expectError(await post('/v2/models/identity_fp16/infer', body, headers), 400, /FP16 cannot be sent as JSON; ask for it with parameters.binary_data/);
    const wrongType = { inputs: [{ name: 'INPUT0', datatype: 'INT32', shape: [1, 16], data: Array.from({ length: 16 }, () => 0) }] };
    await expectError(await post('/v2/models/identity_fp32/infer', wrongType), 400, /INPUT0/);
    await expectError(await post('/v2/models/identity_int8/infer', { inputs: [{ name: 'INPUT0', datatype: 'INT8', shape: [1, 2], data: [1, 300] }] }), 400, /out of range for INT8/);
    await expectError(await post('/v2/models/identity_int8/infer', body, { 'inference-header-content-length': 'x' }), 400, /must be a non-negative integer/);
    await expectError(await post('/v2/repository/models/no_such_model/load', {}), 404, /no_such_model/);
    await expectError(await post('/v2/repository/models/no_such_model/unload', {}), 404, /no_such_model/);
    await expectError(await post('/v2/repository/models/add_sub/load', { parameters: { config: '{' } }), 400, /not valid JSON/);
  });
});

describe('KServe v2 REST API with a model that failed to load', () => {
  let repo: string;
  let gw: GatewayProcess;
  let base: string;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-http-'));
    await mkdir(join(repo, 'good', '1'), { recursive: true });
    await copyFile(join(TEST_REPOSITORY, 'identity_fp32', '1', 'model.onnx'), join(repo, 'good', '1', 'model.onnx'));
    await mkdir(join(repo, 'broken', '1'), { recursive: true });
    await writeFile(join(repo, 'broken', '1', 'model.onnx'), 'this is not an ONNX model');
    ({ gw, base } = await startHttpGateway(['--model-repository', repo]));
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  it('answers 400 for readiness (as KServe and Triton do) and 503 for inference on the unavailable model', async () => {
    expect((await fetch(`${base}/v2/health/live`)).status).toBe(200);
    expect((await fetch(`${base}/v2/health/ready`)).status).toBe(400);
    expect((await fetch(`${base}/v2/models/broken/ready`)).status).toBe(400);
    expect((await fetch(`${base}/v2/models/good/ready`)).status).toBe(200);
    const body = { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: Array.from({ length: 16 }, () => 1) }] };
    await expectError(
      await fetch(`${base}/v2/models/broken/infer`, { method: 'POST', body: JSON.stringify(body) }),
      503,
      /model 'broken' has no ready version/,
    );
    const index = (await (await fetch(`${base}/v2/repository/index`, { method: 'POST', body: '{"ready":true}' })).json()) as Json[];
    expect(index.map((m) => m['name'])).toEqual(['good']);
  });
});
