// OpenTelemetry tracing over the wire: `fabriek serve --trace-config …`
// exports OTLP/HTTP protobuf to a receiver in this test, and its worker
// process exports its own spans there too, parented on the gateway's through
// the Execute frame. One gRPC request with the caller's traceparent and one
// HTTP request: their spans share the caller's trace, and the parents run
// request → queue, request → batch (linked) → worker execution → worker run
// → ONNX Runtime run. With rate=0 nothing is sampled; a bad flag exits 2.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TraceSettingResponse } from '../../proto/gen/inference.js';
import { buildModel, EXAMPLE_CONFIGS } from '../../models/build/test-models.js';
import { zerosRequest } from '../helpers/call-outcome.js';
import { putModel } from '../helpers/model-dir.js';
import { type GatewayProcess, runCli, startGateway } from '../helpers/gateway-process.js';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../helpers/otlp-receiver.js';
import { waitFor } from '../helpers/processes.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';
const gatewayArgs = (url: string, ...trace: string[]): string[] => [
  ...['--model-repository', TEST_REPOSITORY, '--workers', '1', '--log-level', 'warn'],
  ...['--model-control-mode', 'explicit', '--load-model', 'add_sub'],
  ...['--trace-config', 'mode=opentelemetry', '--trace-config', `opentelemetry,url=${url}`, ...trace.flatMap((t) => ['--trace-config', t])],
];
const httpBase = (gw: GatewayProcess): string => `http://127.0.0.1:${/HTTP on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}`;
const httpBody = JSON.stringify({
  inputs: ['INPUT0', 'INPUT1'].map((name) => ({ name, datatype: 'FP32', shape: [1, 16], data: new Array<number>(16).fill(1) })),
});

function one(spans: readonly ReceivedSpan[], name: string, traceId: string): ReceivedSpan {
  const found = spans.filter((s) => s.name === name && s.traceId === traceId);
  expect(found, `${name} in trace ${traceId}: ${spans.map((s) => `${s.name}@${s.traceId}`).join(', ')}`).toHaveLength(1);
  return found[0] as ReceivedSpan;
}

describe('OpenTelemetry tracing', () => {
  let receiver: OtlpReceiver;
  let gw: GatewayProcess;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    gw = await startGateway(gatewayArgs(receiver.url, 'rate=1'));
  });

  afterAll(async () => {
    await gw?.stop();
    await receiver?.close();
  });

  it('exports a gRPC request’s spans in the caller’s trace, with the worker’s and ONNX Runtime’s under the batch', async () => {
    await gw.client.modelInfer(zerosRequest('add_sub', ['INPUT0', 'INPUT1'], 16), {
      metadata: { traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01`, tracestate: 'vendor=x' },
    });
    await waitFor(() => receiver.spans.some((s) => s.traceId === TRACE_ID && s.name === 'onnxruntime.run'), 15_000, 'the worker’s spans');
    await waitFor(() => receiver.spans.some((s) => s.traceId === TRACE_ID && s.name === 'fabriek.batch'), 15_000, 'the gateway’s spans');
    const spans = receiver.spans;
    const request = one(spans, 'ModelInfer', TRACE_ID);
    expect(request.parentSpanId).toBe(CALLER_SPAN);
    expect(request.traceState).toBe('vendor=x');
    expect(request.kind).toBe(2); // SPAN_KIND_SERVER
    expect(request.service).toBe('fabriek-gateway');
    expect(request.attributes).toMatchObject({ 'fabriek.model': 'add_sub', 'fabriek.version': '1', 'fabriek.status': 'OK', 'fabriek.protocol': 'grpc', 'fabriek.batch.size': 1 });
    expect(request.attributes['fabriek.tenant']).toBeTypeOf('string');
    expect(request.attributes['fabriek.queue_time_us']).toBeTypeOf('number');

    const queue = one(spans, 'fabriek.queue', TRACE_ID);
    expect(queue.parentSpanId).toBe(request.spanId);
    expect(queue.attributes['fabriek.queue_time_us']).toBeTypeOf('number');

    const batch = one(spans, 'fabriek.batch', TRACE_ID);
    expect(batch.parentSpanId).toBe(request.spanId);
    expect(batch.links).toContainEqual({ traceId: TRACE_ID, spanId: request.spanId });
    expect(batch.attributes).toMatchObject({ 'fabriek.model': 'add_sub', 'fabriek.version': '1', 'fabriek.batch.size': 1, 'fabriek.batch.requests': 1 });

    const execute = one(spans, 'fabriek.worker.execute', TRACE_ID);
    expect(execute.parentSpanId).toBe(batch.spanId);
    expect(execute.kind).toBe(3); // SPAN_KIND_CLIENT

    const run = one(spans, 'fabriek.worker.run', TRACE_ID);
    expect(run.service).toBe('fabriek-worker');
    expect(run.parentSpanId).toBe(execute.spanId);
    // The caller's tracestate reached the worker inside the Execute frame.
    expect(run.traceState).toBe('vendor=x');
    const ort = one(spans, 'onnxruntime.run', TRACE_ID);
    expect(ort.service).toBe('fabriek-worker');
    expect(ort.parentSpanId).toBe(run.spanId);
    expect(ort.attributes).toMatchObject({ 'fabriek.model': 'add_sub', 'fabriek.version': '1', 'fabriek.batch.size': 1 });
    expect(receiver.rejected).toBe(0);
  });

  it('traces an HTTP request without a traceparent as a new trace, and takes one from its headers', async () => {
    const res = await fetch(`${httpBase(gw)}/v2/models/add_sub/infer`, { method: 'POST', body: httpBody, headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(200);
    const traced = '0af7651916cd43dd8448eb211c80319c';
    const res2 = await fetch(`${httpBase(gw)}/v2/models/add_sub/infer`, {
      method: 'POST',
      body: httpBody,
      headers: { 'content-type': 'application/json', traceparent: `00-${traced}-b7ad6b7169203331-01` },
    });
    expect(res2.status).toBe(200);
    await waitFor(() => receiver.spans.some((s) => s.traceId === traced && s.name === 'onnxruntime.run'), 15_000, 'the HTTP request’s worker spans');
    await waitFor(() => receiver.spans.some((s) => s.traceId === traced && s.name === 'fabriek.batch'), 15_000, 'the HTTP request’s gateway spans');
    const request = one(receiver.spans, 'POST /v2/models/{model}/infer', traced);
    expect(request.parentSpanId).toBe('b7ad6b7169203331');
    expect(request.attributes).toMatchObject({ 'fabriek.protocol': 'http', 'fabriek.model': 'add_sub', 'fabriek.status': 'OK' });
    const fresh = receiver.spans.filter((s) => s.name === 'POST /v2/models/{model}/infer' && s.traceId !== traced);
    expect(fresh.length).toBeGreaterThanOrEqual(1);
    expect(fresh[0]?.parentSpanId).toBe('');
  });
});

describe('OpenTelemetry tracing of ensembles and the response cache', () => {
  let receiver: OtlpReceiver;
  let gw: GatewayProcess;
  let repo: string;
  const PIPELINE = `name: "pipeline"
platform: "ensemble"
max_batch_size: 4
input [ { name: "A" data_type: TYPE_FP32 dims: [ 16 ] }, { name: "B" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "SUM" data_type: TYPE_FP32 dims: [ 16 ] } ]
ensemble_scheduling { step [
  { model_name: "add_sub" model_version: -1 input_map { key: "INPUT0" value: "A" } input_map { key: "INPUT1" value: "B" } output_map { key: "OUTPUT0" value: "sum" } },
  { model_name: "identity_fp32" model_version: -1 input_map { key: "INPUT0" value: "sum" } output_map { key: "OUTPUT0" value: "SUM" } }
] }
`;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    repo = await mkdtemp(join(tmpdir(), 'fabriek-tracing-'));
    const put = (name: string, config: string | undefined, model?: Uint8Array): Promise<void> => putModel(repo, name, config, model);
    await put('add_sub', EXAMPLE_CONFIGS.add_sub, buildModel('add_sub'));
    await put('identity_fp32', undefined, buildModel('identity_fp32'));
    await put('pipeline', PIPELINE);
    const cached = (EXAMPLE_CONFIGS.add_sub ?? '').replace('name: "add_sub"', 'name: "add_sub_cached"');
    await put('add_sub_cached', `${cached}response_cache { enable: true }\n`, buildModel('add_sub'));
    gw = await startGateway([
      ...['--model-repository', repo, '--workers', '1', '--log-level', 'warn', '--cache-config', 'local,size=1048576'],
      ...['--trace-config', 'mode=opentelemetry', '--trace-config', `opentelemetry,url=${receiver.url}`],
    ]);
  });

  afterAll(async () => {
    await gw?.stop();
    await receiver?.close();
    if (repo) await rm(repo, { recursive: true, force: true });
  });

  it('gives each ensemble step a span under the request, which the step’s batch links to', async () => {
    const trace = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const request = zerosRequest('pipeline', ['A', 'B'], 16);
    await gw.client.modelInfer(request, { metadata: { traceparent: `00-${trace}-${CALLER_SPAN}-01` } });
    await waitFor(() => receiver.spans.filter((s) => s.traceId === trace && s.name === 'fabriek.batch').length >= 2, 15_000, 'both steps’ batches');
    await waitFor(() => receiver.spans.some((s) => s.traceId === trace && s.name === 'ModelInfer'), 15_000, 'the request span');
    const root = one(receiver.spans, 'ModelInfer', trace);
    expect(root.attributes).toMatchObject({ 'fabriek.model': 'pipeline', 'fabriek.status': 'OK' });
    const steps = receiver.spans.filter((s) => s.traceId === trace && s.name === 'fabriek.ensemble.step');
    expect(steps.map((s) => [s.attributes['fabriek.ensemble.step'], s.attributes['fabriek.model']]).sort()).toEqual([
      [0, 'add_sub'],
      [1, 'identity_fp32'],
    ]);
    for (const step of steps) {
      expect(step.parentSpanId).toBe(root.spanId);
      expect(step.attributes).toMatchObject({ 'fabriek.ensemble': 'pipeline', 'fabriek.status': 'OK' });
      const batches = receiver.spans.filter((s) => s.traceId === trace && s.name === 'fabriek.batch' && s.parentSpanId === step.spanId);
      expect(batches, `the batch of step ${String(step.attributes['fabriek.ensemble.step'])}`).toHaveLength(1);
      expect(batches[0]?.links).toContainEqual({ traceId: trace, spanId: step.spanId });
    }
  });

  it('marks a request the response cache answered, and one it missed', async () => {
    const traces = ['c0ffee00c0ffee00c0ffee00c0ffee01', 'c0ffee00c0ffee00c0ffee00c0ffee02'];
    for (const trace of traces) {
      await gw.client.modelInfer(zerosRequest('add_sub_cached', ['INPUT0', 'INPUT1'], 16), { metadata: { traceparent: `00-${trace}-${CALLER_SPAN}-01` } });
    }
    await waitFor(() => traces.every((t) => receiver.spans.some((s) => s.traceId === t && s.name === 'ModelInfer')), 15_000, 'both request spans');
    expect(one(receiver.spans, 'ModelInfer', traces[0] as string).attributes['fabriek.cache']).toBe('miss');
    expect(one(receiver.spans, 'ModelInfer', traces[1] as string).attributes['fabriek.cache']).toBe('hit');
    // A hit never reaches a batch.
    expect(receiver.spans.some((s) => s.traceId === traces[1] && s.name === 'fabriek.batch')).toBe(false);
  });
});

describe('OpenTelemetry tracing, sampled out', () => {
  it('exports no span at rate=0, even for a caller’s sampled traceparent', async () => {
    const receiver = await startOtlpReceiver();
    const gw = await startGateway(gatewayArgs(receiver.url, 'rate=0'));
    try {
      await gw.client.modelInfer(zerosRequest('add_sub', ['INPUT0', 'INPUT1'], 16), { metadata: { traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01` } });
      const res = await fetch(`${httpBase(gw)}/v2/models/add_sub/infer`, { method: 'POST', body: httpBody });
      expect(res.status).toBe(200);
    } finally {
      // Stopping flushes both exporters: anything recorded would arrive by now.
      await gw.stop();
      await receiver.close();
    }
    expect(receiver.spans).toEqual([]);
  });
});

describe('trace settings while serving (Triton\'s trace extension)', () => {
  const settings = async (gw: GatewayProcess, body?: unknown, path = '/v2/trace/setting'): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await fetch(`${httpBase(gw)}${path}`, body === undefined ? {} : { method: 'POST', body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const requestSpans = (receiver: OtlpReceiver): number => receiver.spans.filter((s) => s.name === 'ModelInfer').length;
  const infer = (gw: GatewayProcess): Promise<unknown> => gw.client.modelInfer(zerosRequest('add_sub', ['INPUT0', 'INPUT1'], 16));

  it('trace_count samples that many more requests, trace_level OFF none, trace_rate as asked; bad settings are refused', async () => {
    const receiver = await startOtlpReceiver();
    const gw = await startGateway(gatewayArgs(receiver.url, 'rate=1'));
    try {
      expect(await settings(gw)).toEqual({
        status: 200,
        body: { trace_level: ['TIMESTAMPS'], trace_rate: '1', trace_count: '-1', log_frequency: '0', trace_file: '', trace_mode: 'opentelemetry' },
      });
      expect((await settings(gw, { trace_count: '2' })).body).toMatchObject({ trace_count: '2' });
      for (let i = 0; i < 5; i++) await infer(gw);
      await waitFor(() => requestSpans(receiver) === 2, 15_000, 'two request spans');
      expect((await settings(gw)).body).toMatchObject({ trace_count: '0' });
      // Unlimited again, then off.
      expect((await settings(gw, { trace_count: '-1', trace_level: ['OFF'] })).body).toMatchObject({ trace_level: ['OFF'], trace_count: '-1' });
      for (let i = 0; i < 3; i++) await infer(gw);
      expect((await settings(gw, { trace_level: 'TIMESTAMPS', trace_rate: '1' })).body).toMatchObject({ trace_level: ['TIMESTAMPS'], trace_rate: '1' });
      await infer(gw);
      await waitFor(() => requestSpans(receiver) === 3, 15_000, 'the request traced after turning it on');
      expect(await settings(gw, { trace_level: ['TENSORS'] })).toEqual({
        status: 400,
        body: { error: "trace setting 'trace_level': Fabriek traces spans with their times (TIMESTAMPS), never tensor contents (TENSORS)" },
      });
      expect((await settings(gw, { trace_rate: 'often' })).status).toBe(400);
      expect((await settings(gw, { trace_file: '/tmp/trace.json' })).status).toBe(400);
      expect(await settings(gw, undefined, '/v2/models/add_sub/trace/setting')).toEqual({
        status: 400,
        body: { error: "per-model trace settings: Fabriek's trace settings are the server's, for every model; ask without a model name" },
      });
      expect(((await (await fetch(`${httpBase(gw)}/v2`)).json()) as { extensions: string[] }).extensions).toContain('trace');
    } finally {
      await gw.stop();
      await receiver.close();
    }
    // Nothing was sampled while OFF: the three requests then left no span (3 = 2 counted + 1 after turning it on).
    expect(receiver.spans.filter((s) => s.name === 'ModelInfer')).toHaveLength(3);
  });

  it('over gRPC, and in a gateway started without tracing, which cannot turn it on', async () => {
    const gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--workers', '1', '--log-level', 'warn', '--model-control-mode', 'explicit', '--load-model', 'add_sub']);
    try {
      const read = await new Promise<TraceSettingResponse>((resolve, reject) =>
        gw.client.raw.traceSetting({ settings: {}, modelName: '' }, (e, v) => (e ? reject(e) : resolve(v as TraceSettingResponse))),
      );
      expect(read.settings.trace_level?.value).toEqual(['OFF']);
      const refused = await new Promise<ServiceError>((resolve) =>
        gw.client.raw.traceSetting({ settings: { trace_level: { value: ['TIMESTAMPS'] } }, modelName: '' }, (e) => resolve(e as ServiceError)),
      );
      expect(refused.code).toBe(GrpcStatus.FAILED_PRECONDITION);
      expect(refused.details).toMatch(/^tracing is not configured: start the gateway with --trace-config mode=opentelemetry/);
      const perModel = await new Promise<ServiceError>((resolve) => gw.client.raw.traceSetting({ settings: {}, modelName: 'add_sub' }, (e) => resolve(e as ServiceError)));
      expect(perModel.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    } finally {
      await gw.stop();
    }
  });
});

describe('--trace-config', () => {
  it.each([['rate=-1'], ['fraction=2'], ['mode=zipkin'], ['opentelemetry,url=not a url'], ['jaeger,url=http://x'], ['bogus']])('exits 2 on %s', async (flag) => {
    const r = await runCli(['serve', '--model-repository', TEST_REPOSITORY, '--trace-config', flag]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--trace-config: .*expected --trace-config mode=opentelemetry/);
  });
});
