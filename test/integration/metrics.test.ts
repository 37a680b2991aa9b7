import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { sample } from '../helpers/tensor-data.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';
import { sampleValue } from '../helpers/metrics-text.js';

const MODEL = 'identity_fp64';
const L = `model="${MODEL}",version="1"`;

function infer(shape: number[], datatype = 'FP64', model = MODEL): ModelInferRequest {
  const elements = shape.reduce((a, b) => a * b, 1);
  const s = sample(datatype === 'FP64' ? 'FP64' : 'FP32', elements);
  return {
    modelName: model,
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [{ name: 'INPUT0', datatype, shape: shape.map(BigInt), parameters: {} }],
    outputs: [],
    rawInputContents: [Buffer.from(s.raw.buffer, s.raw.byteOffset, s.raw.byteLength)],
  };
}

async function code(p: Promise<unknown>): Promise<string> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e as ServiceError,
  );
  return GrpcStatus[error?.code ?? GrpcStatus.OK] ?? 'UNKNOWN';
}

// Unskip once the CLI serves /metrics and prints `metrics on HOST:PORT` in its ready line.
describe('fabriek serve --metrics-port: /metrics counts exactly the requests sent', () => {
  let gw: GatewayProcess;
  let metricsUrl: string;

  beforeAll(async () => {
    gw = await startGateway([
      '--model-repository',
      TEST_REPOSITORY,
      '--log-level',
      'warn',
      '--workers',
      '1',
      '--http-address',
      '127.0.0.1',
      '--http-port',
      '0',
      '--metrics-port',
      '0',
    ]);
    const port = /metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1];
    expect(port, gw.readyLine).toBeDefined();
    metricsUrl = `http://127.0.0.1:${port}/metrics`;
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
  });

  it('serves the Prometheus text format at /metrics and 404 elsewhere', async () => {
    const res = await fetch(metricsUrl);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toMatch(/^fabriek_process_cpu_user_seconds_total /m);
    expect(sampleValue(text, 'fabriek_workers{state="up"}')).toBe(1);
    expect((await fetch(metricsUrl.replace('/metrics', '/nope'))).status).toBe(404);
  });

  it('after 5 good and 3 invalid requests shows exactly those counts', async () => {
    for (let i = 0; i < 5; i++) expect(await code(gw.client.modelInfer(infer([2, 3])))).toBe('OK');
    for (let i = 0; i < 3; i++) expect(await code(gw.client.modelInfer(infer([2, 3], 'FP32')))).toBe('INVALID_ARGUMENT');
    // Unknown models never reach a version: no series, no count.
    expect(await code(gw.client.modelInfer(infer([2, 3], 'FP64', 'nope')))).toBe('NOT_FOUND');

    const text = await (await fetch(metricsUrl)).text();
    expect(sampleValue(text, `nv_inference_request_success{${L}}`)).toBe(5);
    expect(sampleValue(text, `nv_inference_request_failure{${L},reason="OTHER"}`)).toBe(3);
    expect(sampleValue(text, `nv_inference_request_failure{${L},reason="REJECTED"}`)).toBe(0);
    expect(sampleValue(text, `nv_inference_request_failure{${L},reason="CANCELED"}`)).toBe(0);
    expect(sampleValue(text, `nv_inference_request_failure{${L},reason="BACKEND"}`)).toBe(0);
    expect(sampleValue(text, `nv_inference_count{${L}}`)).toBe(10);
    expect(sampleValue(text, `nv_inference_exec_count{${L}}`)).toBe(5);
    expect(sampleValue(text, `fabriek_batch_size_count{${L}}`)).toBe(5);
    expect(sampleValue(text, `fabriek_batch_size_sum{${L}}`)).toBe(10);
    expect(sampleValue(text, `fabriek_queue_duration_seconds_count{${L}}`)).toBe(5);
    expect(sampleValue(text, `fabriek_compute_infer_duration_seconds_count{${L}}`)).toBe(5);
    expect(sampleValue(text, `nv_inference_pending_request_count{${L}}`)).toBe(0);
    expect(sampleValue(text, `nv_inference_compute_infer_duration_us{${L}}`)).toBeGreaterThan(0);
    expect(sampleValue(text, `nv_inference_request_duration_us{${L}}`)).toBeGreaterThan(0);
    expect(text).not.toContain('model="nope"');
    // Other models were loaded but not asked: present at zero.
    expect(sampleValue(text, 'nv_inference_request_success{model="add_sub",version="1"}')).toBe(0);

    // The statistics endpoint saw the same events.
    const stats = (await gw.client.modelStatistics(MODEL, '1')).modelStats[0];
    expect(Number(stats?.inferenceStats?.success?.count)).toBe(5);
    expect(Number(stats?.inferenceStats?.fail?.count)).toBe(3);
    expect(Number(stats?.inferenceCount)).toBe(10);
    expect(Number(stats?.executionCount)).toBe(5);
    expect(sampleValue(text, `nv_inference_request_duration_us{${L}}`)).toBeCloseTo(Number(stats?.inferenceStats?.success?.ns) / 1e3, 0);
  });
});
