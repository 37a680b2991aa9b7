import { type LevelState, type QueueEntry } from './decide.js';
import { EntryList } from './entry-list.js';
import { type FairEntry, FairQueue } from './fair-queue.js';
import { TimeoutHeap } from './timeout-heap.js';

/** One priority level's lists, in the shape `decide` reads. */
export interface LevelQueues<E extends FairEntry<E>> extends LevelState<E> {
  /** Waiting requests, read in weighted round-robin order between tenants. */
  readonly queued: FairQueue<E>;
  readonly delayed: EntryList<E>;
}

/** An entry knows its level and its tenant's lane, so it leaves the queue in O(1). */
export interface Queued<E extends Queued<E>> extends QueueEntry, FairEntry<E> {
  readonly level: LevelQueues<E>;
}

/**
 * The batcher's queues: per priority level, the waiting requests (one FIFO
 * per tenant, shared by weighted deficit round robin, fair-queue.ts) and a
 * FIFO of delayed ones (queue timeout passed under DELAY), plus a heap of
 * queue timeouts. Operations are O(1) or O(log n) in the queue's length;
 * nothing scans a queue. Levels are created on first use, so sparse
 * priorities cost nothing.
 */
export class BatchQueue<E extends Queued<E>> {
  readonly #levels: LevelQueues<E>[] = [];
  readonly #timeouts = new TimeoutHeap<E>(
    (e) => e.timeoutNs ?? 0n,
    (e) => e.level.queued.has(e),
  );
  /** Entries with a timeout still in a `queued` list: what the heap must keep. */
  #timed = 0;
  #size = 0;

  /** Levels that have held requests, ascending (1 = highest). */
  get levels(): readonly LevelQueues<E>[] {
    return this.#levels;
  }

  get size(): number {
    return this.#size;
  }

  level(n: number): LevelQueues<E> {
    const levels = this.#levels;
    let i = levels.length;
    while (i > 0 && (levels[i - 1] as LevelQueues<E>).level > n) i--;
    const found = levels[i - 1];
    if (found?.level === n) return found;
    const level: LevelQueues<E> = { level: n, queued: new FairQueue(), delayed: new EntryList() };
    levels.splice(i, 0, level);
    return level;
  }

  /** Requests a level holds, queued and delayed (what max_queue_size bounds). */
  held(level: LevelQueues<E>): number {
    return level.queued.size + level.delayed.size;
  }

  push(e: E): void {
    e.level.queued.push(e);
    this.#size++;
    if (e.timeoutNs !== undefined) {
      this.#timed++;
      this.#timeouts.push(e);
    }
  }

  /** Takes `e` out of its level; false if it was not queued. `served`: it leaves for a batch. */
  remove(e: E, served = false): boolean {
    const { queued, delayed } = e.level;
    if (served) queued.served(e);
    if (queued.remove(e)) {
      if (e.timeoutNs !== undefined) this.#timed--;
    } else if (delayed.remove(e)) {
      e.lane.delayed--;
    } else {
      return false;
    }
    this.#size--;
    return true;
  }

  /** Moves a waiting entry behind its level's others, where it no longer times out. */
  delay(e: E): boolean {
    if (!e.level.queued.remove(e)) return false;
    if (e.timeoutNs !== undefined) this.#timed--;
    e.level.delayed.push(e);
    e.lane.delayed++;
    return true;
  }

  /** A waiting entry whose queue timeout is ≤ now, if any; it stays queued. */
  popDue(now: bigint): E | undefined {
    return this.#timeouts.popDue(now);
  }

  /** The earliest queue timeout of a waiting entry. */
  nextTimeoutNs(): bigint | undefined {
    this.#timeouts.compact(this.#timed);
    return this.#timeouts.peek()?.timeoutNs;
  }

  /** Empties every level, returning what was in it in priority then queue order. */
  clear(): E[] {
    const all: E[] = [];
    for (const { queued, delayed } of this.#levels) {
      const waiting = [...queued];
      for (const e of waiting) queued.remove(e);
      all.push(...waiting);
      for (let e = delayed.shift(); e !== undefined; e = delayed.shift()) {
        e.lane.delayed--;
        all.push(e);
      }
    }
    this.#timeouts.clear();
    this.#timed = 0;
    this.#size = 0;
    return all;
  }
}
