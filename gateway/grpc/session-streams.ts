import { type Http2Session } from 'node:http2';
import { isMap } from 'node:util/types';

// An HTTP/2 session's open streams, kept where a closed stream is really let go.
//
// Why: Node keeps a session's streams in a Map (`session[kState].streams`),
// and V8 moves a Map's entries to a new table every few dozen streams while
// leaving them in the old table too. A session lives long, so its Map's old
// tables sit in the old generation, and each, garbage from then on, keeps every
// stream it held (and grpc-js's call, the request, its tensors, the answer)
// alive through every scavenge until the next full collection: 9–17 % of what
// a gRPC server allocated was promoted that way, grpc-echo and a bare
// node:http2 server included; 1–1.4 % with this table (docs/performance.md). This table clears a
// stream's slot when it is deleted. It is open addressing on the stream id with
// linear probing and backward-shift deletion, so nothing is left behind.
//
// Node 20 calls get, set, delete, size and forEach on it (lib/internal/http2/core.js);
// the rest of Map's interface is there in case a later Node uses it.
// `useStreamTable` swaps it in only where it finds the Map it expects, empty,
// so a Node that keeps its streams otherwise is left as it is.

const EMPTY = 0; // stream 0 is the connection, never a stream

/** A session's streams by id, with Map's interface. */
export class StreamTable<T> {
  #ids: Int32Array;
  #values: (T | undefined)[];
  #mask: number;
  #size = 0;

  constructor(capacity = 64) {
    let slots = 8;
    while (slots < capacity) slots *= 2;
    this.#ids = new Int32Array(slots);
    this.#values = new Array<T | undefined>(slots).fill(undefined);
    this.#mask = slots - 1;
  }

  get size(): number {
    return this.#size;
  }

  get(id: number): T | undefined {
    const i = this.#slotOf(id);
    return i < 0 ? undefined : this.#values[i];
  }

  set(id: number, value: T): this {
    if (!Number.isInteger(id) || id <= 0 || id > 0x7fffffff) throw new RangeError(`not an HTTP/2 stream id: ${id}`);
    const ids = this.#ids;
    const mask = this.#mask;
    let i = id & mask;
    while (ids[i] !== EMPTY && ids[i] !== id) i = (i + 1) & mask;
    if (ids[i] === EMPTY) {
      ids[i] = id;
      this.#size++;
    }
    this.#values[i] = value;
    if (this.#size * 2 > mask + 1) this.#grow();
    return this;
  }

  delete(id: number): boolean {
    let i = this.#slotOf(id);
    if (i < 0) return false;
    const ids = this.#ids;
    const values = this.#values;
    const mask = this.#mask;
    // Backward shift: move each later entry of the run whose home slot is not
    // between the hole and it into the hole, so every lookup still finds it.
    for (let j = (i + 1) & mask; ids[j] !== EMPTY; j = (j + 1) & mask) {
      const home = ids[j]! & mask;
      const between = i <= j ? i < home && home <= j : i < home || home <= j;
      if (between) continue;
      ids[i] = ids[j]!;
      values[i] = values[j];
      i = j;
    }
    ids[i] = EMPTY;
    values[i] = undefined;
    this.#size--;
    return true;
  }

  /**
   * Calls `callback` for each stream, as Map does. Node calls it to destroy or
   * close every stream, which deletes them from this table as it goes: the
   * streams are taken first, and one deleted before its turn is skipped.
   */
  forEach(callback: (value: T, id: number, table: this) => void): void {
    for (const [id, value] of this.entries()) if (this.get(id) === value) callback(value, id, this);
  }

  /** The streams as they are now (a copy, so deleting while iterating is safe); Node 20 calls none of these. */
  entries(): IterableIterator<[number, T]> {
    const live: [number, T][] = [];
    for (let i = 0; i < this.#ids.length; i++) if (this.#ids[i] !== EMPTY) live.push([this.#ids[i]!, this.#values[i]!]);
    return live[Symbol.iterator]();
  }

  keys(): IterableIterator<number> {
    return Array.from(this.entries(), ([id]) => id)[Symbol.iterator]();
  }

  values(): IterableIterator<T> {
    return Array.from(this.entries(), ([, value]) => value)[Symbol.iterator]();
  }

  [Symbol.iterator](): IterableIterator<[number, T]> {
    return this.entries();
  }

  clear(): void {
    this.#ids.fill(EMPTY);
    this.#values.fill(undefined);
    this.#size = 0;
  }

  #slotOf(id: number): number {
    const ids = this.#ids;
    const mask = this.#mask;
    for (let i = id & mask; ; i = (i + 1) & mask) {
      const at = ids[i];
      if (at === id) return id === EMPTY ? -1 : i;
      if (at === EMPTY) return -1;
    }
  }

  #grow(): void {
    const ids = this.#ids;
    const values = this.#values;
    const slots = ids.length * 2;
    this.#ids = new Int32Array(slots);
    this.#values = new Array<T | undefined>(slots).fill(undefined);
    this.#mask = slots - 1;
    this.#size = 0;
    for (let i = 0; i < ids.length; i++) if (ids[i] !== EMPTY) this.set(ids[i]!, values[i]!);
    // The old arrays are garbage now, but may sit in the old generation: they must not hold the streams.
    values.fill(undefined);
  }
}

interface SessionState {
  streams: unknown;
}

/**
 * Keeps `session`'s streams in a StreamTable from now on. Call it on the
 * server's 'session' event, before any stream arrives. Returns false (and
 * changes nothing) when the session does not keep its streams in an empty Map
 * where Node 20 does.
 */
export function useStreamTable(session: Http2Session): boolean {
  const fields = session as unknown as Record<symbol, Partial<SessionState> | undefined>;
  for (const key of Object.getOwnPropertySymbols(session)) {
    if (key.description !== 'state') continue;
    const state = fields[key];
    // Node's own Map subclass (SafeMap) is not `instanceof Map`.
    if (state === undefined || !isMap(state.streams)) continue;
    if (state.streams.size !== 0) return false;
    state.streams = new StreamTable();
    return true;
  }
  return false;
}
