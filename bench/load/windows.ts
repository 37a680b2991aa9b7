// Measurement windows, perf_analyzer style: back-to-back windows of
// --measurement-interval ms (or of --measurement-request-count answers,
// never longer than the interval), until the stability rule holds or
// --max-trials windows have passed. The result merges the last windows the
// rule looked at, as perf_analyzer reports them.
import type * as hdr from 'hdr-histogram-js';
import { isInferenceError } from '../../client/errors.js';
import { type LatencySummary, latencyHistogram, mergeHistograms, recordUs, summarize } from './histogram.js';
import { DEFAULT_STABILITY, type StabilityRule, isStable } from './stability.js';

export interface WindowOptions {
  /** Window length in ms; in count mode, the longest a window may last. */
  readonly intervalMs: number;
  /** Count mode: a window closes after this many answers (perf_analyzer's count_windows). */
  readonly requestCount?: number;
  /** Windows at most per load level (perf_analyzer's --max-trials). */
  readonly maxTrials: number;
  readonly stability?: StabilityRule;
  /** Watch and report this latency percentile instead of the average. */
  readonly percentile?: number;
  /** Batch rows per request, for infer/s. */
  readonly rowsPerRequest?: number;
  /** Answers within this latency count towards goodput. */
  readonly sloUs?: number;
}

export interface WindowResult {
  readonly seconds: number;
  /** Answers received in the window. */
  readonly requests: number;
  readonly inferPerSecond: number;
  readonly latency: LatencySummary;
  /** Failures in the window, by status (e.g. UNAVAILABLE, or "NOT_FOUND (HTTP 404)"). */
  readonly errors: Readonly<Record<string, number>>;
}

export interface Measured {
  readonly trials: readonly WindowResult[];
  readonly stable: boolean;
  /** Index of the first window merged into the figures below (boundaries[mergedFrom] … boundaries[trials.length]). */
  readonly mergedFrom: number;
  readonly seconds: number;
  readonly requests: number;
  readonly requestsPerSecond: number;
  readonly inferPerSecond: number;
  /** Inferences per second whose request was answered within the SLO (NaN without one). */
  readonly goodputPerSecond: number;
  readonly latency: LatencySummary;
  readonly errors: Readonly<Record<string, number>>;
  readonly firstError?: string;
}

export interface WindowHooks {
  /** At each window boundary (n + 1 calls for n windows): e.g. read server statistics or CPU time. */
  readonly onBoundary?: (index: number) => void;
  /** After each window, for progress output. */
  readonly onWindow?: (trial: number, window: WindowResult, stable: boolean) => void;
}

/** The key failures are counted under: the gRPC status name, plus the HTTP status when there is one. */
export function errorKey(error: unknown): string {
  if (isInferenceError(error)) return error.httpStatus !== undefined ? `${error.codeName} (HTTP ${error.httpStatus})` : error.codeName;
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'CLIENT_ERROR';
}

/** What a failure says, without the status name that errorKey already gives. */
export function errorMessage(error: unknown): string {
  if (isInferenceError(error)) return error.details;
  return error instanceof Error ? error.message : String(error);
}

interface OpenWindow {
  readonly start: number;
  readonly histogram: hdr.Histogram;
  readonly errors: Record<string, number>;
  withinSlo: number;
  answers: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class MeasurementWindows {
  readonly #o: WindowOptions;
  readonly #hooks: WindowHooks;
  #current: OpenWindow | undefined;
  #countReached: (() => void) | undefined;
  #firstError: string | undefined;

  constructor(options: WindowOptions, hooks: WindowHooks = {}) {
    if (!(options.intervalMs > 0)) throw new RangeError(`measurement interval must be > 0 ms, got ${options.intervalMs}`);
    if (!(options.maxTrials >= 1)) throw new RangeError(`max trials must be ≥ 1, got ${options.maxTrials}`);
    this.#o = options;
    this.#hooks = hooks;
  }

  /** True while a window is open (after warm-up, before the end). */
  get measuring(): boolean {
    return this.#current !== undefined;
  }

  /** An answer that took `latencyUs`; ignored outside windows. */
  record(latencyUs: number): void {
    const w = this.#current;
    if (!w) return;
    recordUs(w.histogram, latencyUs);
    w.answers++;
    if (this.#o.sloUs !== undefined && latencyUs <= this.#o.sloUs) w.withinSlo++;
    if (this.#o.requestCount !== undefined && w.answers >= this.#o.requestCount) this.#countReached?.();
  }

  /** A failed request; ignored outside windows. */
  fail(key: string, message: string): void {
    const w = this.#current;
    if (!w) return;
    w.errors[key] = (w.errors[key] ?? 0) + 1;
    this.#firstError ??= `${key}: ${message}`;
  }

  /** Runs the windows; resolves when the level is stable or the trials are used up. */
  async measure(): Promise<Measured> {
    const rule = this.#o.stability ?? DEFAULT_STABILITY;
    const rows = this.#o.rowsPerRequest ?? 1;
    const trials: WindowResult[] = [];
    const histograms: hdr.Histogram[] = [];
    const within: number[] = [];
    const watched = (l: LatencySummary): number => (this.#o.percentile !== undefined ? (l.pxUs ?? NaN) : l.avgUs);
    let stable = false;
    this.#open();
    this.#hooks.onBoundary?.(0);
    try {
      for (let t = 0; t < this.#o.maxTrials; t++) {
        const reached = new Promise<void>((r) => (this.#countReached = r));
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([reached, new Promise<void>((r) => (timer = setTimeout(r, this.#o.intervalMs)))]);
        clearTimeout(timer);
        const w = this.#current as OpenWindow;
        const end = performance.now();
        if (t + 1 < this.#o.maxTrials) this.#open(end);
        else this.#current = undefined;
        this.#hooks.onBoundary?.(t + 1);
        const seconds = (end - w.start) / 1000;
        const window: WindowResult = {
          seconds,
          requests: w.answers,
          inferPerSecond: (w.answers * rows) / seconds,
          latency: summarize(w.histogram, this.#o.percentile),
          errors: w.errors,
        };
        trials.push(window);
        histograms.push(w.histogram);
        within.push(w.withinSlo);
        stable = isStable(
          trials.map((x) => ({ throughput: x.inferPerSecond, latencyUs: watched(x.latency) })),
          rule,
        );
        this.#hooks.onWindow?.(t, window, stable);
        if (stable) break;
      }
    } finally {
      this.#current = undefined;
    }
    const mergedFrom = Math.max(0, trials.length - rule.windows);
    const last = trials.slice(mergedFrom);
    const merged = mergeHistograms(histograms.slice(mergedFrom));
    const seconds = last.reduce((n, w) => n + w.seconds, 0);
    const requests = last.reduce((n, w) => n + w.requests, 0);
    const errors: Record<string, number> = {};
    for (const w of last) for (const [k, n] of Object.entries(w.errors)) errors[k] = (errors[k] ?? 0) + n;
    const result: Measured = {
      trials,
      stable,
      mergedFrom,
      seconds,
      requests,
      requestsPerSecond: requests / seconds,
      inferPerSecond: (requests * rows) / seconds,
      goodputPerSecond: this.#o.sloUs === undefined ? NaN : (within.slice(mergedFrom).reduce((a, b) => a + b, 0) * rows) / seconds,
      latency: summarize(merged, this.#o.percentile),
      errors,
      ...(this.#firstError !== undefined ? { firstError: this.#firstError } : {}),
    };
    for (const h of histograms) h.destroy();
    merged.destroy();
    return result;
  }

  #open(start = performance.now()): void {
    this.#current = { start, histogram: latencyHistogram(), errors: {}, withinSlo: 0, answers: 0 };
  }
}

export { sleep };
