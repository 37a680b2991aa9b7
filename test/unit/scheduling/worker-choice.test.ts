import { describe, expect, it } from 'vitest';
import { Dispatcher } from '../../../gateway/scheduling/dispatcher.js';
import { agedSpeedNs, InstanceSlots, noteReport, noteTiming, type Placement, REPORT_TTL_MS, SPEED_HALF_LIFE_MS, TIMING_TTL_MS } from '../../../gateway/scheduling/instance-slots.js';
import { type WorkerConnection } from '../../../gateway/scheduling/worker-connection.js';
import { type ExecuteAnswer } from '../../../core/execute-frame.js';

// Which worker a gateway sends to, when it shares its workers with other
// gateways (registered workers, or several gateway processes): its own
// executions in flight plus what each worker last reported of the others'.

/**
 * A worker that answers at once, reporting `outstanding` executions of the
 * model (every gateway's) and, when given, their `backlogNs`; each execution
 * computes `computeNs`.
 */
function worker(id: string, outstanding: () => number | undefined, computeNs = 0n, backlogNs?: () => number): WorkerConnection {
  const fake = {
    endpoint: { id, address: `unix:/${id}`, deviceKind: 'cpu' as const, deviceId: 0 },
    execute: (_request: unknown, _deadline: number, done?: (lost: boolean) => void): Promise<ExecuteAnswer> => {
      done?.(false);
      const o = outstanding();
      const report = o === undefined ? {} : { outstanding: o, waitNs: 0, ...(backlogNs ? { backlogNs: backlogNs() } : {}) };
      return Promise.resolve({ outputs: [], computeInputNs: 0n, computeInferNs: computeNs, computeOutputNs: 0n, ...report });
    },
  };
  return fake as unknown as WorkerConnection;
}

const MS = 1e6;

/** Two one-instance workers 'a' and 'b' that report nothing. */
function twoWorkers(): InstanceSlots {
  const slots = new InstanceSlots();
  slots.add(worker('a', () => undefined), 1);
  slots.add(worker('b', () => undefined), 1);
  return slots;
}

/** Two one-instance workers 'a' and 'b' whose speeds are known: one of ours took `aNs` and `bNs` there. */
function timedPair(aNs: number, bNs: number, now = performance.now()): { slots: InstanceSlots; a: Placement; b: Placement } {
  const slots = twoWorkers();
  const a = slots.acquire();
  const b = slots.acquire();
  if (a === undefined || b === undefined) throw new Error('no slot');
  noteTiming(a, aNs, now);
  noteTiming(b, bNs, now);
  slots.release(a);
  slots.release(b);
  return { slots, a, b };
}

const ids = (placements: readonly (Placement | undefined)[]): (string | undefined)[] => placements.map((p) => p?.worker.endpoint.id);

describe('worker choice with load reports', () => {
  it('without reports, picks the least busy by its own count, the first on a tie', () => {
    const slots = twoWorkers();
    expect(slots.acquire()?.worker.endpoint.id).toBe('a');
    expect(slots.acquire()?.worker.endpoint.id).toBe('b');
  });

  it('avoids a worker that reports other gateways’ work, and forgets a report past its TTL', () => {
    const slots = twoWorkers();
    const a = slots.acquire();
    if (a === undefined) throw new Error('no slot');
    slots.release(a);
    const now = performance.now();
    // 'a' answered holding 3 executions, none ours any more: 3 are another gateway's.
    noteReport(a, { outstanding: 3 }, now);
    expect(a.others).toBe(3);
    const next = slots.acquire();
    expect(next?.worker.endpoint.id).toBe('b');
    if (next) slots.release(next);
    // A stale report counts for nothing.
    noteReport(a, { outstanding: 3 }, now - REPORT_TTL_MS - 1);
    expect(slots.acquire()?.worker.endpoint.id).toBe('a');
  });

  it('counts only the others’, by count and in time: its own executions still out are not counted twice', () => {
    const slots = new InstanceSlots();
    slots.add(worker('a', () => undefined), 2);
    const p = slots.acquire();
    slots.acquire();
    if (p === undefined) throw new Error('no slot');
    // Two of ours out; the worker holds 2: nobody else's.
    noteReport(p, { outstanding: 2 });
    expect(p.others).toBe(0);
    noteTiming(p, 10 * MS);
    // Two of ours out, 10 ms each over two instances: 10 ms of the 14 the worker reports are ours.
    noteReport(p, { outstanding: 3, backlogNs: 14 * MS });
    expect(p.others).toBe(1);
    expect(p.othersNs).toBeCloseTo(4 * MS, 0);
  });

  it('learns each report from the dispatcher’s answers', async () => {
    const slots = new InstanceSlots();
    const held = 5;
    slots.add(worker('a', () => held), 2);
    slots.add(worker('b', () => 0), 2);
    const dispatcher = new Dispatcher('m/1', slots);
    const first = slots.acquire();
    if (first === undefined) throw new Error('no slot');
    expect(first.worker.endpoint.id).toBe('a');
    await dispatcher.run(first, [], [], Date.now() + 1_000);
    // 'a' said it holds 5 of others' executions: the next two go to 'b', whose own count then passes 'a''s.
    expect([slots.acquire(), slots.acquire()].map((s) => s?.worker.endpoint.id)).toEqual(['b', 'b']);
  });
});

describe('worker choice by expected finish', () => {
  it('sends to the worker that finishes soonest at its own speed: the faster takes more', () => {
    const { slots } = timedPair(10 * MS, 1 * MS);
    // 'b' finishes one of ours in 1 ms, with one ahead of it in 2; 'a' in 10: both of 'b''s slots go first.
    expect(ids([slots.acquire(), slots.acquire(), slots.acquire()])).toEqual(['b', 'b', 'a']);
  });

  it('weighs other gateways’ work by the wait the worker reports, not by its count', () => {
    const { slots, a, b } = timedPair(1 * MS, 1 * MS);
    const now = performance.now();
    // 'a' holds one large batch of another gateway's, 40 ms; 'b' three single rows, 3 ms in all.
    noteReport(a, { outstanding: 1, backlogNs: 40 * MS }, now);
    noteReport(b, { outstanding: 3, backlogNs: 3 * MS }, now);
    expect([a.othersNs, b.othersNs]).toEqual([40 * MS, 3 * MS]);
    expect(ids([slots.acquire()])).toEqual(['b']);
  });

  it('takes the time since the report off its wait, and forgets it past its TTL', () => {
    const { slots, a, b } = timedPair(1 * MS, 1 * MS);
    const now = performance.now();
    noteReport(a, { outstanding: 1, backlogNs: 40 * MS }, now - 39.5);
    noteReport(b, { outstanding: 3, backlogNs: 3 * MS }, now);
    // 'a''s 40 ms began 39.5 ms ago: about half a ms is left, against 'b''s 3.
    const first = slots.acquire();
    expect(ids([first])).toEqual(['a']);
    if (first) slots.release(first);
    noteReport(b, { outstanding: 3, backlogNs: 3 * MS }, now - REPORT_TTL_MS - 1);
    noteReport(a, { outstanding: 1, backlogNs: 40 * MS }, now);
    expect(ids([slots.acquire()])).toEqual(['b']);
  });

  it('takes a worker’s speed as the least of our last 8 timings there: contention slows runs, never speeds them', () => {
    const { a } = timedPair(1 * MS, 1 * MS);
    // Timed while other work shared its core: slower, and its speed stays what it showed alone.
    for (let i = 0; i < 7; i++) noteTiming(a, 5 * MS);
    expect(a.execNs).toBe(1 * MS);
    // Eight slow ones in a row: it is slower now.
    noteTiming(a, 5 * MS);
    expect(a.execNs).toBe(5 * MS);
    noteTiming(a, 4 * MS);
    expect(a.execNs).toBe(4 * MS);
  });

  it('counts a speed measured a while ago as nearer the fastest’s, so a worker timed slowly once is tried again', () => {
    const now = performance.now();
    const { slots, a, b } = timedPair(1 * MS, 4 * MS, now);
    expect(agedSpeedNs(b, now, 1 * MS)).toBe(4 * MS);
    expect(agedSpeedNs(b, now + SPEED_HALF_LIFE_MS, 1 * MS)).toBe(2.5 * MS);
    expect(agedSpeedNs(a, now + 5 * SPEED_HALF_LIFE_MS, 1 * MS)).toBe(1 * MS);
    // Just timed: 'a' takes two (1 ms, then 2 behind one of ours) before 'b' (4 ms).
    const held = [slots.acquire(), slots.acquire(), slots.acquire()];
    expect(ids(held)).toEqual(['a', 'a', 'b']);
    for (const p of held) if (p) slots.release(p);
    // 'b' last timed 3 half-lives ago (and 'a' now): 1 + 3/8 ms against 'a''s 2 with one of ours ahead.
    noteTiming(b, 4 * MS, now - 3 * SPEED_HALF_LIFE_MS);
    noteTiming(a, 1 * MS, now);
    const first = slots.acquire();
    expect(ids([first, slots.acquire()])).toEqual(['a', 'b']);
  });

  it('compares workers timed on batches of other sizes by their speed relative to the cost model, given the rows', () => {
    const slots = twoWorkers();
    // The version's cost model: 0.1 ms a row.
    slots.expectBy((rows) => rows * 0.1 * MS);
    const [a, b] = [slots.acquire(), slots.acquire()];
    if (a === undefined || b === undefined) throw new Error('no slot');
    const now = performance.now();
    // 'a' was last given single rows, as fast as the model expects; 'b' batches of 64, twice as fast.
    noteTiming(a, 0.1 * MS, now, slots.expectedNs(1, a));
    noteTiming(b, 3.2 * MS, now, slots.expectedNs(64, b));
    slots.release(a);
    slots.release(b);
    expect(slots.placements().map((v) => v.computeRatio)).toEqual([1, 0.5]);
    // By raw times 'a' (0.1 ms) looks 32 times faster than 'b' (3.2 ms); at 64 rows it takes 6.4 ms there, 3.2 on 'b'.
    const big = slots.acquire(undefined, 64);
    expect(ids([big])).toEqual(['b']);
    if (big) slots.release(big);
    // Without the rows (a retry), raw times as before.
    expect(ids([slots.acquire()])).toEqual(['a']);
  });

  it('goes by raw times while a free worker has no timing against the cost model', () => {
    const slots = twoWorkers();
    const [a, b] = [slots.acquire(), slots.acquire()];
    if (a === undefined || b === undefined) throw new Error('no slot');
    const now = performance.now();
    slots.expectBy((rows) => rows * 0.1 * MS);
    noteTiming(a, 0.1 * MS, now); // timed before the model could say
    noteTiming(b, 3.2 * MS, now, 6.4 * MS);
    slots.release(a);
    slots.release(b);
    expect(ids([slots.acquire(undefined, 64)])).toEqual(['a']);
  });

  it('times each execution against what the cost model expected for its rows when it was sent, where there is a choice', async () => {
    const slots = new InstanceSlots();
    slots.add(worker('a', () => 0, 2_000_000n, () => 0), 1);
    slots.expectBy((rows) => rows * 0.5 * MS);
    const dispatcher = new Dispatcher('m/1', slots);
    const runOn = async (rows?: number): Promise<void> => {
      const p = slots.acquire(undefined, rows);
      if (p === undefined) throw new Error('no slot');
      await dispatcher.run(p, [], [], Date.now() + 1_000, undefined, rows);
    };
    // One worker: nothing to weigh, the cost model is not asked.
    await runOn(8);
    expect(slots.placements()[0]?.computeRatio).toBeUndefined();
    slots.add(worker('b', () => 0, 2_000_000n, () => 0), 1);
    await runOn(8);
    await runOn(8);
    // 2 ms for 8 rows the model put at 4 ms, on each.
    expect(slots.placements().map((v) => v.computeRatio)).toEqual([0.5, 0.5]);
    // Without rows (a retry): timed, no ratio.
    await runOn();
    expect(slots.placements().map((v) => v.computeRatio)).toEqual([0.5, 0.5]);
  });

  it('weighs a worker that reports no backlog by its count at our speed there', () => {
    const { slots, a } = timedPair(2 * MS, 11 * MS);
    const now = performance.now();
    // 'a' (2 ms a run) holds 4 of others': 8 ms, then ours; 'b' (11 ms) is free: 10 against 11 ms.
    noteReport(a, { outstanding: 4 }, now);
    expect(a.othersNs).toBeNaN();
    expect(ids([slots.acquire()])).toEqual(['a']);
    // Now 5, one of them ours: 8 ms of others', 2 of ours and its own 2, against 'b''s 11.
    noteReport(a, { outstanding: 5 }, now);
    expect(ids([slots.acquire()])).toEqual(['b']);
  });

  it('while a worker’s speed is not known (or not lately), goes by counts, a tie to the worker not timed', () => {
    const slots = twoWorkers();
    const a = slots.acquire();
    if (a === undefined) throw new Error('no slot');
    noteTiming(a, 1 * MS);
    slots.release(a);
    // 'b' has never run one of ours: at light load it is tried, and so measured.
    const next = slots.acquire();
    expect(ids([next])).toEqual(['b']);
    if (next === undefined) throw new Error('no slot');
    noteTiming(next, 5 * MS);
    slots.release(next);
    expect(ids([slots.acquire()])).toEqual(['a']);
    slots.release(a);
    // Timed long ago, 'a' is measured again though it looked faster.
    noteTiming(a, 1 * MS, performance.now() - TIMING_TTL_MS - 1);
    expect(ids([slots.acquire()])).toEqual(['a']);
  });

  it('learns each worker’s speed and wait from the dispatcher’s answers', async () => {
    const slots = new InstanceSlots();
    let others = 0;
    slots.add(worker('slow', () => 0, 20_000_000n, () => 0), 1);
    // 'fast' is shared: it reports other gateways' large batches, 25 ms each.
    slots.add(worker('fast', () => others, 2_000_000n, () => others * 25 * MS), 1);
    const dispatcher = new Dispatcher('m/1', slots);
    const runOnce = async (): Promise<string> => {
      const p = slots.acquire();
      if (p === undefined) throw new Error('no slot');
      await dispatcher.run(p, [], [], Date.now() + 1_000);
      return p.worker.endpoint.id;
    };
    // Neither timed: the first, then the one not yet timed.
    expect([await runOnce(), await runOnce()]).toEqual(['slow', 'fast']);
    expect(slots.placements().map((v) => [v.worker, v.execNs, v.othersNs])).toEqual([
      ['slow', 20 * MS, 0],
      ['fast', 2 * MS, 0],
    ]);
    const held = [slots.acquire(), slots.acquire(), slots.acquire()];
    expect(ids(held)).toEqual(['fast', 'fast', 'slow']);
    for (const p of held) if (p) slots.release(p);
    // Another gateway's four batches on 'fast' now: 100 ms ahead there against 20 on 'slow'.
    others = 4;
    expect(await runOnce()).toBe('fast');
    // About 100 ms, less what passed since the report on the real clock (2.6 ms once, on a machine busy with the suite).
    const othersNs = slots.placements()[1]?.othersNs ?? NaN;
    expect(othersNs).toBeGreaterThan(50 * MS);
    expect(othersNs).toBeLessThanOrEqual(100 * MS);
    expect(ids([slots.acquire()])).toEqual(['slow']);
  });
});
