// What one execution of a model version costs, by batch size, learned online
// from the workers' timings (compute input + infer + output, as Triton's
// statistics count them). One exponentially weighted mean per power-of-two
// bucket of rows, each with the mean rows it saw, so estimates interpolate
// between measured sizes. Cold at start: no estimate until a batch ran, and
// nothing is shed on a guess. Fresh as the machine's load changes: each new
// timing moves its bucket by ALPHA.

const ALPHA = 0.2;
/** Executions the overhead floor looks back over. */
const FLOOR_WINDOW = 16;

interface Bucket {
  rows: number;
  ns: number;
  samples: number;
}

export interface CostPoint {
  /** Mean rows of the executions in the bucket. */
  readonly rows: number;
  /** Their weighted mean execution time. */
  readonly ns: number;
  readonly samples: number;
}

/** Bucket of `rows`: 0 for 1, 1 for 2, 2 for 3–4, 3 for 5–8, … */
function bucketOf(rows: number): number {
  return rows <= 1 ? 0 : Math.ceil(Math.log2(rows));
}

export class CostModel {
  readonly #buckets: (Bucket | undefined)[] = [];
  /** Mean wall time of an execution beyond its compute (transport, copies, scheduling), from executions sent to an idle instance. */
  #overheadNs = 0;

  /** One execution of `rows` rows took `ns`. */
  observe(rows: number, ns: number): void {
    if (!(rows >= 1) || !(ns >= 0) || !Number.isFinite(ns)) return;
    this.#points = undefined;
    const i = bucketOf(rows);
    const b = this.#buckets[i];
    if (!b) {
      this.#buckets[i] = { rows, ns, samples: 1 };
      return;
    }
    b.rows += ALPHA * (rows - b.rows);
    b.ns += ALPHA * (ns - b.ns);
    b.samples += 1;
  }

  /** An execution sent to an idle instance took `wallNs` from cut to answer, of which `computeNs` computing. */
  observeOverhead(wallNs: number, computeNs: number): void {
    const extra = wallNs - computeNs;
    if (!(extra >= 0) || !Number.isFinite(extra)) return;
    this.#overheadNs += ALPHA * (extra - this.#overheadNs);
    this.#recentOverheads[this.#overheadAt++ % FLOOR_WINDOW] = extra;
  }

  /** Mean overhead: what an execution is expected to add to its compute. */
  get overheadNs(): number {
    return this.#overheadNs;
  }

  /**
   * The least overhead of the last FLOOR_WINDOW executions: what shedding
   * may count on. The mean rises with a busy machine's stalls (a late event
   * loop, a descheduled worker); shedding on it refused, at half the
   * capacity, requests that fixed delays answered in time.
   */
  get overheadFloorNs(): number {
    let min = Infinity;
    for (const x of this.#recentOverheads) if (x < min) min = x;
    return min === Infinity ? 0 : min;
  }

  readonly #recentOverheads: number[] = [];
  #overheadAt = 0;

  /** Executions observed, all sizes. */
  get samples(): number {
    let n = 0;
    for (const b of this.#buckets) n += b?.samples ?? 0;
    return n;
  }

  get cold(): boolean {
    return this.#buckets.every((b) => b === undefined);
  }

  /** Measured points, by rows (built again only after a new timing: estimates run on every request). */
  points(): readonly CostPoint[] {
    this.#points ??= this.#buckets.filter((b): b is Bucket => b !== undefined).map((b) => ({ rows: b.rows, ns: b.ns, samples: b.samples }));
    return this.#points;
  }

  #points: readonly CostPoint[] | undefined;

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
  estimateNs(rows: number): number | undefined {
    const ns = estimate(this.points(), rows);
    return ns === undefined ? undefined : ns + this.#overheadNs;
  }

  /** Expected ns the instance computes `rows` rows, without the overhead: how long the batch occupies it. */
  computeNs(rows: number): number | undefined {
    return estimate(this.points(), rows);
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

/** Doubling the batch must gain at least this much throughput for the curve to count as still rising. */
const RISING = 1.05;
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

/** The interpolation of `estimateNs`, pure, over points sorted by rows. */
export function estimate(points: readonly CostPoint[], rows: number): number | undefined {
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
  const perRow = last.ns / last.rows;
  const prev = points[points.length - 2];
  const slope = prev === undefined ? perRow : Math.min(perRow, Math.max(0, (last.ns - prev.ns) / (last.rows - prev.rows)));
  return last.ns + slope * (rows - last.rows);
}
