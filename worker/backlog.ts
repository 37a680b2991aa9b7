// A worker's load report in time: how long a new execution of one model would
// wait here for an instance. A count of executions held says neither how
// large they are (a gateway's batch of 64 rows against another's single row)
// nor how fast this worker's device runs them (a GPU worker beside a CPU one,
// or an older GPU); gateways choosing among workers weigh them by this
// (gateway/scheduling/instance-slots.ts).
//
// Each execution is estimated when it arrives, from the times runs of its
// rows took here lately (core/cost-model.ts, the same medians the gateway's
// batcher plans with), and the estimate leaves with it. The time the running
// ones have already run is taken off, and what is left is spread over the
// instances: a fluid estimate, exact for one instance. Unknown (undefined)
// while an execution held arrived before any run of the model was timed.
import { CostModel } from '../core/cost-model.js';

export class Backlog {
  readonly #cost = new CostModel();
  /** Expected run time of the executions held, each as estimated at its arrival. */
  #heldNs = 0;
  /** Executions held, and those of them that arrived with no estimate. */
  #held = 0;
  #unknown = 0;

  /** An execution of `rows` rows arrives: its estimate, which `leave` takes back (NaN: none yet). */
  arrive(rows: number): number {
    this.#held++;
    const ns = this.#cost.computeNs(rows);
    if (ns === undefined) {
      this.#unknown++;
      return NaN;
    }
    this.#heldNs += ns;
    return ns;
  }

  /** The execution that `arrive` estimated at `estimateNs` is done (answered or failed). */
  leave(estimateNs: number): void {
    this.#held--;
    if (Number.isNaN(estimateNs)) this.#unknown--;
    else this.#heldNs -= estimateNs;
    // Sums of floats taken back in another order drift; none held is exactly none.
    if (this.#held === 0) this.#heldNs = 0;
  }

  /** A run of `rows` rows (merged executions count together) held its instance for `ns`. */
  ran(rows: number, ns: number): void {
    this.#cost.observe(rows, ns);
  }

  /**
   * Expected ns a new execution waits for an instance: the executions held,
   * less `runningNs` (how long the instances' current runs have run, summed),
   * over `instances`. Undefined while one held has no estimate.
   */
  waitNs(runningNs: number, instances: number): number | undefined {
    if (this.#unknown > 0) return undefined;
    return Math.max(0, this.#heldNs - runningNs) / Math.max(1, instances);
  }
}
