// Large tensors end to end (issue #12 item 6): a 64 MB FP32 tensor through a
// one-op model and back over gRPC (unary and stream) and over HTTP's binary
// extension, on a real gateway and worker, bytes checked on return. The
// path is segmented Execute frames (core/execute-frame.ts) and the gRPC
// codec of gateway/grpc/infer-codec.ts; the default limits (1 GiB) apply.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityModel } from '../../models/build/test-models.js';
import { type ModelInferRequest, type ModelStreamInferResponse } from '../../proto/gen/inference.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';

const MODEL = 'big_fp32';
const BYTES = 64 * 1024 * 1024;

/** Every float different, so a misplaced chunk shows. */
function tensor(bytes: number): Buffer {
  const data = Buffer.allocUnsafe(bytes);
  const f = new Float32Array(data.buffer, data.byteOffset, bytes / 4);
  for (let i = 0; i < f.length; i++) f[i] = i;
  return data;
}

function request(data: Buffer, id = ''): ModelInferRequest {
  return {
    modelName: MODEL,
    modelVersion: '',
    id,
    parameters: {},
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1n, BigInt(data.byteLength / 4)], parameters: {} }],
    outputs: [],
    rawInputContents: [data],
  };
}

describe('large tensors', () => {
  let dir: string;
  let gw: GatewayProcess;
  let data: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fabriek-large-'));
    mkdirSync(join(dir, MODEL, '1'), { recursive: true });
    writeFileSync(join(dir, MODEL, '1', 'model.onnx'), identityModel(MODEL, 'float', ['batch', 'n']));
    // The default liveness check (3 s) stays on: a worker still receiving 64 MB must not look silent.
    gw = await startGateway(['--model-repository', dir, '--log-level', 'warn']);
    data = tensor(BYTES);
  }, 120_000);

  afterAll(async () => {
    await gw?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('64 MB over gRPC comes back byte for byte', async () => {
    const response = await gw.client.modelInfer(request(data), { timeoutMs: 120_000 });
    expect(response.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual([['OUTPUT0', 'FP32', [1n, BigInt(BYTES / 4)]]]);
    expect(response.rawOutputContents[0]?.equals(data)).toBe(true);
  }, 180_000);

  it('64 MB over HTTP with the binary extension comes back byte for byte', async () => {
    const port = /HTTP on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1];
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, BYTES / 4], parameters: { binary_data_size: BYTES } }],
        outputs: [{ name: 'OUTPUT0', parameters: { binary_data: true } }],
      }),
    );
    const res = await fetch(`http://127.0.0.1:${port}/v2/models/${MODEL}/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.byteLength) },
      body: Buffer.concat([header, data]),
      signal: AbortSignal.timeout(120_000),
    });
    expect(res.status).toBe(200);
    const body = Buffer.from(await res.arrayBuffer());
    const jsonLength = Number(res.headers.get('inference-header-content-length'));
    const json = JSON.parse(body.subarray(0, jsonLength).toString('utf8')) as { outputs: { name: string; shape: number[]; parameters: { binary_data_size: number } }[] };
    expect(json.outputs.map((o) => [o.name, o.shape, o.parameters.binary_data_size])).toEqual([['OUTPUT0', [1, BYTES / 4], BYTES]]);
    expect(body.subarray(jsonLength).equals(data)).toBe(true);
  }, 180_000);

  it('ModelStreamInfer answers a large tensor and an error on the same stream', async () => {
    const small = data.subarray(0, 8 * 1024 * 1024);
    const stream = gw.client.raw.modelStreamInfer();
    const answers: ModelStreamInferResponse[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (r: ModelStreamInferResponse) => answers.push(r));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    stream.write(request(small, 'big'));
    stream.write({ ...request(small, 'bad'), inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1n, 3n], parameters: {} }] });
    stream.end();
    await done;
    const byId = new Map(answers.map((a) => [a.inferResponse?.id ?? a.errorMessage, a]));
    expect(byId.get('big')?.inferResponse?.rawOutputContents[0]?.equals(small)).toBe(true);
    expect(answers.filter((a) => a.errorMessage !== '').map((a) => a.errorMessage)).toEqual([expect.stringMatching(/needs 12 bytes, got 8388608/)]);
  }, 180_000);
});
