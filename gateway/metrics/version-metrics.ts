import { type Counter, type Histogram } from 'prom-client';
import { type ExecutionResult, type JobResult } from '../scheduling/execution.js';
import { type StatisticsSink } from '../stats/model-statistics.js';
import { failureReason, type FailureReason } from './failure-reason.js';

export const FAILURE_REASONS: readonly FailureReason[] = ['REJECTED', 'CANCELED', 'BACKEND', 'OTHER', 'SHED'];

/** The prom-client metrics one version writes to; shared by every version. */
export interface InferenceMetrics {
  readonly success: Counter<'model' | 'version'>;
  readonly failure: Counter<'model' | 'version' | 'reason'>;
  readonly inferenceCount: Counter<'model' | 'version'>;
  readonly execCount: Counter<'model' | 'version'>;
  readonly requestUs: Counter<'model' | 'version'>;
  readonly queueUs: Counter<'model' | 'version'>;
  readonly computeInputUs: Counter<'model' | 'version'>;
  readonly computeInferUs: Counter<'model' | 'version'>;
  readonly computeOutputUs: Counter<'model' | 'version'>;
  readonly queueSeconds: Histogram<'model' | 'version'>;
  readonly computeInferSeconds: Histogram<'model' | 'version'>;
  readonly batchSize: Histogram<'model' | 'version'>;
  /** Triton's response cache counters; undefined when the server has no --cache-config. */
  readonly cache?: CacheCounters;
}

export interface CacheCounters {
  readonly hits: Counter<'model' | 'version'>;
  readonly misses: Counter<'model' | 'version'>;
  readonly hitUs: Counter<'model' | 'version'>;
  readonly missUs: Counter<'model' | 'version'>;
}

const cacheCounters = (c: CacheCounters): Counter<'model' | 'version'>[] => [c.hits, c.misses, c.hitUs, c.missUs];

const us = (ns: number): number => ns / 1e3;
const seconds = (ns: number): number => ns / 1e9;

/**
 * One model version's view of the metrics: the same three events as
 * ModelVersionStatistics, so /metrics and the statistics endpoint agree.
 * Like Triton, request-level durations (request, queue, compute_*) are
 * per request; exec_count, batch size and the compute histogram are per
 * execution.
 */
export class VersionMetrics implements StatisticsSink {
  readonly #m: InferenceMetrics;
  readonly #labels: { model: string; version: string };

  constructor(metrics: InferenceMetrics, model: string, version: string) {
    this.#m = metrics;
    this.#labels = { model, version };
    // Series exist at 0 from load on, as in Triton, so rate() works from the first scrape.
    for (const c of [metrics.success, metrics.inferenceCount, metrics.execCount, metrics.requestUs, metrics.queueUs]) {
      c.inc(this.#labels, 0);
    }
    for (const c of [metrics.computeInputUs, metrics.computeInferUs, metrics.computeOutputUs]) c.inc(this.#labels, 0);
    for (const reason of FAILURE_REASONS) metrics.failure.inc({ ...this.#labels, reason }, 0);
    for (const h of [metrics.queueSeconds, metrics.computeInferSeconds, metrics.batchSize]) h.zero(this.#labels);
    if (metrics.cache) for (const c of cacheCounters(metrics.cache)) c.inc(this.#labels, 0);
  }

  succeeded(batchSize: number, totalNs: number, result: JobResult): void {
    const m = this.#m;
    const l = this.#labels;
    m.success.inc(l);
    m.inferenceCount.inc(l, batchSize);
    m.requestUs.inc(l, us(totalNs));
    m.queueUs.inc(l, us(result.queueNs));
    m.computeInputUs.inc(l, us(result.execution.computeInputNs));
    m.computeInferUs.inc(l, us(result.execution.computeInferNs));
    m.computeOutputUs.inc(l, us(result.execution.computeOutputNs));
    m.queueSeconds.observe(l, seconds(result.queueNs));
  }

  failed(_totalNs: number, error?: unknown): void {
    this.#m.failure.inc({ ...this.#labels, reason: failureReason(error) });
  }

  /** As Triton: a success with its request duration, and a cache hit; no inference, no execution. */
  cacheHit(totalNs: number, lookupNs: number): void {
    const m = this.#m;
    const l = this.#labels;
    m.success.inc(l);
    m.requestUs.inc(l, us(totalNs));
    m.cache?.hits.inc(l);
    m.cache?.hitUs.inc(l, us(lookupNs));
  }

  cacheMiss(ns: number): void {
    this.#m.cache?.misses.inc(this.#labels);
    this.#m.cache?.missUs.inc(this.#labels, us(ns));
  }

  executed(batchSize: number, execution: ExecutionResult): void {
    const m = this.#m;
    const l = this.#labels;
    m.execCount.inc(l);
    m.batchSize.observe(l, batchSize);
    m.computeInferSeconds.observe(l, seconds(execution.computeInferNs));
  }

  /** Drops this version's series (on unload), as Triton does. */
  remove(): void {
    const m = this.#m;
    const l = this.#labels;
    for (const c of [m.success, m.inferenceCount, m.execCount, m.requestUs, m.queueUs]) c.remove(l);
    for (const c of [m.computeInputUs, m.computeInferUs, m.computeOutputUs]) c.remove(l);
    for (const reason of FAILURE_REASONS) m.failure.remove({ ...l, reason });
    for (const h of [m.queueSeconds, m.computeInferSeconds, m.batchSize]) h.remove(l);
    if (m.cache) for (const c of cacheCounters(m.cache)) c.remove(l);
  }
}
