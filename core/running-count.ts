// How many executions are running, and a way to wait until none is: what a
// scheduler needs of the runs it started, kept as a count instead of a Set of
// their promises. A long-lived Set with a promise added and removed per
// execution kept nearly every request's objects alive into the old generation
// (see core/call-table.ts for why V8 does that); a count holds nothing.

export class RunningCount {
  #count = 0;
  #idle: (() => void)[] = [];
  /** Bound once: settling a run allocates no closure. */
  readonly #settled = (): void => {
    if (--this.#count > 0 || this.#idle.length === 0) return;
    const idle = this.#idle;
    this.#idle = [];
    for (const resolve of idle) resolve();
  };

  get size(): number {
    return this.#count;
  }

  /** Counts `run` until it settles, fulfilled or rejected (its rejection is the caller's to handle). */
  track(run: Promise<unknown>): void {
    this.#count++;
    run.then(this.#settled, this.#settled);
  }

  /** Resolves once no run is counted (at once when none is). */
  idle(): Promise<void> {
    if (this.#count === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }
}
