import { request } from 'node:http';
import { gunzipSync, inflateSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceHttpClient } from '../../client/http-client.js';
import { input } from '../../client/typed-tensors.js';
import { type GatewayProcess, httpUrlOf, startGateway } from '../helpers/gateway-process.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

// Infer answers compressed as Triton compresses them, when the request's
// Accept-Encoding takes gzip or deflate; read here over bare node:http, which
// (unlike fetch) shows the bytes as sent.

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

function post(url: string, path: string, body: object, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** 64 rows of identity_fp32's 16 values: a JSON answer of several KiB. */
const ROWS = 64;
const values = Array.from({ length: ROWS * 16 }, (_, i) => (i % 97) / 4);
const infer = (outputs?: object[]): object => ({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [ROWS, 16], data: values }], ...(outputs ? { outputs } : {}) });

describe('HTTP infer answers compressed', () => {
  let gw: GatewayProcess;
  let url: string;
  beforeAll(async () => {
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--default-max-batch-size', '262144', '--log-level', 'warn']);
    url = httpUrlOf(gw);
  });
  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
  });

  it.each([
    ['gzip', gunzipSync],
    ['deflate', inflateSync],
  ] as const)('in %s when the client takes it, the JSON intact', async (encoding, decode) => {
    const answer = await post(url, '/v2/models/identity_fp32/infer', infer(), { 'accept-encoding': encoding });
    expect(answer.status).toBe(200);
    expect(answer.headers['content-encoding']).toBe(encoding);
    expect(answer.headers['vary']).toBe('accept-encoding');
    const json = JSON.parse(decode(answer.body).toString()) as { outputs: { data: number[] }[] };
    expect(json.outputs[0]?.data).toEqual(values);
    expect(answer.body.byteLength).toBeLessThan(decode(answer.body).byteLength);
  });

  it('with binary outputs, Inference-Header-Content-Length counts the JSON before compression', async () => {
    const answer = await post(url, '/v2/models/identity_fp32/infer', infer([{ name: 'OUTPUT0', parameters: { binary_data: true } }]), { 'accept-encoding': 'gzip;q=0.9, deflate;q=0.5' });
    expect(answer.headers['content-encoding']).toBe('gzip');
    const plain = gunzipSync(answer.body);
    const jsonLength = Number(answer.headers['inference-header-content-length']);
    const json = JSON.parse(plain.subarray(0, jsonLength).toString()) as { outputs: { parameters: { binary_data_size: number } }[] };
    expect(json.outputs[0]?.parameters.binary_data_size).toBe(ROWS * 64);
    const floats = new Float32Array(plain.buffer.slice(plain.byteOffset + jsonLength, plain.byteOffset + plain.byteLength));
    expect([...floats]).toEqual(values);
  });

  it.each([true, false])("the client's compressAnswers reads them (binary %s)", async (binary) => {
    const client = new InferenceHttpClient(url, { compressAnswers: true, binary });
    try {
      const result = await client.infer('identity_fp32', [input('INPUT0', 'FP32', [ROWS, 16], values)]);
      expect([...result.data('OUTPUT0', 'FP32')]).toEqual(values);
    } finally {
      client.close();
    }
  });

  it('uncompressed without Accept-Encoding, with identity or q=0, and for a short answer', async () => {
    for (const headers of [{}, { 'accept-encoding': 'identity' }, { 'accept-encoding': 'gzip;q=0' }] as Record<string, string>[]) {
      const answer = await post(url, '/v2/models/identity_fp32/infer', infer(), headers);
      expect(answer.headers['content-encoding']).toBeUndefined();
      expect((JSON.parse(answer.body.toString()) as { outputs: { data: number[] }[] }).outputs[0]?.data).toEqual(values);
    }
    const short = await post(url, '/v2/models/identity_fp32/infer', { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: values.slice(0, 16) }] }, { 'accept-encoding': 'gzip' });
    expect(short.headers['content-encoding']).toBeUndefined();
    expect(short.body.byteLength).toBeLessThan(1024);
  });

  it('uncompressed past 8 MiB: a large tensor goes as it is', async () => {
    const rows = 9 * 16_384; // 9 MiB of FP32 [rows, 16]
    const big = { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [rows, 16], data: Array.from({ length: rows * 16 }, (_, i) => i % 7) }], outputs: [{ name: 'OUTPUT0', parameters: { binary_data: true } }] };
    const answer = await post(url, '/v2/models/identity_fp32/infer', big, { 'accept-encoding': 'gzip' });
    expect(answer.status).toBe(200);
    expect(answer.headers['content-encoding']).toBeUndefined();
    expect(answer.body.byteLength).toBeGreaterThan(9 << 20);
  });
});
