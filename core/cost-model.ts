// What one execution of a model version costs, by batch size, learned online
// from the workers' timings (compute input + infer + output, as Triton's
// statistics count them); a worker learns its own runs with it too, for the
// backlog it reports (worker/backlog.ts). One bucket per power of two of rows, each holding
// its last WINDOW timings: its estimate is their median, so estimates
// interpolate between measured sizes. Cold at start: no estimate until a
// batch ran, and nothing is shed on a guess. Fresh as the machine's load
// changes: a bucket follows within half a window of timings.
//
// A median, not a running mean: on a busy host one execution in a few runs
// several times slower (an ONNX Runtime thread descheduled, the first run of
// a new batch size allocating). A mean moved by such outliers taught SLO mode
// that one MLP row costs 8 ms instead of 2, and with it waited for batches
// it did not need and shed requests at half the capacity.

import { medianOf } from './median.js';

/** Timings a bucket keeps: its estimate is their median, its floor their least. */
const WINDOW = 8;
/** Executions seen before the estimates are trusted for shedding: a model's first runs allocate, and run several times slower. */
const TRUSTED_EXECUTIONS = 4;
/** Executions the overhead's median and floor look back over. */
const FLOOR_WINDOW = 16;
/**
 * A bucket not timed in this many executions (of any size) is left out of
 * the estimates until it is timed again. A size that timed slow on a busy
 * moment otherwise stayed slow for good: smaller batches looked more
 * efficient, so it was never run again to be corrected (SLO mode settled on
 * batches of 9–12 rows of a 64-row MLP, whose 64-row bucket said 36 ms
 * where it computes in 8, and shed a third of a closed loop's requests).
 * Left out, the largest size still timed is doubled again (efficientRows).
 */
export const STALE_EXECUTIONS = 256;

interface Bucket {
  /** The last WINDOW timings (ns) and their rows, as rings. */
  readonly ns: number[];
  readonly rows: number[];
  next: number;
  samples: number;
  /** The model's execution count at its last timing. */
  lastAt: number;
}

export interface CostPoint {
  /** Mean rows of the bucket's recent executions. */
  readonly rows: number;
  /** Their median execution time, at most any larger bucket's (time never falls with more rows). */
  readonly ns: number;
  readonly samples: number;
}

/** Bucket of `rows`: 0 for 1, 1 for 2, 2 for 3–4, 3 for 5–8, … */
function bucketOf(rows: number): number {
  return rows <= 1 ? 0 : Math.ceil(Math.log2(rows));
}

/** Sorted in place by `median`: the estimates are rebuilt after every execution, which for a model without batching is every request. */
const scratch = new Float64Array(Math.max(WINDOW, FLOOR_WINDOW));

function median(xs: readonly number[]): number {
  return medianOf(xs, xs.length, scratch);
}

function mean(xs: readonly number[]): number {
  let sum = 0;
  for (const x of xs) sum += x;
  return sum / xs.length;
}

/**
 * The buckets as points by rows, each time capped by every larger bucket's:
 * more rows never take less time, so a small bucket above a larger one is
 * stale (not run since the machine got quieter) or noise.
 */
function envelope(buckets: readonly (Bucket | undefined)[], time: (b: Bucket) => number): CostPoint[] {
  const points = buckets.filter((b): b is Bucket => b !== undefined).map((b) => ({ rows: mean(b.rows), ns: time(b), samples: b.samples }));
  for (let i = points.length - 2; i >= 0; i--) {
    const p = points[i] as CostPoint;
    const above = (points[i + 1] as CostPoint).ns;
    if (p.ns > above) points[i] = { ...p, ns: above };
  }
  return points;
}

/**
 * What the schedulers read of a cost model to size, time and shed a batch:
 * a CostModel's, or a shape's reading of its kind's size curve
 * (core/size-scaled-cost.ts) while its own model is not trusted yet.
 */
export interface BatchCost {
  readonly estimateNs: (rows: number) => number | undefined;
  readonly computeNs: (rows: number) => number | undefined;
  computeFloorNs(rows: number): number | undefined;
  efficientRows(maxBatch: number): number;
  readonly overheadNs: number;
  readonly overheadFloorNs: number;
  readonly samples: number;
  readonly trusted: boolean;
}

export class CostModel implements BatchCost {
  readonly #buckets: (Bucket | undefined)[] = [];
  /** Median wall time of an execution beyond its compute (transport, copies, scheduling), from executions sent to an idle instance. */
  #overheadNs = 0;

  /** One execution of `rows` rows took `ns`. */
  observe(rows: number, ns: number): void {
    if (!(rows >= 1) || !(ns >= 0) || !Number.isFinite(ns)) return;
    this.#points = undefined;
    this.#floorPoints = undefined;
    const i = bucketOf(rows);
    const b = (this.#buckets[i] ??= { ns: [], rows: [], next: 0, samples: 0, lastAt: 0 });
    // A bucket's first timing gives way to its second: ONNX Runtime's first run at a new batch size allocates, and
    // takes several times as long. Kept, a size met once at start (a burst while the model warmed) stayed slow.
    if (b.samples === 1) b.next = 0;
    b.ns[b.next] = ns;
    b.rows[b.next] = rows;
    b.next = (b.next + 1) % WINDOW;
    b.samples += 1;
    this.#samples++;
    b.lastAt = this.#samples;
  }

  /** Buckets timed within the last STALE_EXECUTIONS executions. */
  #fresh(): (Bucket | undefined)[] {
    const since = this.#samples - STALE_EXECUTIONS;
    return this.#buckets.map((b) => (b !== undefined && b.lastAt > since ? b : undefined));
  }

  /** An execution sent to an idle instance took `wallNs` from cut to answer, of which `computeNs` computing. */
  observeOverhead(wallNs: number, computeNs: number): void {
    const extra = wallNs - computeNs;
    if (!(extra >= 0) || !Number.isFinite(extra)) return;
    // A model's first executions also pay for warming the paths to and from the worker (tens of ms), and would
    // stay the floor until FLOOR_WINDOW idle executions later.
    if (this.samples <= TRUSTED_EXECUTIONS) return;
    this.#recentOverheads[this.#overheadAt++ % FLOOR_WINDOW] = extra;
    this.#overheadFloor = Math.min(...this.#recentOverheads);
    this.#overheadNs = median(this.#recentOverheads);
  }

  /**
   * The median overhead of the last FLOOR_WINDOW executions: what an
   * execution is expected to add to its compute. Not a moving mean: when a
   * load steps up, the gateway's loop is late to read a few answers by
   * 50-140 ms, and a mean moved by them told the SLO mode every batch took
   * that long. It then cut batches of 1-8 rows (no time to wait for more)
   * and shed 60-100 % of the arrivals for seconds (large MLP, 150 % load:
   * goodput 250-530/s of a capacity near 3,000/s).
   */
  get overheadNs(): number {
    return this.#overheadNs;
  }

  /**
   * The least overhead of the last FLOOR_WINDOW executions: the way to the
   * worker and back without the stalls of a busy machine (a late event loop,
   * a descheduled worker) that raise the median. SLO mode times a batch sent
   * ahead by it, and the cut sheds a queued request only on it.
   */
  get overheadFloorNs(): number {
    return this.#overheadFloor;
  }

  readonly #recentOverheads: number[] = [];
  #overheadAt = 0;
  /** Kept at each execution: the batcher reads it at every request (shedding lead, dispatch time). */
  #overheadFloor = 0;

  /** Executions observed, all sizes. */
  get samples(): number {
    return this.#samples;
  }

  /** Counted at each timing: `trusted` is read at every request. */
  #samples = 0;

  get cold(): boolean {
    return this.#buckets.every((b) => b === undefined);
  }

  /** Seen enough executions to shed on: see TRUSTED_EXECUTIONS. */
  get trusted(): boolean {
    return this.samples >= TRUSTED_EXECUTIONS;
  }

  /** Measured points, by rows (built again only after a new timing: estimates run on every request). */
  points(): readonly CostPoint[] {
    this.#points ??= envelope(this.#fresh(), (b) => median(b.ns));
    return this.#points;
  }

  #points: readonly CostPoint[] | undefined;

  /** The least recent timing of each bucket timed twice or more, as points: what shedding may count on. */
  #floor(): readonly CostPoint[] {
    this.#floorPoints ??= envelope(
      this.#fresh().filter((b) => b !== undefined && b.samples >= 2),
      (b) => Math.min(...b.ns),
    );
    return this.#floorPoints;
  }

  #floorPoints: readonly CostPoint[] | undefined;

  /**
   * Expected ns of one execution of `rows` rows, compute plus the learned
   * overhead; undefined while cold.
   * Between measured sizes: linear. Below the smallest: its time per row (a
   * lower bound). Above the largest: the last segment continued, its slope
   * kept between 0 and the largest's time per row (with one point, that
   * time per row: an upper bound, as rows cost less each in larger
   * batches). Scaling the whole time per row would count a run's fixed
   * cost once per row: a model measured at small batches only would look
   * too slow to ever batch more, and its estimate would never be corrected.
   */
  // Bound (properties, not methods): the schedulers hand them on as cost functions (decideSlo, newcomerRows, the
  // shedding estimates) at every decision, with no closure made there.
  readonly estimateNs = (rows: number): number | undefined => {
    const ns = estimate(this.points(), rows);
    return ns === undefined ? undefined : ns + this.#overheadNs;
  };

  /** Expected ns the instance computes `rows` rows, without the overhead: how long the batch occupies it. */
  readonly computeNs = (rows: number): number | undefined => estimate(this.points(), rows);

  /**
   * The least ns `rows` rows have lately taken to compute (each bucket's
   * quickest recent timing): a lower bound for shedding. A request shed by
   * it would have missed its deadline even on the machine's best recent
   * form; the median would refuse requests that a quiet moment serves.
   */
  computeFloorNs(rows: number): number | undefined {
    return estimate(this.#floor(), rows, 'flat');
  }

  /**
   * The batch size past which larger batches buy little throughput (SLO
   * mode's full batch): see `efficientRows`. maxBatch while cold; recomputed
   * only when a timing came in.
   */
  efficientRows(maxBatch: number): number {
    const samples = this.samples;
    if (this.#efficient === undefined || this.#efficient.samples !== samples || this.#efficient.maxBatch !== maxBatch) {
      this.#efficient = { samples, maxBatch, rows: efficientRows(this.points(), maxBatch) };
    }
    return this.#efficient.rows;
  }

  #efficient: { samples: number; maxBatch: number; rows: number } | undefined;
}

/**
 * Doubling the batch must gain at least this much throughput for the curve to
 * count as still rising. Not 5 %: medians taken at different moments of a busy
 * machine differ by more, and ResNet-18 on CPU (+7 % from 1 row to 2, flat
 * after) read as rising and had its batches doubled.
 */
const RISING = 1.1;
/** The efficient batch runs at least this share of the best throughput measured. */
const EFFICIENT_SHARE = 0.9;

/**
 * Whether doubling the batch up to the largest size measured still gained
 * RISING, judged from two measured sizes about a doubling apart: the
 * largest and the largest at most 3/4 of it. Without such a pair (seen at
 * one size, or at 1 and 8 rows only) nothing says the curve flattened:
 * interpolating between far sizes draws a straight line, which would read
 * as flat and stop the batches from ever growing.
 */
function stillRising(points: readonly CostPoint[], last: CostPoint): boolean {
  let half: CostPoint | undefined;
  for (const p of points) if (p.rows <= 0.75 * last.rows) half = p;
  if (half === undefined || half.rows < last.rows / 3) return true;
  return last.rows / last.ns >= RISING * (half.rows / half.ns);
}

/**
 * The smallest batch whose throughput (rows per ns of compute) is at least
 * EFFICIENT_SHARE of the best up to the largest size measured, once the
 * curve has flattened there (doubling the batch up to it gained less than
 * RISING). While it still rises, twice the largest size measured (at most
 * maxBatch): larger batches must be tried before they can be judged, or a
 * model seen at small batches only would never be batched more. Past the
 * efficient size a batch only adds latency: every row in it waits for the
 * others, and a caller arriving meanwhile waits for all of it. On CPU
 * (compute-bound) that size is small; on a GPU, or a model bound by
 * memory bandwidth at small batches, it is large.
 */
export function efficientRows(points: readonly CostPoint[], maxBatch: number): number {
  const last = points[points.length - 1];
  if (last === undefined) return maxBatch;
  const top = Math.min(maxBatch, Math.max(1, Math.floor(last.rows)));
  const throughput = (rows: number): number => rows / (estimate(points, rows) ?? Infinity);
  if (top < maxBatch && stillRising(points, last)) return Math.min(maxBatch, 2 * top);
  let best = 0;
  for (let n = 1; n <= top; n++) best = Math.max(best, throughput(n));
  // (1 − 1e-9: a size exactly at the share counts, whatever the rounding.)
  for (let n = 1; n <= top; n++) if (throughput(n) >= EFFICIENT_SHARE * best * (1 - 1e-9)) return n;
  return top;
}

/**
 * The interpolation of `estimateNs`, pure, over points sorted by rows.
 * `beyond` the largest size measured: 'continue' its last segment (an
 * estimate), or 'flat' at its time (a lower bound: more rows never take
 * less time; continuing one point's time per row could shed a batch of 50
 * from a first run of 1).
 */
export function estimate(points: readonly CostPoint[], rows: number, beyond: 'continue' | 'flat' = 'continue'): number | undefined {
  const first = points[0];
  if (first === undefined) return undefined;
  if (rows <= first.rows) return (first.ns * rows) / first.rows;
  for (let i = 1; i < points.length; i++) {
    const hi = points[i] as CostPoint;
    if (rows <= hi.rows) {
      const lo = points[i - 1] as CostPoint;
      return lo.ns + ((hi.ns - lo.ns) * (rows - lo.rows)) / (hi.rows - lo.rows);
    }
  }
  const last = points[points.length - 1] as CostPoint;
  if (beyond === 'flat') return last.ns;
  const perRow = last.ns / last.rows;
  const prev = points[points.length - 2];
  const slope = prev === undefined ? perRow : Math.min(perRow, Math.max(0, (last.ns - prev.ns) / (last.rows - prev.rows)));
  return last.ns + slope * (rows - last.rows);
}
