import { type Span, type Tracer } from '@opentelemetry/api';
import { type Logger } from 'pino';
import { internal } from '../../core/errors.js';
import { activeTracer, contextOf, endOk, endWithError, modelAttributes, remoteParent, SpanKindOf } from '../../core/tracing.js';
import { type CacheLookup } from '../cache/response-cache.js';
import { type CallContext } from '../grpc/call-context.js';
import { type HeldVersion, type ModelManager } from '../repository/model-manager.js';
import { type ModelVersion, type ServingParts } from '../repository/model-version.js';
import { validateInputs } from '../validate-request.js';
import { abortError, type JobResult } from '../scheduling/execution.js';
import { OPEN_TENANT, tenantPriority } from '../tenants/tenant.js';
import { type Admission, type CallNote } from './admission.js';
import { checkClassifiable, classify, NO_LABELS } from './classification.js';
import { type InferRequest, type InferResult } from './infer-request.js';
import { logRequest, requestIdOf } from './request-log.js';
import { toClientShapes, toModelShapes } from './reshape.js';
import { schedulingParameters } from './request-parameters.js';

/** How a request is traced and admitted; every field optional (tests run the bare pipeline). */
export interface PipelineOptions {
  readonly log?: Logger;
  readonly protocol?: 'grpc' | 'http';
  /** Takes the tenant's quota once the request's rows are known. */
  readonly admission?: Admission;
  /** Told the served version, rows and compute share, for the audit line and accounting. */
  readonly note?: CallNote;
  /** The caller's W3C trace context (set only when tracing is on). */
  readonly traceparent?: string;
  readonly tracestate?: string;
}

/**
 * The protocol-neutral path of one request: find the serving version,
 * validate the inputs against its signature (ONNX Runtime itself would
 * silently ignore unknown inputs), queue it on the version's scheduler, and
 * keep the outputs the client asked for.
 */
export function runInference(
  models: ModelManager,
  request: InferRequest,
  context: Pick<CallContext, 'signal' | 'deadline'>,
  options: PipelineOptions = {},
): Promise<InferResult> {
  const start = process.hrtime.bigint();
  // The log line's fields are built only when debug is on: this is per request. Not an async function itself: each
  // layer of async wrapping is another promise and more turns per request (this and inferOnce were two, before).
  if (!options.log?.isLevelEnabled('debug')) return inferMaybeTraced(models, request, context, start, options);
  return loggedInference(options.log, models, request, context, start, options);
}

async function loggedInference(
  log: Logger,
  models: ModelManager,
  request: InferRequest,
  context: Pick<CallContext, 'signal' | 'deadline'>,
  start: bigint,
  options: PipelineOptions,
): Promise<InferResult> {
  const fields = {
    reqId: requestIdOf(request.id),
    protocol: options.protocol ?? 'grpc',
    model: request.modelName,
    version: request.modelVersion,
    startNs: start,
  } as const;
  try {
    const result = await inferMaybeTraced(models, request, context, start, options);
    logRequest(log, { ...fields, version: result.modelVersion });
    return result;
  } catch (error) {
    logRequest(log, fields, error);
    throw error;
  }
}

/** The one tracing check of the request path: with tracing off, straight to inferOnce. */
function inferMaybeTraced(
  models: ModelManager,
  request: InferRequest,
  context: Pick<CallContext, 'signal' | 'deadline'>,
  start: bigint,
  options: PipelineOptions,
): Promise<InferResult> {
  const tracer = activeTracer();
  return tracer ? tracedInference(tracer, models, request, context, start, options) : inferOnce(models, request, context, start, options);
}

/**
 * runInference with spans (tracing on): the server span of the request, its
 * admission and its queue wait as children; the scheduler's batch span links
 * to it (gateway/scheduling/dispatcher.ts).
 */
async function tracedInference(
  tracer: Tracer,
  models: ModelManager,
  request: InferRequest,
  context: Pick<CallContext, 'signal' | 'deadline'>,
  start: bigint,
  options: PipelineOptions,
): Promise<InferResult> {
  const protocol = options.protocol ?? 'grpc';
  const parent = remoteParent(options.traceparent, options.tracestate);
  const span = tracer.startSpan(
    protocol === 'grpc' ? 'ModelInfer' : 'POST /v2/models/{model}/infer',
    {
      kind: SpanKindOf.server,
      attributes: {
        'fabriek.protocol': protocol,
        'fabriek.model': request.modelName,
        'fabriek.tenant': request.tenant?.name ?? OPEN_TENANT.name,
      },
    },
    parent,
  );
  const traced: TracedCall = { tracer, span, sampled: span.isRecording() };
  try {
    const result = await inferOnce(models, request, context, start, options, traced);
    span.setAttribute('fabriek.version', result.modelVersion);
    endOk(span);
    return result;
  } catch (error) {
    endWithError(span, error);
    throw error;
  }
}

interface TracedCall {
  readonly tracer: Tracer;
  readonly span: Span;
  /** False when the sampler dropped it: no child spans, no link, no frame field. */
  readonly sampled: boolean;
}

function inferOnce(
  models: ModelManager,
  request: InferRequest,
  context: Pick<CallContext, 'signal' | 'deadline'>,
  start: bigint,
  options: PipelineOptions,
  traced?: TracedCall,
): Promise<InferResult> {
  // A promise either way: callers never see a synchronous throw (an unknown model), as from an async function.
  try {
    if (!models.onDemand) return inferWith(models, models.route(request.modelName, request.modelVersion), request, start, options, context, traced);
    // On demand, the version may have to load first, and is held (never evicted) until the request is over.
    const acquired = models.acquire(request.modelName, models.routedVersion(request.modelName, request.modelVersion), context);
    const run = (held: HeldVersion): Promise<InferResult> => inferWith(models, held.version, request, start, options, context, traced).finally(() => held.release());
    return acquired instanceof Promise ? acquired.then(run) : run(acquired);
  } catch (error) {
    return Promise.reject(error);
  }
}

async function inferWith(
  models: ModelManager,
  version: ModelVersion,
  request: InferRequest,
  start: bigint,
  options: PipelineOptions,
  context: Pick<CallContext, 'signal' | 'deadline'>,
  traced: TracedCall | undefined,
): Promise<InferResult> {
  const serving = version.serving;
  if (!serving) throw internal(`model '${version.key}' is ready but has no scheduler`);
  const { note, admission } = options;
  if (note) note.version = String(version.version);
  const tenant = request.tenant ?? OPEN_TENANT;
  let batchSize: number;
  let cached: CacheLookup | undefined;
  let result: JobResult;
  try {
    ({ batchSize } = validateInputs(serving.signature, request.inputs, request.outputs));
    if (request.classifications !== undefined) checkClassifiable(serving.signature, request.classifications, version.key);
    const params = schedulingParameters(request.parameters, version.name);
    const level = tenantPriority(tenant, params.priority);
    if (note) note.charged = true;
    const admitting = traced?.sampled && admission ? traced.tracer.startSpan('fabriek.admission', { attributes: { 'fabriek.tenant': tenant.name, 'fabriek.rows': Math.max(1, batchSize) } }, contextOf(traced.span)) : undefined;
    let release: (() => void) | undefined;
    try {
      const acquired = admission?.acquire(tenant, Math.max(1, batchSize));
      release = acquired instanceof Promise ? await acquired : acquired;
    } catch (error) {
      if (admitting) endWithError(admitting, error);
      throw error;
    }
    admitting?.end();
    const queuedAt = traced?.sampled ? Date.now() : 0;
    try {
      // Response cache (gateway/cache): after validation and quota, so a hit costs what a miss would.
      cached = models.responseCache?.lookupFor(version.name, version.version, serving.config, request, tenant.name);
      // Kept, or computed meanwhile by an identical request that missed before this one (unless that one fails).
      const found = cached && (await cached.answer(context.signal, () => abortError(version.key, Date.now(), context.deadline, 'while an identical request was computed')));
      if (cached && traced?.sampled) traced.span.setAttribute('fabriek.cache', found ? (found.coalesced ? 'coalesced' : 'hit') : 'miss');
      if (found && cached) {
        serving.stats.cacheHit(Number(process.hrtime.bigint() - start), cached.lookupNs);
        if (note) note.items = batchSize;
        return { modelName: version.name, modelVersion: String(version.version), id: request.id, outputs: classified(serving, request, found.outputs) };
      }
      // One literal, no spreads: this is every request's job.
      result = await serving.scheduler.enqueue({
        inputs: toModelShapes(serving.signature, request.inputs),
        outputs: request.outputs,
        signal: context.signal,
        deadline: context.deadline,
        batchSize,
        timeoutUs: params.timeoutUs,
        priority: level,
        tenant,
        trace: traced?.sampled ? traced.span.spanContext() : undefined,
        sequence: params.sequence,
      });
      if (traced?.sampled) queueSpan(traced, queuedAt, result, version.key, batchSize);
    } finally {
      release?.();
    }
  } catch (error) {
    cached?.abandon();
    serving.stats.failed(Number(process.hrtime.bigint() - start), error);
    throw error;
  }
  serving.stats.succeeded(batchSize, Number(process.hrtime.bigint() - start), result);
  if (note) {
    note.items = batchSize;
    const e = result.execution;
    const share = result.batchRows ? Math.max(1, batchSize) / result.batchRows : 1;
    note.computeNs = (e.computeInputNs + e.computeInferNs + e.computeOutputNs) * share;
    note.queueNs = result.queueNs;
  }
  let outputs: InferResult['outputs'];
  try {
    outputs = toClientShapes(serving.signature, orderOutputs(result.outputs, request.outputs, version.key));
  } catch (error) {
    cached?.abandon();
    throw error;
  }
  cached?.put(outputs, serving.stats);
  return { modelName: version.name, modelVersion: String(version.version), id: request.id, outputs: classified(serving, request, outputs) };
}

/** The outputs as the client asked for them: those it asked to classify as their top classes. */
function classified(serving: ServingParts, request: InferRequest, outputs: InferResult['outputs']): InferResult['outputs'] {
  const counts = request.classifications;
  return counts === undefined ? outputs : classify(outputs, counts, serving.labels ?? NO_LABELS, serving.signature.maxBatchSize > 0);
}

/** The queue wait, known once the job ran (queueNs: the gateway's queue, then the worker's wait for the instance), from enqueue, a child of the request span. */
function queueSpan(traced: TracedCall, queuedAt: number, result: JobResult, modelKey: string, batchSize: number): void {
  const queueMs = result.queueNs / 1e6;
  const span = traced.tracer.startSpan(
    'fabriek.queue',
    {
      startTime: queuedAt,
      attributes: {
        ...modelAttributes(modelKey),
        'fabriek.queue_time_us': Math.round(result.queueNs / 1000),
        'fabriek.batch.size': result.batchRows ?? batchSize,
        'fabriek.worker.id': result.execution.workerId,
      },
    },
    contextOf(traced.span),
  );
  span.end(queuedAt + queueMs);
  traced.span.setAttribute('fabriek.queue_time_us', Math.round(result.queueNs / 1000));
  traced.span.setAttribute('fabriek.batch.size', result.batchRows ?? batchSize);
}

function orderOutputs(outputs: InferResult['outputs'], requested: readonly string[], key: string): InferResult['outputs'] {
  if (requested.length === 0) return outputs;
  return requested.map((name) => {
    const t = outputs.find((o) => o.name === name);
    if (!t) throw internal(`model '${key}': worker did not return requested output '${name}'`);
    return t;
  });
}
