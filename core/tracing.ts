// OpenTelemetry tracing, loaded only when configured (core/trace-config.ts).
// The hot path checks `activeTracer()` once per request: undefined when
// tracing is off, so no span, context or frame byte is made then.
// The gateway samples new traces by its TracePolicy (trace-policy.ts: on or
// off, the ratio, traces still to sample), which Triton's trace extension
// changes while it runs; a caller's traceparent keeps its trace id, and the
// ratio decides on it; a span within the gateway follows its parent. A
// worker records only what its gateway sampled (parent-based, never a root).
import { type Context, type Link, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import { status } from '@grpc/grpc-js';
import { isServingError } from './errors.js';
import { type FrameTrace } from './execute-frame.js';
import { type TraceConfig } from './trace-config.js';
import { policyAfter, type TraceControl, type TracePolicy, traceSettingsOf } from './trace-policy.js';
import { FABRIEK_VERSION as VERSION } from './version.js';

/** How a gateway gives its local workers the OTLP endpoint (they inherit its environment). */
export const WORKER_TRACE_URL_ENV = 'FABRIEK_WORKER_TRACE_URL';

/** @opentelemetry/api's SpanKind values, named here so that modules on the request path never load the API when tracing is off. */
export const SpanKindOf = { server: 1, client: 2 } as const;
/** SpanStatusCode.ERROR. */
const STATUS_ERROR = 2;

let tracer: Tracer | undefined;
let shutdown: (() => Promise<void>) | undefined;
let api: typeof import('@opentelemetry/api') | undefined;
/** What the gateway samples; off until startTracing. */
let policy: TracePolicy = { on: false, ratio: 0, remaining: -1 };
/** Set the policy's ratio: the SDK's own sampler for it (undefined before startTracing). */
let ratioSampler: ((ratio: number) => Sampler) | undefined;
let byRatio: Sampler | undefined;

type Sampler = import('@opentelemetry/sdk-trace-base').Sampler;

/** Whether tracing was configured at start (an OTLP endpoint, the SDK loaded): only then can the policy turn it on. */
export function tracingConfigured(): boolean {
  return tracer !== undefined;
}

/**
 * Triton's trace extension over this process's policy; `others` takes a new
 * policy to the other gateway processes (--gateway-processes), `said` logs it.
 */
export function traceControl(said: (from: TracePolicy, to: TracePolicy) => void, others?: (next: TracePolicy) => Promise<void>): TraceControl {
  return {
    settings: () => traceSettingsOf(policy),
    update: async (changes) => {
      const from = policy;
      const next = policyAfter(from, changes, tracingConfigured());
      setTracePolicy(next);
      said(from, next);
      await others?.(next);
      return traceSettingsOf(next);
    },
  };
}

/** Samples by `next` from the next new trace on. */
export function setTracePolicy(next: TracePolicy): void {
  if (next.ratio !== policy.ratio || byRatio === undefined) byRatio = ratioSampler?.(next.ratio);
  policy = next;
}

/** The tracer when tracing is on; undefined otherwise (the one check on the hot path). */
export function activeTracer(): Tracer | undefined {
  return tracer;
}

export async function startTracing(config: TraceConfig, serviceName: string, role: 'gateway' | 'worker'): Promise<void> {
  const [otel, sdk, exporter, resources] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/sdk-trace-base'),
    import('@opentelemetry/exporter-trace-otlp-proto'),
    import('@opentelemetry/resources'),
  ]);
  ratioSampler = (ratio) => new sdk.TraceIdRatioBasedSampler(ratio);
  setTracePolicy({ on: true, ratio: config.ratio, remaining: -1 });
  const notSampled = { decision: sdk.SamplingDecision.NOT_RECORD };
  const sampled = { decision: sdk.SamplingDecision.RECORD_AND_SAMPLED };
  // The gateway's: a span within the gateway follows its parent; a new trace (or a caller's) is decided by the policy.
  const byPolicy: Sampler = {
    shouldSample: (context, traceId, spanName, spanKind, attributes, links) => {
      const parent = otel.trace.getSpanContext(context);
      if (parent !== undefined && !parent.isRemote) return (parent.traceFlags & 1) === 1 ? sampled : notSampled;
      if (!policy.on || policy.remaining === 0 || byRatio === undefined) return notSampled;
      const result = byRatio.shouldSample(context, traceId, spanName, spanKind, attributes, links);
      if (result.decision === sdk.SamplingDecision.RECORD_AND_SAMPLED && policy.remaining > 0) policy = { ...policy, remaining: policy.remaining - 1 };
      return result;
    },
    toString: () => 'FabriekTracePolicy',
  };
  const sampler = role === 'gateway' ? byPolicy : new sdk.ParentBasedSampler({ root: new sdk.AlwaysOffSampler() });
  const provider = new sdk.BasicTracerProvider({
    sampler,
    resource: resources.resourceFromAttributes({ 'service.name': serviceName, 'service.version': VERSION }),
    spanProcessors: [new sdk.BatchSpanProcessor(new exporter.OTLPTraceExporter({ url: config.url }), { scheduledDelayMillis: 1000 })],
  });
  api = otel;
  tracer = provider.getTracer('fabriek', VERSION);
  shutdown = () => provider.shutdown();
}

/** Flushes and stops the exporter (at exit, so the last spans are sent). */
export async function stopTracing(): Promise<void> {
  const stop = shutdown;
  tracer = undefined;
  policy = { on: false, ratio: 0, remaining: -1 };
  shutdown = undefined;
  await stop?.().catch(() => {});
}

const TRACEPARENT = /^([\da-f]{2})-([\da-f]{32})-([\da-f]{16})-([\da-f]{2})$/;

/** The remote parent from W3C traceparent/tracestate values; undefined when absent or malformed (a new trace then). */
export function remoteParent(traceparent: string | undefined, tracestate: string | undefined): Context | undefined {
  if (!api || traceparent === undefined) return undefined;
  const m = TRACEPARENT.exec(traceparent.trim());
  if (!m || m[1] === 'ff' || /^0+$/.test(m[2] as string) || /^0+$/.test(m[3] as string)) return undefined;
  const spanContext: SpanContext = {
    traceId: m[2] as string,
    spanId: m[3] as string,
    traceFlags: parseInt(m[4] as string, 16) & 1,
    isRemote: true,
    ...(tracestate ? { traceState: api.createTraceState(tracestate) } : {}),
  };
  return api.trace.setSpanContext(api.ROOT_CONTEXT, spanContext);
}

/** A context whose parent is `span`. */
export function contextOf(span: Span | SpanContext): Context {
  const a = api as typeof import('@opentelemetry/api');
  return 'spanContext' in span ? a.trace.setSpan(a.ROOT_CONTEXT, span) : a.trace.setSpanContext(a.ROOT_CONTEXT, span);
}

/** A span's W3C trace context (traceparent, and tracestate when it has one), for the worker frame. */
export function frameTraceOf(span: Span): FrameTrace {
  const c = span.spanContext();
  const traceparent = `00-${c.traceId}-${c.spanId}-0${c.traceFlags & 1}`;
  const tracestate = c.traceState?.serialize();
  return tracestate ? { traceparent, tracestate } : { traceparent };
}

/** Links to the spans a batch carries. */
export function linksTo(contexts: readonly SpanContext[]): Link[] {
  return contexts.map((context) => ({ context }));
}

/** Ends a span with an error status (code 2), the message, and `fabriek.status` (the gRPC status name). */
export function endWithError(span: Span, error: unknown): void {
  span.setAttribute('fabriek.status', isServingError(error) ? (status[error.code] ?? String(error.code)) : 'INTERNAL');
  span.setStatus({ code: STATUS_ERROR, message: error instanceof Error ? error.message : String(error) });
  span.end();
}

/** Ends a span that succeeded, with `fabriek.status` OK. */
export function endOk(span: Span): void {
  span.setAttribute('fabriek.status', 'OK');
  span.end();
}

/** Model and version attributes from a model key ("name/version"). */
export function modelAttributes(key: string): { 'fabriek.model': string; 'fabriek.version': string } {
  const slash = key.lastIndexOf('/');
  return slash < 0 ? { 'fabriek.model': key, 'fabriek.version': '' } : { 'fabriek.model': key.slice(0, slash), 'fabriek.version': key.slice(slash + 1) };
}
