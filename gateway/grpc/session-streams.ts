import { randomInt } from 'node:crypto';
import { type Http2Session, type ServerHttp2Stream } from 'node:http2';
import { isMap } from 'node:util/types';

// An HTTP/2 session's open streams, kept where a closed stream is really let go.
//
// Why: Node keeps a session's streams in a Map (`session[kState].streams`),
// and V8 leaves a Map's entries in its old tables when it rebuilds it
// (core/call-table.ts says how that keeps them alive). A session lives long,
// so every stream it held, with grpc-js's call, the request, its tensors and
// the answer, survived each scavenge until the next full collection: 9–17 % of
// what a gRPC server allocated was promoted that way (grpc-echo and a bare
// node:http2 server too), 1–1.4 % with this table (docs/performance.md).
//
// Open addressing with linear probing and backward-shift deletion, so a
// deleted stream's slot holds nothing. The client picks the stream ids, so the
// home slot is a multiplicative hash with a multiplier drawn per process:
// with the id's low bits as the slot, ids a power of two apart all shared one
// slot, and 20,000 streams opened that way took 0.8 s of CPU to add, find and
// remove (9 ms hashed; Node's Map 13 ms).
//
// Node 20 calls get, set, delete, size and forEach on it
// (lib/internal/http2/core.js); the rest of Map's interface is there so that
// a later Node that calls more fails nothing. `useStreamTable` swaps it in only
// where it finds the Map it expects, empty; otherwise Node's Map stays.

const EMPTY = 0; // stream 0 is the connection, never a stream

/** Odd, so that multiplying by it permutes the 32-bit ids; unknown to clients. */
const MULTIPLIER = (randomInt(0x40000000) * 2 + 1) | 0;

/** A session's streams by id, with Map's interface. */
export class StreamTable<T> {
  #ids: Int32Array;
  #values: (T | undefined)[];
  #mask: number;
  /** 32 − log2(slots): the hash's top bits are the home slot. */
  #shift: number;
  readonly #multiplier: number;
  #size = 0;

  /** `multiplier`: odd; tests give one to place ids where they want them. */
  constructor(capacity = 64, multiplier = MULTIPLIER) {
    if ((multiplier & 1) === 0) throw new RangeError(`the multiplier must be odd, got ${multiplier}`);
    this.#multiplier = multiplier | 0;
    let slots = 8;
    while (slots < capacity) slots *= 2;
    this.#ids = new Int32Array(slots);
    this.#values = new Array<T | undefined>(slots).fill(undefined);
    this.#mask = slots - 1;
    this.#shift = 32 - Math.log2(slots);
  }

  get size(): number {
    return this.#size;
  }

  has(id: number): boolean {
    return this.#slotOf(id) >= 0;
  }

  get(id: number): T | undefined {
    const i = this.#slotOf(id);
    return i < 0 ? undefined : this.#values[i];
  }

  set(id: number, value: T): this {
    if (!Number.isInteger(id) || id <= 0 || id > 0x7fffffff) throw new RangeError(`not an HTTP/2 stream id: ${id}`);
    const ids = this.#ids;
    const mask = this.#mask;
    let i = this.#home(id);
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
      const home = this.#home(ids[j]!);
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
    for (let i = this.#home(id); ; i = (i + 1) & mask) {
      const at = ids[i];
      if (at === id) return id === EMPTY ? -1 : i;
      if (at === EMPTY) return -1;
    }
  }

  #home(id: number): number {
    return homeSlot(id, this.#multiplier, this.#shift);
  }

  #grow(): void {
    const ids = this.#ids;
    const values = this.#values;
    const slots = ids.length * 2;
    this.#ids = new Int32Array(slots);
    this.#values = new Array<T | undefined>(slots).fill(undefined);
    this.#mask = slots - 1;
    this.#shift = 32 - Math.log2(slots);
    this.#size = 0;
    for (let i = 0; i < ids.length; i++) if (ids[i] !== EMPTY) this.set(ids[i]!, values[i]!);
    // The old arrays are garbage now, but may sit in the old generation: they must not hold the streams.
    values.fill(undefined);
  }
}

/** The slot an id starts its probe at: the top bits of id × multiplier (mod 2^32). */
export function homeSlot(id: number, multiplier: number, shift: number): number {
  return Math.imul(id, multiplier) >>> shift;
}

interface SessionState {
  streams: unknown;
}

/** Node's internal state of a session (`session[kState]`, found by its symbol's name): where it keeps its streams. */
function sessionState(session: Http2Session): Partial<SessionState> | undefined {
  const fields = session as unknown as Record<symbol, Partial<SessionState> | undefined>;
  for (const key of Object.getOwnPropertySymbols(session)) {
    if (key.description !== 'state') continue;
    const state = fields[key];
    if (state !== undefined && 'streams' in state) return state;
  }
  return undefined;
}

/**
 * Keeps `session`'s streams in a StreamTable from now on. Call it on the
 * server's 'session' event, before any stream arrives. Returns false (and
 * changes nothing) when the session does not keep its streams in an empty Map
 * where Node 20 does.
 */
export function useStreamTable(session: Http2Session): boolean {
  const state = sessionState(session);
  // Node's own Map subclass (SafeMap) is not `instanceof Map`.
  if (state === undefined || !isMap(state.streams) || state.streams.size !== 0) return false;
  state.streams = new StreamTable();
  return true;
}

/** One open stream, as a shutdown that timed out reports it. */
export interface OpenStreamInfo {
  readonly id: number | undefined;
  /** The client ended its request (END_STREAM received). */
  readonly requestEnded: boolean;
  /** The server sent its response headers. */
  readonly answered: boolean;
  /** The server ended its side (the status sent). */
  readonly responseEnded: boolean;
}

/** One session a shutdown still waited for: its peer and its open streams (the first `limit`). */
export interface OpenSessionInfo {
  readonly peer: string;
  readonly streams: number;
  readonly first: OpenStreamInfo[];
}

/**
 * What a gRPC session still holds open: read from Node's own state (the
 * StreamTable above or Node's Map, both with forEach), for the log line of a
 * shutdown that reached --exit-timeout-secs. No streams when Node keeps them
 * elsewhere.
 */
export function describeSession(session: Http2Session, limit = 8): OpenSessionInfo {
  const socket = session.socket as { remoteAddress?: string; remotePort?: number } | undefined;
  const peer = `${socket?.remoteAddress ?? '?'}:${socket?.remotePort ?? '?'}`;
  const streams = sessionState(session)?.streams;
  const first: OpenStreamInfo[] = [];
  let count = 0;
  if (typeof streams === 'object' && streams !== null && typeof (streams as { forEach?: unknown }).forEach === 'function') {
    (streams as { forEach(cb: (s: ServerHttp2Stream) => void): void }).forEach((s) => {
      count++;
      if (first.length >= limit) return;
      const state = s.state as { localClose?: number; remoteClose?: number } | undefined;
      first.push({ id: s.id, requestEnded: state?.remoteClose === 1, answered: s.headersSent, responseEnded: state?.localClose === 1 });
    });
  }
  return { peer, streams: count, first };
}
