// Calls in flight keyed by a call id this table picks, in an array indexed by
// the id's low bits, not a Map.
//
// Why not a Map: V8 grows and compacts a Map's table by copying its live
// entries into a new table and leaving them in the old one too. A long-lived
// Map's table is in the old generation, so the old table, garbage from then
// on, keeps the remembered-set slots of every entry it held; each scavenge
// treats those entries as live until the next full collection. A Map of
// calls in flight, with a call added and removed per request, rebuilt its
// table every few dozen calls and so kept nearly every request's objects
// (the pending promise and all its continuations reach) alive into the old
// generation. An array slot set to undefined holds nothing.

/** A value of the table with the id it was added under. */
export interface CallEntry {
  callId: number;
}

const MAX_ID = 0xffffffff;

export class CallTable<T extends CallEntry> {
  #slots: (T | undefined)[];
  #mask: number;
  #size = 0;
  #nextId: number;
  /** Never handed out (a frame's reserved id, e.g. the worker link's PING). */
  readonly #reserved: number;

  /** `firstId`: the first id handed out (tests start near the top to see ids wrap around). */
  constructor(reserved = 0, initialCapacity = 64, firstId = 1) {
    this.#nextId = firstId;
    let capacity = 1;
    while (capacity < initialCapacity) capacity *= 2;
    this.#slots = new Array<T | undefined>(capacity).fill(undefined);
    this.#mask = capacity - 1;
    this.#reserved = reserved;
  }

  get size(): number {
    return this.#size;
  }

  /**
   * Stores `entry` under a new id (written into `entry.callId`, and returned):
   * the next id, skipping the reserved one and ids whose slot is taken by a
   * call still in flight, so ids stay unique among calls in flight.
   */
  add(entry: T): number {
    if (2 * (this.#size + 1) > this.#slots.length) this.#grow();
    let id = this.#nextId;
    for (;;) {
      if (id !== this.#reserved && this.#slots[id & this.#mask] === undefined) break;
      id = id >= MAX_ID ? 1 : id + 1;
    }
    this.#nextId = id >= MAX_ID ? 1 : id + 1;
    entry.callId = id;
    this.#slots[id & this.#mask] = entry;
    this.#size++;
    return id;
  }

  /** Removes and returns the call under `id`, if it is in flight. */
  take(id: number): T | undefined {
    const i = id & this.#mask;
    const entry = this.#slots[i];
    if (entry === undefined || entry.callId !== id) return undefined;
    this.#slots[i] = undefined;
    this.#size--;
    return entry;
  }

  /** The calls in flight now (a copy: the caller may take them as it goes). */
  entries(): T[] {
    const out: T[] = [];
    for (const e of this.#slots) if (e !== undefined) out.push(e);
    return out;
  }

  /**
   * Twice the slots. Ids in flight keep distinct slots: two ids whose low bits
   * differ under the old mask differ under the new one too.
   */
  #grow(): void {
    const slots = new Array<T | undefined>(this.#slots.length * 2).fill(undefined);
    const mask = slots.length - 1;
    for (const e of this.#slots) if (e !== undefined) slots[e.callId & mask] = e;
    this.#slots = slots;
    this.#mask = mask;
  }
}
