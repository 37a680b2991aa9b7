import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { type Clock } from '../../gateway/batching/clock.js';
import { CostModel, estimate, STALE_EXECUTIONS } from '../../core/cost-model.js';
import { decide, type QueueEntry } from '../../gateway/batching/decide.js';
import { type BatchRunner, type BatchSlots, DynamicBatcher } from '../../gateway/batching/dynamic-batcher.js';
import { batchingPolicy } from '../helpers/batching-policy.js';
import {
  backlogDrainScale,
  drainedNs,
  expectedFinishNs,
  isShed,
  MISS_MARGIN,
  STANDING_BATCHES,
  standingShedError,
  standsTooLong,
  wouldMiss,
} from '../../gateway/batching/shedding.js';
import { failureReason } from '../../gateway/metrics/failure-reason.js';
import { type ExecutionResult, type InferJob, type JobResult } from '../../gateway/scheduling/execution.js';

// The cost model, the shedding decisions, and the batcher applying them,
// with a fake clock and explicit execution times.

const MS = 1_000_000;

describe('CostModel', () => {
  it('is cold until an execution was observed, and never guesses', () => {
    const m = new CostModel();
    expect(m.cold).toBe(true);
    expect(m.estimateNs(1)).toBeUndefined();
    m.observe(4, 40 * MS);
    expect(m.cold).toBe(false);
    expect(m.points()).toEqual([{ rows: 4, ns: 40 * MS, samples: 1 }]);
  });

  it('interpolates between measured batch sizes, and continues the last segment beyond them', () => {
    const points = [
      { rows: 1, ns: 10 * MS, samples: 1 },
      { rows: 8, ns: 45 * MS, samples: 1 },
    ];
    expect(estimate(points, 1)).toBe(10 * MS);
    expect(estimate(points, 4)).toBe(25 * MS); // 10 + 35 × 3/7
    expect(estimate(points, 16)).toBe(85 * MS); // 45 + 5 a row
    // The slope stays within [0, the largest's time per row].
    const noisy = [
      { rows: 2, ns: 30 * MS, samples: 1 },
      { rows: 4, ns: 20 * MS, samples: 1 },
    ];
    expect(estimate(noisy, 8)).toBe(20 * MS);
    const steep = [
      { rows: 1, ns: 1 * MS, samples: 1 },
      { rows: 2, ns: 10 * MS, samples: 1 },
    ];
    expect(estimate(steep, 4)).toBe(20 * MS); // 5 a row, not 9
    expect(estimate([{ rows: 4, ns: 20 * MS, samples: 1 }], 8)).toBe(40 * MS);
    expect(estimate([{ rows: 4, ns: 20 * MS, samples: 1 }], 2)).toBe(10 * MS);
    expect(estimate([], 2)).toBeUndefined();
  });

  it('estimates from the median of a size’s recent timings: a stall moves nothing, a changed machine moves it within a few', () => {
    const m = new CostModel();
    m.observe(2, 900); // the first run at a size allocates …
    m.observe(2, 100); // … and gives way to the second
    expect(m.estimateNs(2)).toBe(100);
    m.observe(2, 120);
    m.observe(2, 5_000); // one run descheduled
    expect(m.estimateNs(2)).toBe(120);
    // The machine got busier: 2 ms from now on; five of the window's eight say so.
    for (let i = 0; i < 5; i++) m.observe(2, 2_000);
    expect(m.estimateNs(2)).toBe(2_000);
    // 3 and 4 rows share a bucket: its rows are the mean of its recent executions.
    m.observe(4, 4_000);
    m.observe(4, 4_000);
    m.observe(3, 3_000);
    expect(m.points()[1]).toEqual({ rows: 3.5, ns: 3_500, samples: 3 });
    expect(m.points()).toHaveLength(2);
  });

  it('never lets more rows cost less: a smaller size timed above a larger one takes the larger one’s time', () => {
    const m = new CostModel();
    for (let i = 0; i < 3; i++) m.observe(1, 8 * MS); // met at start, on a busy machine, and not since
    for (let i = 0; i < 3; i++) m.observe(8, 3 * MS);
    expect(m.points().map((p) => p.ns)).toEqual([3 * MS, 3 * MS]);
    expect(m.estimateNs(1)).toBe(3 * MS);
  });

  it('sheds on a floor: the least recent timing of sizes timed twice, flat beyond the largest', () => {
    const m = new CostModel();
    m.observe(1, 9 * MS);
    m.observe(64, 30 * MS);
    // Each size timed once: a first run says nothing of the next.
    expect(m.computeFloorNs(1)).toBeUndefined();
    m.observe(1, 2 * MS);
    m.observe(1, 3 * MS);
    expect(m.computeFloorNs(1)).toBe(2 * MS);
    expect(m.computeNs(1)).toBe(2.5 * MS);
    // Beyond the largest size timed twice: no less than it, never its time per row (64 × 2 ms).
    expect(m.computeFloorNs(64)).toBe(2 * MS);
    expect(m.computeNs(64)).toBe(30 * MS);
  });

  it('trusts its estimates for shedding only after a few executions', () => {
    const m = new CostModel();
    for (let i = 0; i < 3; i++) m.observe(1, MS);
    expect(m.trusted).toBe(false);
    m.observe(1, MS);
    expect(m.trusted).toBe(true);
  });

  it('ignores impossible timings', () => {
    const m = new CostModel();
    m.observe(0, 5);
    m.observe(1, NaN);
    m.observe(1, -1);
    expect(m.cold).toBe(true);
  });
});

describe('expectedFinishNs and wouldMiss', () => {
  const cost = (rows: number): number => (rows === 8 ? 80 * MS : rows * 15 * MS);

  it('counts full batches spread over the instances, then the last batch on one', () => {
    // 20 rows ahead, batches of 8: two full batches then 4 rows.
    expect(expectedFinishNs({ rowsAhead: 20, maxBatch: 8, parallel: 1 }, cost)).toBe(160 * MS + 60 * MS);
    expect(expectedFinishNs({ rowsAhead: 20, maxBatch: 8, parallel: 2 }, cost)).toBe(80 * MS + 60 * MS);
    // Exactly full: the last full batch is the request's own.
    expect(expectedFinishNs({ rowsAhead: 16, maxBatch: 8, parallel: 1 }, cost)).toBe(160 * MS);
    expect(expectedFinishNs({ rowsAhead: 1, maxBatch: 8, parallel: 4 }, cost)).toBe(15 * MS);
  });

  it('knows nothing while the cost model is cold, and then sheds nothing', () => {
    const finish = expectedFinishNs({ rowsAhead: 1000, maxBatch: 8, parallel: 1 }, () => undefined);
    expect(finish).toBeUndefined();
    expect(wouldMiss(finish, 1)).toBe(false);
    expect(wouldMiss(10, 10)).toBe(false);
    expect(wouldMiss(11, 10)).toBe(true);
  });

  it('sheds only past the margin: an expected finish just past the deadline is a coin toss worth taking', () => {
    // 25 ms to the deadline: the margin is 1.25 ms.
    expect(MISS_MARGIN).toBe(0.05);
    expect(wouldMiss(26 * MS, 25 * MS)).toBe(false);
    expect(wouldMiss(26.25 * MS, 25 * MS)).toBe(false);
    expect(wouldMiss(26.3 * MS, 25 * MS)).toBe(true);
    expect(wouldMiss(40 * MS, 25 * MS)).toBe(true);
  });
});

describe('standsTooLong: a standing queue ahead of a caller with a deadline', () => {
  // resnet_small-like: batches of 16, 300 ms deadlines.
  const q = { batchRows: 16, parallel: 1, untilDeadlineNs: 300 * MS };

  it('sheds behind more than two batches per instance whose wait takes over half the time left', () => {
    expect(STANDING_BATCHES).toBe(2);
    expect(standsTooLong({ ...q, rowsAhead: 33, finishNs: 151 * MS })).toBe(true);
    expect(standsTooLong({ ...q, rowsAhead: 80, finishNs: 290 * MS })).toBe(true);
  });

  it('never cuts a queue of two batches per instance or fewer, however slow', () => {
    expect(standsTooLong({ ...q, rowsAhead: 32, finishNs: 299 * MS })).toBe(false);
    expect(standsTooLong({ ...q, rowsAhead: 64, parallel: 2, finishNs: 299 * MS })).toBe(false);
    expect(standsTooLong({ ...q, rowsAhead: 65, parallel: 2, finishNs: 299 * MS })).toBe(true);
    // No instance known: counted as one.
    expect(standsTooLong({ ...q, rowsAhead: 32, parallel: 0, finishNs: 299 * MS })).toBe(false);
  });

  it('never refuses a caller whose deadline leaves room: a closed loop with seconds to spare waits in a long queue', () => {
    expect(standsTooLong({ ...q, rowsAhead: 200, finishNs: 150 * MS })).toBe(false);
    expect(standsTooLong({ ...q, rowsAhead: 200, finishNs: 400 * MS, untilDeadlineNs: 10_000 * MS })).toBe(false);
  });

  it("answers in Triton's timeout words, counted as shed, saying what stood ahead", () => {
    const e = standingShedError('resnet_small/1', 40, 180, 300);
    expect(isShed(e)).toBe(true);
    expect(e.code).toBe(status.UNAVAILABLE);
    expect(e.message).toBe(
      "Request timeout expired: model 'resnet_small/1' shed the request before it ran: 40 rows wait ahead of it, so it would not run in the next 2 batches per instance, and it would finish in 180.0 ms, past half of the 300.0 ms to its deadline",
    );
  });
});

describe('decide with a shedding lead', () => {
  const policy = batchingPolicy(4);
  const entry = (id: string, deadlineNs: bigint | undefined): QueueEntry & { id: string } => ({
    id,
    rows: 1,
    shapeKey: 'x',
    enqueuedNs: 0n,
    timeoutNs: undefined,
    deadlineNs,
  });

  it('sheds an entry whose deadline is nearer than the cheapest execution, and batches the rest', () => {
    const now = 1_000n;
    const queued = [entry('a', now + 5n), entry('b', undefined), entry('c', now + 50n), entry('d', now)];
    const d = decide([{ level: 1, queued, delayed: [] }], now, 1, policy, 10n);
    expect(d.kind).toBe('send');
    if (d.kind !== 'send') return;
    expect(d.take.map((e) => e.id)).toEqual(['b', 'c']);
    expect(d.expired.map((x) => [x.entry.id, x.reason])).toEqual([
      ['a', 'shed'],
      ['d', 'deadline'],
    ]);
  });

  it('sheds nothing with a lead of 0 (cold cost model): the Triton rules as they were', () => {
    const now = 1_000n;
    const d = decide([{ level: 1, queued: [entry('a', now + 1n)], delayed: [] }], now, 1, policy);
    expect(d.expired).toEqual([]);
    expect(d.kind).toBe('send');
  });
});

// --- the batcher applying it ------------------------------------------------

class FakeClock implements Clock {
  ns = 1_000_000_000n;
  readonly #epoch0 = 1_700_000_000_000;
  readonly #ns0 = this.ns;
  now(): bigint {
    return this.ns;
  }
  epochMs(): number {
    return this.#epoch0 + Number(this.ns - this.#ns0) / 1e6;
  }
  setTimeout(): () => void {
    return () => {};
  }
}

class Slots implements BatchSlots<number> {
  busy = 0;
  readonly #listeners = new Set<() => void>();
  constructor(readonly capacity: number) {}
  get free(): number {
    return this.capacity - this.busy;
  }
  get idle(): number {
    return this.free;
  }
  readonly instanceCount = 1;
  acquire(): number | undefined {
    return this.busy < this.capacity ? ++this.busy : undefined;
  }
  release(): void {
    this.busy--;
    for (const l of this.#listeners) l();
  }
  onFree(l: () => void): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }
}

/** Runs each batch for `msPerRow` × rows of fake time, when the test calls finish(). */
class Runner implements BatchRunner<number> {
  readonly running: { rows: number; finish(): void; fail(): void }[] = [];
  executedRows = 0;
  constructor(
    readonly slots: Slots,
    readonly clock: FakeClock,
    readonly msPerRow: number,
  ) {}
  run(_p: number, inputs: readonly { shape: readonly number[] }[]): Promise<ExecutionResult> {
    const rows = inputs[0]?.shape[0] ?? 0;
    this.executedRows += rows;
    return new Promise((resolve, reject) => {
      this.running.push({
        rows,
        finish: () => {
          const ns = rows * this.msPerRow * MS;
          this.clock.ns += BigInt(ns);
          this.slots.release();
          resolve({ outputs: [], computeInputNs: 0, computeInferNs: ns, computeOutputNs: 0, workerId: 'w' });
        },
        fail: () => {
          this.slots.release();
          reject(new Error('worker lost'));
        },
      });
    });
  }
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('DynamicBatcher shedding', () => {
  function setup(shedding = true) {
    const clock = new FakeClock();
    const slots = new Slots(1);
    const runner = new Runner(slots, clock, 10);
    const policy = batchingPolicy(2);
    const batcher = new DynamicBatcher({ modelKey: 'slow/1', slots, dispatcher: runner, policy, clock, shedding });
    const submit = (deadlineInMs: number): { error?: unknown; result?: JobResult } => {
      const out: { error?: unknown; result?: JobResult } = {};
      const job: InferJob = {
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: new Uint8Array(4) }],
        outputs: [],
        signal: new AbortController().signal,
        deadline: clock.epochMs() + deadlineInMs,
        batchSize: 1,
      };
      batcher.enqueue(job).then(
        (r) => (out.result = r),
        (e: unknown) => (out.error = e),
      );
      return out;
    };
    return { clock, runner, batcher, submit };
  }

  /** Runs `n` one-row requests one after another: the cost model learns 10 ms a row. */
  async function warm(runner: Runner, submit: (deadlineInMs: number) => unknown, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      submit(1_000);
      runner.running[runner.running.length - 1]?.finish();
      await flush();
    }
  }

  it('computes everything until it has timed a few executions: one timing is not enough to refuse on', async () => {
    const { runner, batcher, submit } = setup();
    const first = submit(1_000);
    runner.running[0]?.finish(); // 10 ms for one row
    await flush();
    expect(first.result).toBeDefined();
    expect(batcher.cost.estimateNs(1)).toBe(10 * MS);
    submit(1_000);
    const queued = Array.from({ length: 5 }, () => submit(25));
    await flush();
    expect(queued.filter((q) => q.error !== undefined)).toHaveLength(0);
  });

  it('then refuses at once what cannot finish before its deadline', async () => {
    const { runner, batcher, submit } = setup();
    await warm(runner, submit, 4);
    expect(batcher.cost.trusted).toBe(true);
    // And two rows, timed twice: 20 ms.
    for (let i = 0; i < 2; i++) batcher.cost.observe(2, 20 * MS);
    // Busy again; then 5 more rows queue with 25 ms each: rows 1–2 (20 ms) fit, the rest cannot.
    submit(1_000);
    const queued = Array.from({ length: 5 }, () => submit(25));
    await flush();
    const shed = queued.filter((q) => q.error !== undefined);
    expect(shed).toHaveLength(3);
    for (const q of shed) {
      expect(isShed(q.error)).toBe(true);
      expect((q.error as { code: number }).code).toBe(status.UNAVAILABLE);
      expect((q.error as Error).message).toMatch(/^Request timeout expired: model 'slow\/1' shed the request before it ran: it would finish in \d+(\.\d)? ms, its deadline is in 25 ms/);
      expect(failureReason(q.error)).toBe('SHED');
    }
    expect(batcher.pending).toBe(2);
  });

  it('sheds at the cut a queued request whose deadline came nearer than one execution, and never runs it', async () => {
    const { clock, runner, batcher, submit } = setup();
    await warm(runner, submit, 4); // learns 10 ms a row
    submit(1_000); // runs
    const late = submit(40); // fits when queued (finish ≈ 10 ms) …
    await flush();
    expect(late.error).toBeUndefined();
    clock.ns += 25n * BigInt(MS); // … but the running batch takes 25 + 10 ms more: 5 ms left, one row takes 10
    const before = runner.executedRows;
    runner.running[runner.running.length - 1]?.finish();
    await flush();
    expect(isShed(late.error)).toBe(true);
    expect(runner.executedRows).toBe(before);
    expect(batcher.pending).toBe(0);
  });

  it('counts no busy time before a batch was cut: a backlog that ended without an answer does not make the drain rate shed', async () => {
    const { clock, runner, submit } = setup();
    await warm(runner, submit, 4); // 10 ms a row
    const last = (): { finish(): void; fail(): void } => runner.running[runner.running.length - 1] as { finish(): void; fail(): void };
    // A backlog: a full batch stays queued at each answer, so the drain rate learns 10 ms a row over 9 busy intervals.
    submit(1_000);
    for (let i = 0; i < 20; i++) submit(1_000);
    for (let i = 0; i < 10; i++) {
      last().finish();
      await flush();
    }
    // The last answer still left a full batch queued (busy); that batch's execution then fails: no answer ends the interval.
    last().fail();
    await flush();
    // Five seconds later a new load: its first batch is answered 10 ms after its cut, with a full batch queued behind it.
    clock.ns += 5_000n * BigInt(MS);
    submit(1_000);
    submit(1_000);
    submit(1_000);
    last().finish();
    await flush();
    // Two more queue first (a request that rides in the next batch is never shed by estimate). Then rows ahead 3,
    // rows out 2: 40 ms at the drain rate. Counted from the last answer before the gap, it read 5 s.
    submit(1_000);
    submit(1_000);
    const next = submit(45);
    // The estimate is in force: one more behind it (50 ms) with a 25 ms deadline is shed.
    const tight = submit(25);
    await flush();
    expect(next.error).toBeUndefined();
    expect(isShed(tight.error)).toBe(true);
  });

  it('sheds nothing with shedding off', async () => {
    const { runner, submit } = setup(false);
    submit(1_000);
    runner.running[0]?.finish();
    await flush();
    submit(1_000);
    const queued = Array.from({ length: 5 }, () => submit(25));
    await flush();
    expect(queued.filter((q) => q.error !== undefined)).toHaveLength(0);
  });
});

describe('backlogDrainScale: a drain rate measured at small batches, applied to a backlog cut in large ones', () => {
  const costMs = (n: number): number => (2 + 0.5 * n) * 1e6;

  it('is the ratio of compute time per row at the backlog’s batch to that at the measured one', () => {
    // Pairs: 1.5 ms a row; batches of 8: 0.75 ms a row.
    expect(backlogDrainScale(2, 8, costMs)).toBeCloseTo(0.5, 10);
  });

  it('is 1 when the backlog is cut no larger than measured, while the cost model is cold, and never above 1', () => {
    expect(backlogDrainScale(8, 8, costMs)).toBe(1);
    expect(backlogDrainScale(8, 4, costMs)).toBe(1);
    expect(backlogDrainScale(0, 8, costMs)).toBe(1);
    expect(backlogDrainScale(2, 8, () => undefined)).toBe(1);
    // A model slower per row in larger batches (memory-bound past a size): the measured rate stands.
    expect(backlogDrainScale(2, 8, (n) => n * n * 1e6)).toBe(1);
  });
});

describe('drainedNs: the wait at the drain rate, for the rows ahead and those out', () => {
  const costMs = (n: number): number => (2 + 0.5 * n) * 1e6;
  // 1 ms a row answered, measured at pairs (compute 1.5 ms a row there).
  const at = { nsPerRow: 1e6, measuredRows: 2, backlogRows: 16 };

  it('counts the rows ahead and half the rows out at the measured rate while they run in batches no larger', () => {
    expect(drainedNs({ ...at, rowsAhead: 1, runningRows: 2, runningBatches: 1 }, costMs)).toBe(2e6);
    expect(drainedNs({ ...at, rowsAhead: 1, runningRows: 0, runningBatches: 0 }, costMs)).toBe(1e6);
  });

  it('counts each at the rate of the batches it runs in: the rows ahead as the backlog is cut, the rows out as they were', () => {
    // 8 ahead, cut in batches of 8: 0.75 ms a row of compute against 1.5 at pairs.
    expect(drainedNs({ ...at, rowsAhead: 8, runningRows: 0, runningBatches: 0 }, costMs)).toBeCloseTo(8e6 * 0.5, 0);
    // … but no larger than the batches a backlog is cut in.
    expect(drainedNs({ ...at, backlogRows: 4, rowsAhead: 8, runningRows: 0, runningBatches: 0 }, costMs)).toBeCloseTo(8e6 * (1 / 1.5), 0);
    // 1 ahead, two batches of 8 out (8 rows counted), at the rate of 8-row batches.
    expect(drainedNs({ ...at, rowsAhead: 1, runningRows: 16, runningBatches: 2 }, costMs)).toBeCloseTo(1e6 + 8e6 * 0.5, 0);
  });
});

describe('the efficient batch size (SLO mode’s full batch)', () => {
  const model = (costMs: (rows: number) => number, sizes: readonly number[]): CostModel => {
    const m = new CostModel();
    for (const rows of sizes) m.observe(rows, costMs(rows) * 1e6);
    return m;
  };

  it('is max_batch_size while cold', () => {
    expect(new CostModel().efficientRows(64)).toBe(64);
  });

  it('tries twice the largest size measured while throughput still rises, up to max_batch_size', () => {
    // Seen at one row only: nothing is known of larger batches yet.
    expect(model(() => 10, [1]).efficientRows(64)).toBe(2);
    // Memory-bound at small batches (10 ms + 1 ms a row): 8 rows do 1.6× the rows/s of 4.
    expect(model((n) => 10 + n, [1, 2, 4, 8]).efficientRows(64)).toBe(16);
    expect(model((n) => 10 + n, [1, 2, 4, 8, 16, 32]).efficientRows(48)).toBe(48);
  });

  it('counts a doubling that gains under 10 % as flat: within the noise of a busy machine', () => {
    // ResNet-18 on 2 CPU cores: 11.4 ms for 1 row, 21.4 ms for 2 (+7 %), flat after. At 5 % the curve read as
    // rising, and under a flood noise carried the batches up to 16 (170 ms each) for no throughput.
    expect(model((n) => (n === 1 ? 11.4 : 10.7 * n), [1, 2]).efficientRows(16)).toBe(1);
    // A gain past it is still followed: 1 → 2 rows +67 %.
    expect(model((n) => 8 + 2 * n, [1, 2]).efficientRows(16)).toBe(4);
  });

  it('judges the curve flat only from measured sizes about a doubling apart, never from a line drawn between far ones', () => {
    // Seen at 1 and 8 rows only (one-row warm-up, then 8-row requests): the straight line between them says
    // nothing of 4 against 8, so 16 is tried. Judged flat from the line, every batch stayed one 8-row request.
    expect(model((n) => 5 * n, [1, 8]).efficientRows(64)).toBe(16);
    expect(model((n) => 5 * n, [1, 4, 8]).efficientRows(64)).toBe(1);
  });

  it('once throughput flattens, is the smallest size within 90 % of the best', () => {
    // Compute-bound (2 ms + 5 ms a row): 16 rows do 2.6 % more rows/s than 8; 3 rows already do 90 % of 16's.
    expect(model((n) => 2 + 5 * n, [1, 2, 4, 8, 16]).efficientRows(64)).toBe(3);
    // Linear: batching buys nothing, so nothing waits for it.
    expect(model((n) => 5 * n, [1, 2, 4, 8]).efficientRows(64)).toBe(1);
  });

  it('follows new timings', () => {
    const m = model((n) => 2 + 5 * n, [1, 2, 4, 8, 16]);
    expect(m.efficientRows(64)).toBe(3);
    // The machine changed: now a run's fixed cost dominates (a GPU, or memory-bound), and larger batches pay.
    for (let i = 0; i < 30; i++) for (const rows of [1, 2, 4, 8, 16]) m.observe(rows, (20 + 0.5 * rows) * 1e6);
    expect(m.efficientRows(64)).toBe(32);
  });

  it('leaves out a size not timed in STALE_EXECUTIONS executions, so a slow timing of a busy moment is tried again', () => {
    // 2 ms + 0.125 ms a row (the large MLP's shape), but 64 rows timed at 36 ms on a busy moment: 8 rows look the
    // most efficient, and 64 rows are never run again to be corrected.
    const m = model((n) => (n === 64 ? 36 : 2 + 0.125 * n), [1, 2, 4, 8, 16, 32, 64, 64]);
    expect(m.efficientRows(64)).toBeLessThan(32);
    expect(m.estimateNs(64)).toBe(36e6);
    // Batches of 8–16 rows run on. Until STALE_EXECUTIONS more executions, the 64-row timing holds; then the
    // estimate for 64 rows is drawn from the sizes still run, and larger batches are tried again (twice the
    // largest size run, while throughput still rises).
    for (let i = 1; i < STALE_EXECUTIONS; i++) m.observe(8 + (i % 9), (2 + 0.125 * (8 + (i % 9))) * 1e6);
    expect(m.estimateNs(64)).toBe(36e6);
    m.observe(12, 3.5e6);
    expect(m.efficientRows(64)).toBe(24);
    expect(m.estimateNs(64)).toBeLessThan(11e6);
    // Timed again at 64 rows, the new timing counts.
    m.observe(64, 10e6);
    m.observe(64, 10e6);
    expect(m.estimateNs(64)).toBe(10e6);
  });
});

describe('the overhead an execution adds to its compute', () => {
  it('is the median of the recent ones for planning, and the least of them for shedding: a few stalls move neither', () => {
    const m = new CostModel();
    expect(m.overheadFloorNs).toBe(0);
    // A model's first executions also warm the way to the worker and back: their overhead is not learned.
    for (let i = 0; i < 4; i++) {
      m.observe(1, 3e6);
      m.observeOverhead(3e6 + 60e6, 3e6);
    }
    expect(m.overheadNs).toBe(0);
    expect(m.overheadFloorNs).toBe(0);
    m.observe(1, 3e6);
    for (let i = 0; i < 16; i++) m.observeOverhead(3e6 + 1e6, 3e6); // 1 ms beyond compute
    expect(m.overheadNs).toBe(1e6);
    expect(m.overheadFloorNs).toBe(1e6);
    // A load steps up: a few answers read 140 ms late by a busy loop.
    for (let i = 0; i < 3; i++) m.observeOverhead(3e6 + 140e6, 3e6);
    expect(m.overheadNs).toBe(1e6);
    expect(m.overheadFloorNs).toBe(1e6);
    // A busy machine: most answers late by 4 ms.
    for (let i = 0; i < 7; i++) m.observeOverhead(3e6 + 5e6, 3e6);
    expect(m.overheadNs).toBe(5e6);
    expect(m.overheadFloorNs).toBe(1e6);
    // Once every recent one is slower, the floor follows.
    for (let i = 0; i < 16; i++) m.observeOverhead(3e6 + 5e6, 3e6);
    expect(m.overheadFloorNs).toBe(5e6);
    // Nonsense timings are ignored.
    m.observeOverhead(1e6, 3e6);
    m.observeOverhead(Number.NaN, 0);
    expect(m.overheadFloorNs).toBe(5e6);
  });
});
