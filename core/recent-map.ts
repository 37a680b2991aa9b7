// A map bounded by count that keeps the most recently touched entries: a
// Map keeps insertion order, so a touch moves its entry to the end and the
// first is the least recently touched (as local-lru.ts does by bytes).
// Used where keys come from requests (a batch's shape) and must not grow
// without bound.

export class RecentMap<V> {
  readonly #entries = new Map<string, V>();
  readonly #bound: number;
  readonly #make: (key: string) => V;

  /** At most `bound` entries; `make` builds the value of a key touched for the first time. */
  constructor(bound: number, make: (key: string) => V) {
    if (!(bound >= 1)) throw new RangeError(`Expected a bound of at least 1, got ${bound}`);
    this.#bound = bound;
    this.#make = make;
  }

  /** The value of `key`, made if absent (the least recently touched dropped when full), now the most recent. */
  touch(key: string): V {
    let value = this.#entries.get(key);
    if (value === undefined) {
      if (this.#entries.size >= this.#bound) this.#entries.delete(this.#entries.keys().next().value as string);
      value = this.#make(key);
    } else {
      this.#entries.delete(key);
    }
    this.#entries.set(key, value);
    return value;
  }

  /** The value of `key` without touching it. */
  get(key: string): V | undefined {
    return this.#entries.get(key);
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The values, the least recently touched first. */
  values(): IterableIterator<V> {
    return this.#entries.values();
  }
}
