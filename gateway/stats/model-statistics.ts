import { type InferBatchStatistics, type ModelStatistics, type StatisticDuration } from '../../proto/gen/inference.js';
import { isShed } from '../batching/shedding.js';
import { type ExecutionObserver, type ExecutionResult, type JobResult } from '../scheduling/execution.js';

interface Duration {
  count: number;
  ns: number;
}

const zero = (): Duration => ({ count: 0, ns: 0 });
const add = (d: Duration, ns: number): void => {
  d.count += 1;
  d.ns += ns;
};
const toProto = (d: Duration): StatisticDuration => ({ count: BigInt(d.count), ns: BigInt(Math.round(d.ns)) });

interface BatchDurations {
  input: Duration;
  infer: Duration;
  output: Duration;
}

/** Cumulative counts of one version (see ModelVersionStatistics.loadCounts). */
export interface LoadCounts {
  readonly requests: number;
  readonly failures: number;
  readonly busyNs: number;
}

/** Told about every statistics event, e.g. the Prometheus metrics of one version. */
export interface StatisticsSink extends ExecutionObserver {
  succeeded(batchSize: number, totalNs: number, result: JobResult): void;
  failed(totalNs: number, error?: unknown): void;
  /** Answered from the response cache; `lookupNs` of `totalNs` went to the lookup. */
  cacheHit(totalNs: number, lookupNs: number): void;
  /** Missed the response cache; `ns` spent looking up and inserting. */
  cacheMiss(ns: number): void;
}

/**
 * Triton's per-model-version statistics. Request-level durations (success,
 * fail, queue, compute_*) count once per request, so every request in a
 * batch counts the batch's compute time; execution_count and batch_stats
 * count executions. inference_count counts rows (batch elements).
 */
export class ModelVersionStatistics implements ExecutionObserver {
  readonly #success = zero();
  readonly #fail = zero();
  readonly #queue = zero();
  readonly #computeInput = zero();
  readonly #computeInfer = zero();
  readonly #computeOutput = zero();
  readonly #cacheHit = zero();
  readonly #cacheMiss = zero();
  readonly #batches = new Map<number, BatchDurations>();
  #inferenceCount = 0;
  #shed = 0;
  #executionCount = 0;
  #lastInferenceMs = 0;
  readonly #sink: StatisticsSink | undefined;

  /** `sink` sees every event too, so metrics cannot drift from these statistics. */
  constructor(sink?: StatisticsSink) {
    this.#sink = sink;
  }

  /** A request answered successfully; `totalNs` from arrival to answer. */
  succeeded(batchSize: number, totalNs: number, result: JobResult): void {
    add(this.#success, totalNs);
    add(this.#queue, result.queueNs);
    add(this.#computeInput, result.execution.computeInputNs);
    add(this.#computeInfer, result.execution.computeInferNs);
    add(this.#computeOutput, result.execution.computeOutputNs);
    this.#inferenceCount += batchSize;
    this.#lastInferenceMs = Date.now();
    this.#sink?.succeeded(batchSize, totalNs, result);
  }

  /** A request for this version failed (invalid, timed out, cancelled or failed to run); `error` labels the metric's reason. */
  failed(totalNs: number, error?: unknown): void {
    add(this.#fail, totalNs);
    if (isShed(error)) this.#shed += 1;
    this.#sink?.failed(totalNs, error);
  }

  /**
   * A request answered from the response cache. As in Triton it counts as a
   * success (with its whole duration) and a cache hit (with the lookup's),
   * but not as an inference or an execution, and adds no queue or compute time.
   */
  cacheHit(totalNs: number, lookupNs: number): void {
    add(this.#success, totalNs);
    add(this.#cacheHit, lookupNs);
    this.#lastInferenceMs = Date.now();
    this.#sink?.cacheHit(totalNs, lookupNs);
  }

  /** A request that missed the response cache; `ns` spent on the lookup and the insertion. */
  cacheMiss(ns: number): void {
    add(this.#cacheMiss, ns);
    this.#sink?.cacheMiss(ns);
  }

  /** Requests shed before they ran (also counted in fail, as Triton counts a queue timeout). */
  get shed(): number {
    return this.#shed;
  }

  /** Executions run (the statistics' execution_count). */
  get executions(): number {
    return this.#executionCount;
  }

  /** Requests ended (answered or failed), those failed, and the instances' busy time: what load reports are made of. */
  loadCounts(): LoadCounts {
    let busyNs = 0;
    for (const b of this.#batches.values()) busyNs += b.input.ns + b.infer.ns + b.output.ns;
    return { requests: this.#success.count + this.#fail.count, failures: this.#fail.count, busyNs };
  }

  executed(batchSize: number, execution: ExecutionResult): void {
    this.#executionCount += 1;
    let b = this.#batches.get(batchSize);
    if (!b) {
      b = { input: zero(), infer: zero(), output: zero() };
      this.#batches.set(batchSize, b);
    }
    add(b.input, execution.computeInputNs);
    add(b.infer, execution.computeInferNs);
    add(b.output, execution.computeOutputNs);
    this.#sink?.executed(batchSize, execution);
  }

  snapshot(name: string, version: string): ModelStatistics {
    const batchStats: InferBatchStatistics[] = [...this.#batches.entries()]
      .sort(([a], [b]) => a - b)
      .map(([size, d]) => ({
        batchSize: BigInt(size),
        computeInput: toProto(d.input),
        computeInfer: toProto(d.infer),
        computeOutput: toProto(d.output),
      }));
    return {
      name,
      version,
      lastInference: BigInt(this.#lastInferenceMs),
      inferenceCount: BigInt(this.#inferenceCount),
      executionCount: BigInt(this.#executionCount),
      inferenceStats: {
        success: toProto(this.#success),
        fail: toProto(this.#fail),
        queue: toProto(this.#queue),
        computeInput: toProto(this.#computeInput),
        computeInfer: toProto(this.#computeInfer),
        computeOutput: toProto(this.#computeOutput),
        cacheHit: toProto(this.#cacheHit),
        cacheMiss: toProto(this.#cacheMiss),
      },
      batchStats,
      memoryUsage: [],
      responseStats: {},
    };
  }
}
