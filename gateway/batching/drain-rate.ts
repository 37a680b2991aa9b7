// How fast a model's queue drains while it has a backlog: rows answered per
// unit of busy time, measured between completions. The cost model times the
// compute of an execution; a saturated instance also spends time the cost
// model does not see: the batch's copy to the worker, the gateway's own lag
// in reading answers, the neighbours on the cores. resnet_small under
// overload ran a batch of 16 in 34 ms of compute, but a batch came back every
// 59 ms: counted by compute alone, the wait at arrival was 1.7x too short.

import { WindowSums } from '../../core/window-sums.js';

/** Busy intervals kept: the rate is over the last few seconds at most. */
const INTERVALS = 32;
/** Intervals needed before the rate is trusted. */
const MIN_INTERVALS = 8;

export class DrainRate {
  /** Busy ns (a) and rows answered (b) of the last INTERVALS intervals. */
  readonly #window = new WindowSums(INTERVALS);
  /** The last completion, if work was still queued or running after it. */
  #busySince: bigint | undefined;

  /**
   * An execution of `rows`, cut at `cutNs`, finished at `nowNs`. `busyAfter`:
   * the instances stay busy without waiting on the batcher (the batcher's
   * test: each has another batch, or a full batch is queued), so the time
   * until the next completion is service time. The interval that ends here
   * counts only if the last completion left the model busy: idle gaps are
   * not service time. It starts no earlier than this execution was cut: a
   * backlog can also end without a completion that says so (its queued
   * callers gave up just after an answer found them queued, or its last
   * execution failed), and the gap until the next load's first answer
   * (seconds) counted as busy made the rate 40× too slow for 32 intervals:
   * the SLO mode then shed at half load what it would have served in time.
   */
  completed(cutNs: bigint, nowNs: bigint, rows: number, busyAfter: boolean): void {
    const since = this.#busySince;
    if (since !== undefined) {
      const from = since > cutNs ? since : cutNs;
      if (nowNs > from) this.#window.push(Number(nowNs - from), rows);
    }
    this.#busySince = busyAfter ? nowNs : undefined;
  }

  /**
   * Busy ns per row answered; undefined until enough busy intervals were
   * seen, and whenever the last completion left the model without a backlog.
   * A rate measured in a backlog is only used in one: were shedding to thin
   * the queue, no busy interval would come to correct a rate grown
   * pessimistic, and it would shed everything from then on.
   */
  nsPerRow(): number | undefined {
    const w = this.#window;
    if (this.#busySince === undefined || w.count < MIN_INTERVALS || w.sumB <= 0) return undefined;
    return w.sumA / w.sumB;
  }

  /** Mean rows answered per completion over the same intervals (the batch size the rate was measured at); 0 when none. */
  rowsPerCompletion(): number {
    const w = this.#window;
    return w.count === 0 ? 0 : w.sumB / w.count;
  }
}
