import { type JobTenant } from '../scheduling/execution.js';
import { EntryList, type ListLinks } from './entry-list.js';

// One priority level's waiting requests, shared between tenants by weighted
// deficit round robin (Shreedhar and Varghese, 1995) with a quantum of
// `weight` rows per round. Each request's round is worked out when it
// arrives, from its tenant's deficit, so the order in which the batcher
// should take requests is a merge of the tenants' FIFOs by (round, the order
// tenants joined the round robin): `decide` can read that order without
// changing any state, and whatever part of it the batcher takes, the rounds
// of the rest stay right. A tenant whose queue empties leaves the round robin
// and loses its deficit, as in DRR; it joins again at the end of the current
// round. With one tenant this is a plain FIFO.

/** The tenant of jobs that name none: a server without tenants has only this one. */
export const SOLE_TENANT: JobTenant = { name: 'default', weight: 1, queueShare: 1 };

/** Requests one tenant may hold of a queue: its share of the bound, at least 1. */
export function tenantQueueBound(bound: number, share: number): number {
  return Math.max(1, Math.floor(bound * Math.min(1, share)));
}

/** What the fair queue needs of an entry. */
export interface FairEntry<E extends ListLinks<E>> extends ListLinks<E> {
  /** Rows along the batch dimension: what a request costs of its tenant's deficit. */
  readonly rows: number;
  readonly lane: Lane<E>;
  /** The DRR round it is served in; set by `push`. */
  round: number;
}

/** One tenant's FIFO at one level, with its round-robin state. */
export class Lane<E extends ListLinks<E>> {
  readonly list = new EntryList<E>();
  /** Its entries moved to the level's delayed list (they still count against its bound). */
  delayed = 0;
  /** Order of joining the round robin: ties within a round go to the earlier. */
  joinSeq = 0;
  /** Round of its last entry, and the deficit left in that round. */
  round = 0;
  credit = 0;
  /** Rows of the entries in `list`. */
  rows = 0;

  constructor(
    readonly tenant: string,
    /** Rows per round: the tenant's weight (it changes when the tenants file is reloaded). */
    public quantum: number,
  ) {}

  /** Entries this lane holds at its level, waiting or delayed. */
  get held(): number {
    return this.list.size + this.delayed;
  }
}

export class FairQueue<E extends FairEntry<E>> implements Iterable<E> {
  readonly #lanes = new Map<string, Lane<E>>();
  /** Lanes with waiting entries. */
  readonly #active = new Set<Lane<E>>();
  /** Round of the last entry taken into a batch. */
  #servedRound = 0;
  #seq = 0;
  #size = 0;
  #rows = 0;

  get size(): number {
    return this.#size;
  }

  /** The tenant's lane at this level, created on first use. */
  lane(tenant: string, weight: number): Lane<E> {
    let lane = this.#lanes.get(tenant);
    if (lane?.quantum === weight) return lane;
    if (!(weight > 0) || !Number.isFinite(weight)) throw new RangeError(`Expected a tenant weight > 0, got ${weight}`);
    if (lane) {
      // A reloaded tenants file changed the weight: rounds from now on use it.
      lane.quantum = weight;
      return lane;
    }
    lane = new Lane<E>(tenant, weight);
    this.#lanes.set(tenant, lane);
    return lane;
  }

  push(e: E): void {
    const lane = e.lane;
    if (lane.list.size === 0) {
      lane.joinSeq = ++this.#seq;
      lane.round = this.#servedRound;
      lane.credit = lane.quantum;
      this.#active.add(lane);
    }
    if (e.rows > lane.credit) {
      // Not enough deficit left this round: it goes in the round where enough has built up.
      const rounds = Math.ceil((e.rows - lane.credit) / lane.quantum);
      lane.round += rounds;
      lane.credit += rounds * lane.quantum;
    }
    e.round = lane.round;
    lane.credit -= e.rows;
    lane.list.push(e);
    lane.rows += e.rows;
    this.#rows += e.rows;
    this.#size++;
  }

  /** Rows of the waiting entries. */
  get rows(): number {
    return this.#rows;
  }

  /**
   * About how many waiting rows are served before `e` or with it (its own
   * included), by DRR: each lane gives at most its quantum of rows a round,
   * through `e`'s round. O(lanes), not O(entries).
   */
  rowsThrough(e: E): number {
    const rounds = e.round - this.#servedRound + 1;
    let n = 0;
    for (const lane of this.#active) n += Math.min(lane.rows, rounds * lane.quantum);
    return Math.max(n, e.rows);
  }

  /** Takes `e` out; false if it was not waiting here. */
  remove(e: E): boolean {
    const lane = e.lane;
    if (!lane.list.remove(e)) return false;
    lane.rows -= e.rows;
    this.#rows -= e.rows;
    this.#size--;
    if (lane.list.size === 0) this.#active.delete(lane);
    return true;
  }

  /** Whether `e` is waiting here. */
  has(e: E): boolean {
    return e.list === e.lane.list;
  }

  /** `e` was taken into a batch: tenants joining later start from its round. */
  served(e: E): void {
    if (this.has(e) && e.round > this.#servedRound) this.#servedRound = e.round;
  }

  /** Waiting entries in the order they should be served; reading it changes nothing. */
  [Symbol.iterator](): Iterator<E> {
    const active = this.#active;
    // One tenant (always, without tenants): its FIFO as it is, at no extra cost.
    if (active.size === 1) for (const lane of active) return lane.list[Symbol.iterator]();
    return this.#merged();
  }

  /** The lanes' FIFOs merged by (round, joinSeq) of their heads. */
  *#merged(): Generator<E> {
    const heads: { it: Iterator<E>; e: E | undefined; seq: number }[] = [];
    for (const lane of this.#active) {
      const it = lane.list[Symbol.iterator]();
      const first = it.next();
      heads.push({ it, e: first.done ? undefined : first.value, seq: lane.joinSeq });
    }
    for (;;) {
      let best: (typeof heads)[number] | undefined;
      for (const h of heads) {
        if (h.e === undefined) continue;
        if (!best || h.e.round < (best.e as E).round || (h.e.round === (best.e as E).round && h.seq < best.seq)) best = h;
      }
      if (!best) return;
      const e = best.e as E;
      const next = best.it.next();
      best.e = next.done ? undefined : next.value;
      yield e;
    }
  }
}
