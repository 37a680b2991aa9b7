// The batching decision, pure: no timers, no I/O, no mutation. Given what is
// queued, the time and the free slots, it says "send these", "wait until",
// or "nothing to do", and which entries expired on the way. The shell
// (dynamic-batcher.ts) applies the answer. Rules follow Triton's dynamic
// batcher (core/src/dynamic_batch_scheduler.cc, scheduler_utils.cc).
import { type BatchingPolicy, levelPolicy, type TimeoutAction } from './policy.js';

/** What decide needs to know about one queued request. */
export interface QueueEntry {
  /** Rows along the batch dimension (a request with its own batch dim b counts b). */
  readonly rows: number;
  /** Equal keys ⇔ same input names, datatypes and non-batch dims: may share a batch. */
  readonly shapeKey: string;
  readonly enqueuedNs: bigint;
  /** When its queue timeout passes; undefined = none. Ignored once the entry is delayed. */
  readonly timeoutNs: bigint | undefined;
  /** The call's deadline on the same clock; undefined = none. */
  readonly deadlineNs: bigint | undefined;
}

/** One priority level, as decide sees it. */
export interface LevelState<E> {
  /** 1 = highest. Levels are given in ascending order. */
  readonly level: number;
  /** In arrival order. */
  readonly queued: Iterable<E>;
  /** Entries whose timeout passed under DELAY: behind every queued one of the level, in the order they expired. */
  readonly delayed: Iterable<E>;
}

/**
 * reject: queue timeout under REJECT; delay: queue timeout under DELAY;
 * deadline: the call's deadline passed; shed: it has not passed, but even
 * the cheapest execution (`shedLeadNs`) started now would end after it.
 */
export type ExpiryReason = 'reject' | 'delay' | 'deadline' | 'shed';

export interface Expired<E> {
  readonly entry: E;
  readonly level: number;
  readonly reason: ExpiryReason;
}

export type Decision<E> = (
  | { readonly kind: 'send'; readonly take: readonly E[] }
  | { readonly kind: 'wait'; readonly untilNs: bigint }
  | { readonly kind: 'idle' }
) & {
  /** Entries to take out of the queue (reject, deadline) or move to their level's delayed list (delay), in order. */
  readonly expired: readonly Expired<E>[];
};

/** Whether a still-queued (not yet delayed) entry has expired at `now`. */
export function expiryOf(entry: QueueEntry, now: bigint, action: TimeoutAction, shedLeadNs = 0n): ExpiryReason | undefined {
  const reason = deadlineExpiry(entry, now, shedLeadNs);
  if (reason !== undefined) return reason;
  if (entry.timeoutNs !== undefined && now >= entry.timeoutNs) return action === 'DELAY' ? 'delay' : 'reject';
  return undefined;
}

/** 'deadline' when the entry's deadline passed, 'shed' when an execution of `leadNs` started now would end after it. */
export function deadlineExpiry(entry: QueueEntry, now: bigint, leadNs: bigint): 'deadline' | 'shed' | undefined {
  if (entry.deadlineNs === undefined) return undefined;
  if (now >= entry.deadlineNs) return 'deadline';
  return leadNs > 0n && now + leadNs > entry.deadlineNs ? 'shed' : undefined;
}

/** The batch being formed while decide walks the queues. */
class Pending<E extends QueueEntry> {
  readonly take: E[] = [];
  rows = 0;
  shapeKey = '';
  oldestNs = 0n;
  /** Earliest instant a member may expire: the batch must be re-decided then. */
  closestNs: bigint | undefined;
  /** Members in the batch at the best preferred size found (0 = none). */
  mark = 0;
  /** The walk stopped because the next request cannot join: send now. */
  closed = false;

  constructor(
    readonly policy: BatchingPolicy,
    readonly maxPreferred: number,
  ) {}

  /** Adds `e` if it can join; false (and the batch is closed) when it cannot. */
  offer(e: E, canTimeOut: boolean): boolean {
    const { take, policy } = this;
    if (take.length === 0) {
      this.shapeKey = e.shapeKey;
      this.oldestNs = e.enqueuedNs;
    } else {
      // Past the largest preferred size: remember the batch as it was (Triton marks it too).
      if (this.rows + e.rows > this.maxPreferred && this.mark === 0) this.mark = take.length;
      if (this.rows + e.rows > policy.maxBatchSize || e.shapeKey !== this.shapeKey) {
        this.closed = true;
        return false;
      }
      if (e.enqueuedNs < this.oldestNs) this.oldestNs = e.enqueuedNs;
    }
    take.push(e);
    this.rows += e.rows;
    if (canTimeOut) this.#soonest(e.timeoutNs);
    this.#soonest(e.deadlineNs);
    if (policy.preferredBatchSizes.includes(this.rows)) this.mark = take.length;
    return true;
  }

  #soonest(at: bigint | undefined): void {
    if (at !== undefined && (this.closestNs === undefined || at < this.closestNs)) this.closestNs = at;
  }
}

/**
 * Forms at most one batch. Requests are taken in priority order, then in
 * arrival order (each level's delayed requests after its queued ones),
 * while they share the first one's shape key and the rows stay within
 * max_batch_size; the first request that cannot join ends the batch
 * (nobody overtakes it). Expired requests met on the way are reported and
 * skipped.
 *
 * The batch is sent at once when it reached a preferred size (the largest
 * that can be formed; the rest waits), when it cannot grow (it reached the
 * largest preferred size, or the next request does not fit), when
 * max_queue_delay is 0, or when its oldest request has waited
 * max_queue_delay (then all of it goes, preferred or not). Otherwise the
 * answer is to wait until that delay ends, or until a member's timeout or
 * deadline if sooner. With no free slot nothing is examined: the shell
 * decides again when one frees up. `shedLeadNs` (0 = off) is the least an
 * execution takes, by the cost model: a request whose deadline is nearer
 * than that is reported as 'shed' and never joins a batch.
 */
export function decide<E extends QueueEntry>(
  levels: readonly LevelState<E>[],
  now: bigint,
  freeSlots: number,
  policy: BatchingPolicy,
  shedLeadNs = 0n,
): Decision<E> {
  const expired: Expired<E>[] = [];
  if (freeSlots <= 0) return { kind: 'idle', expired };
  const sizes = policy.preferredBatchSizes;
  const batch = new Pending<E>(policy, sizes[sizes.length - 1] ?? policy.maxBatchSize);

  walk: for (const { level, queued, delayed } of levels) {
    const action = levelPolicy(policy, level).timeoutAction;
    let delayedNow: E[] | undefined;
    for (const e of queued) {
      const reason = expiryOf(e, now, action, shedLeadNs);
      if (reason === undefined) {
        if (!batch.offer(e, true)) break walk;
        continue;
      }
      expired.push({ entry: e, level, reason });
      if (reason === 'delay') (delayedNow ??= []).push(e);
    }
    for (const e of delayed) {
      const reason = deadlineExpiry(e, now, shedLeadNs);
      if (reason !== undefined) {
        expired.push({ entry: e, level, reason });
      } else if (!batch.offer(e, false)) {
        break walk;
      }
    }
    // Just delayed: they join the end of the level's delayed list.
    for (const e of delayedNow ?? []) if (!batch.offer(e, false)) break walk;
  }

  const { take } = batch;
  if (take.length === 0) return { kind: 'idle', expired };
  const delay = policy.maxQueueDelayNs;
  const delayPassed = delay !== 0n && now - batch.oldestNs >= delay;
  if (batch.mark > 0 && !delayPassed) {
    return { kind: 'send', take: batch.mark === take.length ? take : take.slice(0, batch.mark), expired };
  }
  if (batch.closed || batch.rows >= batch.maxPreferred || delay === 0n || delayPassed) {
    return { kind: 'send', take, expired };
  }
  const delayEnds = batch.oldestNs + delay;
  const closest = batch.closestNs;
  return { kind: 'wait', untilNs: closest !== undefined && closest < delayEnds ? closest : delayEnds, expired };
}
