import { type SpanContext } from '@opentelemetry/api';
import { type CancelSignal } from '../../core/cancellation.js';
import { cancelled, deadlineExceeded, type ServingError } from '../../core/errors.js';
import { type Tensor } from '../../core/tensor.js';

/** What one execution of a model on a worker returns. */
export interface ExecutionResult {
  readonly outputs: readonly Tensor[];
  readonly computeInputNs: number;
  readonly computeInferNs: number;
  readonly computeOutputNs: number;
  /** Which worker ran it. */
  readonly workerId: string;
  /** What its instance ran on there (core/kind-costs.ts): whose cost model learns it; undefined = the lead kind's. */
  readonly instanceKind?: string | undefined;
  /** How long it waited in the worker for its instance (queue time, as Triton counts it until the run starts); undefined = not reported. */
  readonly workerWaitNs?: number | undefined;
}

/** Who a job belongs to, as the schedulers share their queues between tenants. */
export interface JobTenant {
  readonly name: string;
  /** Share of the scheduler against other tenants at the same priority level. */
  readonly weight: number;
  /** Fraction (0, 1] of each queue bound this tenant may fill. */
  readonly queueShare: number;
  /** Which models it may use; an ensemble checks each step's model (undefined: all). */
  readonly models?: { allows(model: string): boolean };
}

/** A sequence's correlation ID: Triton's uint64 (as a bigint) or string; 0 and "" mean none. */
export type CorrelationId = bigint | string;

/** A request's place in its sequence (request parameters `sequence_id`, `sequence_start`, `sequence_end`). */
export interface SequenceFlags {
  readonly id: CorrelationId;
  readonly start: boolean;
  readonly end: boolean;
}

/** One request as the schedulers see it: decoded, validated, cancellable. */
export interface InferJob {
  readonly inputs: readonly Tensor[];
  /** Output names to return; empty = all. */
  readonly outputs: readonly string[];
  readonly signal: CancelSignal;
  /** Absolute, ms since the epoch; Infinity when none. */
  readonly deadline: number;
  /** Rows along the batch dimension (1 for non-batching models). */
  readonly batchSize: number;
  /** Request parameter `priority` (1 = highest); undefined = the model's default level. */
  readonly priority?: number | undefined;
  /** Request parameter `timeout` in µs (queue timeout override); undefined = the model's policy. */
  readonly timeoutUs?: number | undefined;
  /** undefined = the one tenant of a server without tenants. */
  readonly tenant?: JobTenant;
  /** The request's sampled span, when tracing is on (core/tracing.ts); batch spans link to it. */
  readonly trace?: SpanContext | undefined;
  /** Its sequence, for a stateful model's sequence scheduler; undefined = the request named none. */
  readonly sequence?: SequenceFlags | undefined;
}

export interface JobResult {
  readonly outputs: readonly Tensor[];
  /** Queue time as Triton counts it, until the run started: the scheduler's queue, then the wait in the worker for the instance. */
  readonly queueNs: number;
  readonly execution: ExecutionResult;
  /** Rows of the whole execution when the job shared it (its share of the compute is rows ÷ batchRows); undefined = alone. */
  readonly batchRows?: number;
}

/** Told about every execution a scheduler ran, for execution_count and batch_stats. */
export interface ExecutionObserver {
  /** `batchSize`: rows in the execution (the sum of its requests' batch sizes). */
  executed(batchSize: number, execution: ExecutionResult): void;
}

/** A per-model-version policy that decides when jobs run (Triton's Scheduler). */
export interface Scheduler {
  enqueue(job: InferJob): Promise<JobResult>;
  /** Jobs waiting, not yet sent to a worker. */
  readonly pending: number;
  /** Rejects queued jobs with `reason` and waits for running ones. */
  stop(reason: Error): Promise<void>;
}

/**
 * Why a request's signal ended it `when` (e.g. "before the request ran"): its
 * deadline when the abort came within 1 ms of it, else its client's cancel.
 * The timers that abort at a deadline (gRPC's, HTTP's Timeout-Ms) count in
 * whole ms, and fire up to 1 ms before it on the wall clock: read strictly,
 * a request ended by its own deadline was answered CANCELLED.
 */
export function abortError(modelKey: string, nowMs: number, deadlineMs: number, when: string): ServingError {
  return nowMs + 1 >= deadlineMs
    ? deadlineExceeded(`model '${modelKey}': deadline exceeded ${when}`)
    : cancelled(`model '${modelKey}': request cancelled by the client ${when}`);
}
