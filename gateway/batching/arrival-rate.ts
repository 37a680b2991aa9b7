// Rows arriving per ns, recently: what the SLO-aware decision expects to
// join a batch while it waits. Counted in fixed windows on the batcher's
// clock and smoothed across them, so one request costs an add and a
// compare. A quiet spell folds empty windows in, so the estimate decays.
// Beside it, the median of the last few gaps between arrivals: a burst
// (recentGapNs).

import { medianOf } from '../../core/median.js';

const WINDOW_NS = 5_000_000n;
const ALPHA = 0.3;
/** Past this many empty windows the old rate says nothing any more. */
const FORGET = 20n;
/** Gaps between arrivals kept for the recent gap (their median). */
const GAPS = 8;
/** How far one gap moves the mean gap: about the last 32 gaps. */
const GAP_ALPHA = 1 / 32;

/** Sorted in place by `recentGapNs`. */
const scratch = new Float64Array(GAPS);

export class ArrivalRate {
  #start: bigint | undefined;
  #rows = 0;
  #perNs = 0;
  #lastNs: bigint | undefined;
  /** The last GAPS gaps between arrivals, per row (ns), as a ring. */
  readonly #gaps = new Float64Array(GAPS);
  #gapCount = 0;
  #meanGap = 0;
  /** recentGapNs's answer until the next arrival (null: not taken since); the SLO mode asks at every decision. */
  #recent: number | undefined | null = null;

  /** When rows last arrived; undefined before any. */
  get lastNs(): bigint | undefined {
    return this.#lastNs;
  }

  /** `rows` arrived at `now`. */
  observe(rows: number, now: bigint): void {
    if (this.#lastNs !== undefined && now >= this.#lastNs) {
      const gap = Number(now - this.#lastNs) / rows;
      this.#gaps[this.#gapCount++ % GAPS] = gap;
      this.#meanGap = this.#gapCount === 1 ? gap : this.#meanGap + GAP_ALPHA * (gap - this.#meanGap);
      this.#recent = null;
    }
    this.#roll(now);
    this.#rows += rows;
    this.#lastNs = now;
  }

  /** Smoothed rows per ns at `now` (0 before a window has closed). */
  rowsPerNs(now: bigint): number {
    this.#roll(now);
    return this.#perNs;
  }

  /**
   * The median gap per row among the last GAPS arrivals; undefined before
   * GAPS / 2 of them. Unlike the rate, which averages over windows of
   * several ms, it sees a burst as it comes: a closed loop's callers, sent
   * their answers together, send again within a fraction of a ms of each
   * other, then nothing until the next answers. The median ignores the
   * silence between bursts.
   */
  recentGapNs(): number | undefined {
    if (this.#recent === null) this.#recent = this.#gapCount < GAPS / 2 ? undefined : medianOf(this.#gaps, Math.min(this.#gapCount, GAPS), scratch);
    return this.#recent;
  }

  /**
   * The mean gap per row over about the last 32 arrivals, silences between
   * bursts included; undefined before GAPS / 2 of them. What a burst's gaps
   * are compared with: the windowed rate decays towards 0 between arrivals
   * that come tens of ms apart, and against it any gaps read as a burst.
   */
  meanGapNs(): number | undefined {
    return this.#gapCount < GAPS / 2 ? undefined : this.#meanGap;
  }

  #roll(now: bigint): void {
    if (this.#start === undefined) {
      this.#start = now;
      return;
    }
    const windows = (now - this.#start) / WINDOW_NS;
    if (windows <= 0n) return;
    if (windows > FORGET) {
      this.#perNs = 0;
    } else {
      // The window that closed with its rows, then the empty ones after it.
      this.#perNs += ALPHA * (this.#rows / Number(WINDOW_NS) - this.#perNs);
      this.#perNs *= (1 - ALPHA) ** Number(windows - 1n);
    }
    this.#rows = 0;
    this.#start += windows * WINDOW_NS;
  }
}
