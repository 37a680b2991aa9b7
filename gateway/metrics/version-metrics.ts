import { type Counter } from 'prom-client';
import { type ExecutionResult, type JobResult } from '../scheduling/execution.js';
import { type StatisticsSink } from '../stats/model-statistics.js';
import { failureReason, type FailureReason } from './failure-reason.js';
import { type HistogramSeries, type SeriesHistogram } from './series-histogram.js';

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
  readonly queueSeconds: SeriesHistogram<'model' | 'version'>;
  readonly computeInferSeconds: SeriesHistogram<'model' | 'version'>;
  readonly batchSize: SeriesHistogram<'model' | 'version'>;
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
 * The counters a version sums in plain numbers between scrapes, and adds to
 * prom-client when a scrape collects them (`flush`). A labelled `inc` hashes
 * and checks its labels: eight of them per request were 3 % of a gateway's
 * busy time serving small requests. The histograms are still observed at
 * once: their buckets are prom-client's to keep.
 */
export type SummedCounter =
  | 'success'
  | 'inferenceCount'
  | 'execCount'
  | 'requestUs'
  | 'queueUs'
  | 'computeInputUs'
  | 'computeInferUs'
  | 'computeOutputUs'
  | 'cacheHits'
  | 'cacheMisses'
  | 'cacheHitUs'
  | 'cacheMissUs';

const noSums = (): Record<SummedCounter, number> => ({
  success: 0,
  inferenceCount: 0,
  execCount: 0,
  requestUs: 0,
  queueUs: 0,
  computeInputUs: 0,
  computeInferUs: 0,
  computeOutputUs: 0,
  cacheHits: 0,
  cacheMisses: 0,
  cacheHitUs: 0,
  cacheMissUs: 0,
});

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
  /** Sums not yet added to their counters. */
  #sums = noSums();
  readonly #queueSeconds: HistogramSeries;
  readonly #computeInferSeconds: HistogramSeries;
  readonly #batchSize: HistogramSeries;

  constructor(metrics: InferenceMetrics, model: string, version: string) {
    this.#m = metrics;
    this.#labels = { model, version };
    // Series exist at 0 from load on, as in Triton, so rate() works from the first scrape.
    for (const c of [metrics.success, metrics.inferenceCount, metrics.execCount, metrics.requestUs, metrics.queueUs]) {
      c.inc(this.#labels, 0);
    }
    for (const c of [metrics.computeInputUs, metrics.computeInferUs, metrics.computeOutputUs]) c.inc(this.#labels, 0);
    for (const reason of FAILURE_REASONS) metrics.failure.inc({ ...this.#labels, reason }, 0);
    this.#queueSeconds = metrics.queueSeconds.series(this.#labels);
    this.#computeInferSeconds = metrics.computeInferSeconds.series(this.#labels);
    this.#batchSize = metrics.batchSize.series(this.#labels);
    if (metrics.cache) for (const c of cacheCounters(metrics.cache)) c.inc(this.#labels, 0);
  }

  succeeded(batchSize: number, totalNs: number, result: JobResult): void {
    const s = this.#sums;
    const execution = result.execution;
    s.success += 1;
    s.inferenceCount += batchSize;
    s.requestUs += us(totalNs);
    s.queueUs += us(result.queueNs);
    s.computeInputUs += us(execution.computeInputNs);
    s.computeInferUs += us(execution.computeInferNs);
    s.computeOutputUs += us(execution.computeOutputNs);
    this.#queueSeconds.observe(seconds(result.queueNs));
  }

  failed(_totalNs: number, error?: unknown): void {
    this.#m.failure.inc({ ...this.#labels, reason: failureReason(error) });
  }

  /** As Triton: a success with its request duration, and a cache hit; no inference, no execution. */
  cacheHit(totalNs: number, lookupNs: number): void {
    const s = this.#sums;
    s.success += 1;
    s.requestUs += us(totalNs);
    s.cacheHits += 1;
    s.cacheHitUs += us(lookupNs);
  }

  cacheMiss(ns: number): void {
    const s = this.#sums;
    s.cacheMisses += 1;
    s.cacheMissUs += us(ns);
  }

  executed(batchSize: number, execution: ExecutionResult): void {
    this.#sums.execCount += 1;
    this.#batchSize.observe(batchSize);
    this.#computeInferSeconds.observe(seconds(execution.computeInferNs));
  }

  /** Adds what was summed for `key` since the last scrape to `counter` (the registry's collect). */
  flush(key: SummedCounter, counter: Counter<'model' | 'version'>): void {
    const sum = this.#sums[key];
    if (sum === 0) return;
    this.#sums[key] = 0;
    counter.inc(this.#labels, sum);
  }

  /** Drops this version's series (on unload), as Triton does. */
  remove(): void {
    this.#sums = noSums();
    const m = this.#m;
    const l = this.#labels;
    for (const c of [m.success, m.inferenceCount, m.execCount, m.requestUs, m.queueUs]) c.remove(l);
    for (const c of [m.computeInputUs, m.computeInferUs, m.computeOutputUs]) c.remove(l);
    for (const reason of FAILURE_REASONS) m.failure.remove({ ...l, reason });
    for (const h of [m.queueSeconds, m.computeInferSeconds, m.batchSize]) h.remove(l);
    if (m.cache) for (const c of cacheCounters(m.cache)) c.remove(l);
  }
}
