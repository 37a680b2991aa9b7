// Rows arriving per ns, recently: what the SLO-aware decision expects to
// join a batch while it waits. Counted in fixed windows on the batcher's
// clock and smoothed across them, so one request costs an add and a
// compare. A quiet spell folds empty windows in, so the estimate decays.

const WINDOW_NS = 5_000_000n;
const ALPHA = 0.3;
/** Past this many empty windows the old rate says nothing any more. */
const FORGET = 20n;

export class ArrivalRate {
  #start: bigint | undefined;
  #rows = 0;
  #perNs = 0;
  #lastNs: bigint | undefined;

  /** When rows last arrived; undefined before any. */
  get lastNs(): bigint | undefined {
    return this.#lastNs;
  }

  /** `rows` arrived at `now`. */
  observe(rows: number, now: bigint): void {
    this.#roll(now);
    this.#rows += rows;
    this.#lastNs = now;
  }

  /** Smoothed rows per ns at `now` (0 before a window has closed). */
  rowsPerNs(now: bigint): number {
    this.#roll(now);
    return this.#perNs;
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
