import { describe, expect, it } from 'vitest';
import { batchingPolicy as policy } from '../helpers/batching-policy.js';
import { decide, type LevelState, type QueueEntry } from '../../gateway/batching/decide.js';
import {
  batchingPolicyFromConfig,
  levelOf,
  levelPolicy,
  queueTimeoutNs,
} from '../../gateway/batching/policy.js';
import {
  type ModelQueuePolicy,
  ModelQueuePolicy_TimeoutAction,
} from '../../proto/gen/model_config.js';

// The pure batching decision: every case is a queue state and a time, no timers.

const MS = 1_000_000n;

interface E extends QueueEntry {
  readonly id: string;
}

function entry(id: string, at: bigint, more: Partial<Omit<E, 'id'>> = {}): E {
  return { id, rows: 1, shapeKey: 'x', enqueuedNs: at, timeoutNs: undefined, deadlineNs: undefined, ...more };
}

function queuePolicy(more: Partial<ModelQueuePolicy> = {}): ModelQueuePolicy {
  return {
    timeoutAction: ModelQueuePolicy_TimeoutAction.REJECT,
    defaultTimeoutMicroseconds: 0n,
    allowTimeoutOverride: false,
    maxQueueSize: 0,
    ...more,
  };
}


const one = (queued: E[], delayed: E[] = []): LevelState<E>[] => [{ level: 1, queued, delayed }];
const ids = (es: readonly E[]): string[] => es.map((e) => e.id);

function sent(d: ReturnType<typeof decide<E>>): string[] {
  if (d.kind !== 'send') throw new Error(`expected send, got ${d.kind}`);
  return ids(d.take);
}

const abc = (at = 0n): E[] => [entry('a', at), entry('b', at + 1n), entry('c', at + 2n)];

describe('decide', () => {
  it('is idle with nothing queued, and examines nothing without a free slot', () => {
    expect(decide(one([]), 0n, 1, policy(8))).toEqual({ kind: 'idle', expired: [] });
    const expired = [entry('a', 0n, { timeoutNs: 1n })];
    expect(decide(one(expired), 10n, 0, policy(8))).toEqual({ kind: 'idle', expired: [] });
  });

  it('with max_queue_delay 0 sends whatever is queued', () => {
    expect(sent(decide(one(abc()), 5n, 1, policy(8)))).toEqual(['a', 'b', 'c']);
  });

  it('waits until the oldest request has waited max_queue_delay, then sends', () => {
    const p = policy(8, { maxQueueDelayMicroseconds: 1000n });
    const q = one(abc(10n * MS));
    expect(decide(q, 10n * MS + 400_000n, 1, p)).toEqual({ kind: 'wait', untilNs: 11n * MS, expired: [] });
    expect(sent(decide(q, 11n * MS, 1, p))).toEqual(['a', 'b', 'c']);
  });

  it('sends at once on reaching max_batch_size, leaving the rest queued', () => {
    const p = policy(2, { maxQueueDelayMicroseconds: 1_000_000n });
    expect(sent(decide(one(abc()), 0n, 1, p))).toEqual(['a', 'b']);
  });

  it('sends the largest preferred batch size that can be formed at once', () => {
    const p = policy(16, { preferredBatchSize: [8, 4], maxQueueDelayMicroseconds: 1_000_000n });
    const q = (n: number): LevelState<E>[] => one(Array.from({ length: n }, (_, i) => entry(`r${i}`, BigInt(i))));
    expect(sent(decide(q(5), 10n, 1, p))).toHaveLength(4);
    expect(sent(decide(q(10), 10n, 1, p))).toHaveLength(8);
    expect(decide(q(3), 10n, 1, p).kind).toBe('wait');
  });

  it('sends everything pending, not just the preferred size, once the delay has passed', () => {
    const p = policy(8, { preferredBatchSize: [2], maxQueueDelayMicroseconds: 1000n });
    expect(sent(decide(one(abc()), 0n, 1, p))).toEqual(['a', 'b']);
    expect(sent(decide(one(abc()), 2n * MS, 1, p))).toEqual(['a', 'b', 'c']);
  });

  it('with max_queue_delay 0 still cuts at a preferred size (Triton)', () => {
    const p = policy(8, { preferredBatchSize: [2, 4] });
    expect(sent(decide(one(abc()), 0n, 1, p))).toEqual(['a', 'b']);
  });

  it('counts a request with its own batch dimension b as b rows', () => {
    const p = policy(8, { maxQueueDelayMicroseconds: 1_000_000n });
    // 5 + 4 > 8: the second cannot join, so the first goes now.
    expect(sent(decide(one([entry('a', 0n, { rows: 5 }), entry('b', 1n, { rows: 4 })]), 0n, 1, p))).toEqual(['a']);
    const q = one([entry('a', 0n, { rows: 3 }), entry('b', 1n, { rows: 5 }), entry('c', 2n)]);
    expect(sent(decide(q, 0n, 1, p))).toEqual(['a', 'b']);
    const preferred = policy(8, { preferredBatchSize: [4], maxQueueDelayMicroseconds: 1_000_000n });
    expect(sent(decide(one([entry('a', 0n, { rows: 2 }), entry('b', 1n, { rows: 2 })]), 0n, 1, preferred))).toEqual(['a', 'b']);
  });

  it('puts different shapes in different batches; nobody overtakes the first misfit', () => {
    const q = one([entry('a', 0n), entry('b', 1n, { shapeKey: 'y' }), entry('c', 2n)]);
    expect(sent(decide(q, 0n, 1, policy(8)))).toEqual(['a']);
    // Even while waiting for more: the batch cannot grow past 'b', so it goes now.
    expect(sent(decide(q, 0n, 1, policy(8, { maxQueueDelayMicroseconds: 1_000_000n })))).toEqual(['a']);
    // Next round, after 'a' left: 'b' alone, then 'c'.
    expect(sent(decide(one([entry('b', 1n, { shapeKey: 'y' }), entry('c', 2n)]), 0n, 1, policy(8)))).toEqual(['b']);
  });

  it('takes higher priority levels first, then arrival order; lower levels fill what is left', () => {
    const levels: LevelState<E>[] = [
      { level: 1, queued: [entry('h1', 50n), entry('h2', 60n)], delayed: [] },
      { level: 2, queued: [entry('l1', 0n), entry('l2', 10n)], delayed: [] },
    ];
    expect(sent(decide(levels, 100n, 1, policy(3)))).toEqual(['h1', 'h2', 'l1']);
    // The delay counts from the oldest member, whatever its level.
    const p = policy(8, { maxQueueDelayMicroseconds: 1000n });
    expect(decide(levels, 100n, 1, p)).toEqual({ kind: 'wait', untilNs: MS, expired: [] });
  });

  it('starves lower levels while higher ones fill every batch', () => {
    const levels: LevelState<E>[] = [
      { level: 1, queued: [entry('h1', 5n), entry('h2', 6n)], delayed: [] },
      { level: 3, queued: [entry('old', 0n)], delayed: [] },
    ];
    expect(sent(decide(levels, 10n * MS, 1, policy(2, { maxQueueDelayMicroseconds: 1000n })))).toEqual(['h1', 'h2']);
  });

  it('rejects requests whose queue timeout passed (REJECT) and batches the rest', () => {
    const a = entry('a', 0n, { timeoutNs: 5n });
    const d = decide(one([a, entry('b', 1n, { timeoutNs: 50n }), entry('c', 2n)]), 10n, 1, policy(8));
    expect(sent(d)).toEqual(['b', 'c']);
    expect(d.expired).toEqual([{ entry: a, level: 1, reason: 'reject' }]);
  });

  it('moves timed-out requests behind the others of their level (DELAY), after those delayed before', () => {
    const p = policy(8, { defaultQueuePolicy: queuePolicy({ timeoutAction: ModelQueuePolicy_TimeoutAction.DELAY }) });
    const a = entry('a', 0n, { timeoutNs: 5n });
    const levels: LevelState<E>[] = [
      { level: 1, queued: [a, entry('b', 1n)], delayed: [entry('d', 0n)] },
    ];
    const d = decide(levels, 10n, 1, p);
    expect(sent(d)).toEqual(['b', 'd', 'a']);
    expect(d.expired).toEqual([{ entry: a, level: 1, reason: 'delay' }]);
    // A full batch leaves the delayed ones for later.
    const full = policy(1, { defaultQueuePolicy: queuePolicy({ timeoutAction: ModelQueuePolicy_TimeoutAction.DELAY }) });
    expect(sent(decide(levels, 10n, 1, full))).toEqual(['b']);
  });

  it('applies each level its own queue policy; delayed requests still go before lower levels', () => {
    const p = policy(8, {
      priorityLevels: 2n,
      defaultPriorityLevel: 2n,
      priorityQueuePolicy: new Map([[1n, queuePolicy({ timeoutAction: ModelQueuePolicy_TimeoutAction.DELAY })]]),
    });
    const levels: LevelState<E>[] = [
      { level: 1, queued: [entry('h', 0n, { timeoutNs: 1n }), entry('h2', 1n)], delayed: [] },
      { level: 2, queued: [entry('l', 0n, { timeoutNs: 1n }), entry('l2', 1n)], delayed: [] },
    ];
    const d = decide(levels, 10n, 1, p);
    expect(sent(d)).toEqual(['h2', 'h', 'l2']);
    expect(d.expired.map((x) => [x.entry.id, x.reason])).toEqual([
      ['h', 'delay'],
      ['l', 'reject'],
    ]);
  });

  it('drops requests past their deadline, queued or delayed', () => {
    const levels = one([entry('a', 0n, { deadlineNs: 5n }), entry('b', 1n)], [entry('d', 0n, { deadlineNs: 5n })]);
    const d = decide(levels, 5n, 1, policy(8));
    expect(sent(d)).toEqual(['b']);
    expect(d.expired.map((x) => [x.entry.id, x.reason])).toEqual([
      ['a', 'deadline'],
      ['d', 'deadline'],
    ]);
  });

  it('wakes for a member timeout or deadline that comes before the delay ends', () => {
    const p = policy(8, { maxQueueDelayMicroseconds: 1000n });
    const timed = one([entry('a', 0n), entry('b', 1n, { timeoutNs: 300n })]);
    expect(decide(timed, 10n, 1, p)).toMatchObject({ kind: 'wait', untilNs: 300n });
    expect(decide(one([entry('a', 0n, { deadlineNs: 200n })]), 10n, 1, p)).toMatchObject({ kind: 'wait', untilNs: 200n });
    // A delayed member no longer times out.
    expect(decide(one([], [entry('a', 0n, { timeoutNs: 1n })]), 10n, 1, p)).toMatchObject({ kind: 'wait', untilNs: MS });
  });

  it('is idle when every queued request expired', () => {
    const d = decide(one([entry('a', 0n, { timeoutNs: 1n })]), 10n, 1, policy(8));
    expect(d.kind).toBe('idle');
    expect(d.expired).toHaveLength(1);
  });
});

describe('batchingPolicyFromConfig', () => {
  it('sorts preferred sizes, defaults them to max_batch_size, and converts µs to ns', () => {
    const p = policy(16, { preferredBatchSize: [8, 2, 8], maxQueueDelayMicroseconds: 250n, preserveOrdering: true });
    expect(p.preferredBatchSizes).toEqual([2, 8]);
    expect(p.maxQueueDelayNs).toBe(250_000n);
    expect(p.preserveOrdering).toBe(true);
    expect(policy(16).preferredBatchSizes).toEqual([16]);
  });

  it('has one level without priorities; numbers levels 1 (highest) … priority_levels otherwise, default outside', () => {
    const flat = policy(8);
    expect([flat.levelCount, flat.defaultLevel, levelOf(flat, undefined), levelOf(flat, 0), levelOf(flat, 1)]).toEqual([
      1,
      1,
      1,
      1,
      1,
    ]);
    const p = policy(8, { priorityLevels: 3n, defaultPriorityLevel: 2n });
    // Outside 1…priority_levels means the default level, as in Triton.
    expect([levelOf(p, undefined), levelOf(p, 1), levelOf(p, 3), levelOf(p, 4)]).toEqual([2, 1, 3, 2]);
    expect(policy(8, { priorityLevels: 3n }).defaultLevel).toBe(3);
  });

  it('overrides the default queue policy per level and bounds every queue', () => {
    const p = batchingPolicyFromConfig(
      8,
      {
        preferredBatchSize: [],
        maxQueueDelayMicroseconds: 0n,
        preserveOrdering: false,
        priorityLevels: 2n,
        defaultPriorityLevel: 2n,
        defaultQueuePolicy: queuePolicy({ defaultTimeoutMicroseconds: 100n }),
        priorityQueuePolicy: new Map([[1n, queuePolicy({ timeoutAction: ModelQueuePolicy_TimeoutAction.DELAY, maxQueueSize: 7 })]]),
      },
      50,
    );
    expect(levelPolicy(p, 1)).toEqual({ timeoutAction: 'DELAY', defaultTimeoutNs: 0n, allowTimeoutOverride: false, maxQueueSize: 7 });
    expect(levelPolicy(p, 2)).toEqual({ timeoutAction: 'REJECT', defaultTimeoutNs: 100_000n, allowTimeoutOverride: false, maxQueueSize: 50 });
  });

  it('lets a request timeout only shorten the default, and only when overrides are allowed', () => {
    const base = { timeoutAction: 'REJECT', allowTimeoutOverride: true, maxQueueSize: 1 } as const;
    expect(queueTimeoutNs({ ...base, defaultTimeoutNs: 1_000_000n }, 500)).toBe(500_000n);
    expect(queueTimeoutNs({ ...base, defaultTimeoutNs: 1_000_000n }, 5000)).toBe(1_000_000n);
    expect(queueTimeoutNs({ ...base, defaultTimeoutNs: 0n }, 500)).toBe(500_000n);
    expect(queueTimeoutNs({ ...base, defaultTimeoutNs: 0n }, undefined)).toBeUndefined();
    expect(queueTimeoutNs({ ...base, allowTimeoutOverride: false, defaultTimeoutNs: 1_000_000n }, 500)).toBe(1_000_000n);
  });
});
