// How fast the gateway answers request bytes while it has work: bytes of
// requests answered successfully per ns of busy time, over the last few
// hundred answers. With it the in-flight gate turns the bytes it holds into
// the time they take to drain (Little's law), and bounds that time
// (--max-inflight-wait-ms) as well as the bytes. Busy time only: an idle
// spell between answers is no measure of what the gateway can do. Failures
// leave without counting: requests shed or refused quickly would otherwise
// make the gateway look faster than it serves, and the gate admit more of
// what it will only shed.

import { WindowSums } from '../../core/window-sums.js';

/** Answers kept. */
const WINDOW = 256;
/** Busy answers needed before the rate is trusted. */
const MIN_ANSWERS = 16;
/** A rate with no busy interval for this long says nothing any more (a gate that refused on it could not correct it). */
const STALE_NS = 1_000_000_000n;

export class AnswerRate {
  /** Busy ns (a) and bytes answered (b) of the last WINDOW releases. */
  readonly #window = new WindowSums(WINDOW);
  /** The last release, if requests were still held after it. */
  #busySince: bigint | undefined;
  #lastIntervalNs: bigint | undefined;

  /**
   * A request holding `bytes` left the gate at `nowNs` (`answered`: with a
   * successful answer); `stillHeld`: others are still in flight, so the time
   * until the next release is busy time.
   */
  released(nowNs: bigint, bytes: number, answered: boolean, stillHeld: boolean): void {
    const since = this.#busySince;
    if (since !== undefined && nowNs >= since) {
      this.#window.push(Number(nowNs - since), answered ? bytes : 0);
      this.#lastIntervalNs = nowNs;
    }
    this.#busySince = stillHeld ? nowNs : undefined;
  }

  /** Bytes answered per busy ns; undefined until MIN_ANSWERS busy answers, and once stale. */
  bytesPerNs(nowNs: bigint): number | undefined {
    const w = this.#window;
    if (w.count < MIN_ANSWERS || w.sumA <= 0 || w.sumB <= 0) return undefined;
    if (this.#lastIntervalNs === undefined || nowNs - this.#lastIntervalNs > STALE_NS) return undefined;
    return w.sumB / w.sumA;
  }
}
