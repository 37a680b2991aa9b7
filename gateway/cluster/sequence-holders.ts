/**
 * Which gateway process keeps each open sequence of a stateful model (keys:
 * sequence-scheduler.ts processKey), as the primary records it. A claim (a
 * process took the START) first has the process that kept the key end its
 * own, then records the claimant. Claims of one key run one after another:
 * two STARTs of one sequence at two processes at once would otherwise both
 * read the holder before either's drop was answered, both be recorded in
 * turn, and leave the sequence open in both, the record naming only one.
 */
export class SequenceHolders<P> {
  readonly #holders = new Map<string, P>();
  /** The last claim of each key still running; the next claim of that key waits for it. */
  readonly #claims = new Map<string, Promise<void>>();
  readonly #live: (process: P) => boolean;

  /** `live`: whether a recorded process may still be asked (connected, ready). */
  constructor(live: (process: P) => boolean) {
    this.#live = live;
  }

  /**
   * `from` took the START of `key`: after the claims of `key` before it,
   * `drop` is asked of the process that keeps it now (when another, and live;
   * a failed drop is ignored: that process is going), then `from` is recorded.
   */
  claim(key: string, from: P, drop: (holder: P) => Promise<unknown>): Promise<void> {
    const next = (this.#claims.get(key) ?? Promise.resolve()).then(async () => {
      const before = this.#holders.get(key);
      if (before !== undefined && before !== from && this.#live(before)) await drop(before).catch(() => undefined);
      this.#holders.set(key, from);
    });
    this.#claims.set(key, next);
    void next.finally(() => {
      if (this.#claims.get(key) === next) this.#claims.delete(key);
    });
    return next;
  }

  /** The process that keeps `key`, if any. */
  holder(key: string): P | undefined {
    return this.#holders.get(key);
  }

  /** `from` ended the sequence `key` (END, idle, dropped): forgotten if it is still the one recorded. */
  ended(key: string, from: P): void {
    if (this.#holders.get(key) === from) this.#holders.delete(key);
  }

  /** A process is gone: its sequences are kept nowhere. */
  forget(process: P): void {
    for (const [key, holder] of this.#holders) if (holder === process) this.#holders.delete(key);
  }
}
