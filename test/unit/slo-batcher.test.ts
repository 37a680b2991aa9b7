import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ServingError } from '../../core/errors.js';
import { type BatchInput } from '../../core/tensor.js';
import { tensorOf } from '../helpers/joined-tensor.js';
import { type Clock } from '../../gateway/batching/clock.js';
import { type BatchRunner, type BatchSlots, DynamicBatcher, freeAtNs } from '../../gateway/batching/dynamic-batcher.js';
import { isShed } from '../../gateway/batching/shedding.js';
import { type ExecutionResult, type InferJob, type JobResult, type JobTenant } from '../../gateway/scheduling/execution.js';
import { batchingPolicy } from '../helpers/batching-policy.js';

// The SLO-aware mode wired into the batcher: a fake clock, fake slots, a
// dispatcher that finishes a batch when the test says so, and a cost table
// given to the cost model explicitly (2 ms + 0.5 ms a row).

const MS = 1_000_000n;
const EPOCH = 1_700_000_000_000;
const costMs = (rows: number): number => 2 + 0.5 * rows;

class FakeClock implements Clock {
  ns = 1_000n * MS;
  readonly #startNs = this.ns;
  #timers: { at: bigint; fn: () => void }[] = [];
  now(): bigint {
    return this.ns;
  }
  epochMs(): number {
    return EPOCH + Number(this.ns - this.#startNs) / 1e6;
  }
  setTimeout(fn: () => void, ms: number): () => void {
    const timer = { at: this.ns + BigInt(ms) * MS, fn };
    this.#timers.push(timer);
    return () => {
      this.#timers = this.#timers.filter((t) => t !== timer);
    };
  }
  advance(ms: number): void {
    const target = this.ns + BigInt(Math.round(ms * 1e6));
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= target).sort((a, b) => (a.at < b.at ? -1 : 1))[0];
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      if (due.at > this.ns) this.ns = due.at;
      due.fn();
    }
    this.ns = target;
  }
}

/** `capacity` slots of which `instances` run at once; the rest queue ahead. */
class FakeSlots implements BatchSlots<number> {
  busy = 0;
  readonly #listeners = new Set<() => void>();
  constructor(
    readonly capacity: number,
    readonly instances: number,
  ) {}
  get free(): number {
    return this.capacity - this.busy;
  }
  get idle(): number {
    return Math.max(0, this.instances - this.busy);
  }
  get instanceCount(): number {
    return this.instances;
  }
  acquire(): number | undefined {
    return this.busy < this.capacity ? ++this.busy : undefined;
  }
  release(): void {
    this.busy--;
    for (const l of this.#listeners) l();
  }
  onFree(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

interface Cut {
  readonly atMs: number;
  readonly labels: string[];
  finish(): void;
}

/** Records each batch (labels of its rows, when it was cut) and finishes it on demand, reporting the table's cost. */
class Recorder implements BatchRunner<number> {
  readonly cuts: Cut[] = [];
  constructor(
    readonly slots: FakeSlots,
    readonly clock: FakeClock,
    readonly labels: Map<number, string>,
  ) {}
  run(_p: number, inputs: readonly BatchInput[]): Promise<ExecutionResult> {
    const x = tensorOf(inputs[0] as BatchInput);
    const ids = Array.from(new Float32Array(x.data.slice().buffer));
    return new Promise((resolve) => {
      this.cuts.push({
        atMs: Number(this.clock.ns - 1_000n * MS) / 1e6,
        labels: ids.map((id) => this.labels.get(id) ?? '?'),
        finish: () => {
          this.slots.release();
          resolve({ outputs: [{ ...x, name: 'y' }], computeInputNs: 0, computeInferNs: costMs(ids.length) * 1e6, computeOutputNs: 0, workerId: 'w' });
        },
      });
    });
  }
}

function setup(o: { sloMs: number; maxBatch?: number; capacity?: number; instances?: number; priorityLevels?: bigint; warm?: boolean; overheadMs?: number }) {
  const clock = new FakeClock();
  const slots = new FakeSlots(o.capacity ?? 1, o.instances ?? 1);
  const labels = new Map<number, string>();
  const recorder = new Recorder(slots, clock, labels);
  const policy = batchingPolicy(o.maxBatch ?? 8, { priorityLevels: o.priorityLevels ?? 0n });
  const batcher = new DynamicBatcher({ modelKey: 'm/1', slots, dispatcher: recorder, policy, clock, sloNs: BigInt(o.sloMs) * MS });
  // The explicit cost table: two executions at 1, 2, 4 and 8 rows (a size's first timing gives way to its second).
  if (o.warm ?? true) for (const rows of [1, 2, 4, 8, 1, 2, 4, 8]) batcher.cost.observe(rows, costMs(rows) * 1e6);
  // The way to the worker and back, beyond the compute (a mean: repeated until it settles).
  if (o.overheadMs !== undefined) for (let i = 0; i < 100; i++) batcher.cost.observeOverhead((costMs(1) + o.overheadMs) * 1e6, costMs(1) * 1e6);
  let next = 1;
  const results = new Map<string, { result?: JobResult; error?: unknown }>();
  /** A request labelled `label`; `deadlineMs`: its own deadline, ms from now. */
  const submit = (label: string, more: { deadlineMs?: number; tenant?: JobTenant; priority?: number } = {}): void => {
    const id = next++;
    labels.set(id, label);
    const job: InferJob = {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: new Uint8Array(Float32Array.from([id]).buffer) }],
      outputs: [],
      signal: new AbortController().signal,
      deadline: more.deadlineMs === undefined ? Infinity : clock.epochMs() + more.deadlineMs,
      batchSize: 1,
      ...(more.tenant ? { tenant: more.tenant } : {}),
      ...(more.priority === undefined ? {} : { priority: more.priority }),
    };
    const state: { result?: JobResult; error?: unknown } = {};
    results.set(label, state);
    batcher.enqueue(job).then(
      (r) => (state.result = r),
      (e: unknown) => (state.error = e),
    );
  };
  return { clock, slots, recorder, batcher, submit, results };
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('DynamicBatcher in SLO mode (batching_slo_ms)', () => {
  it('cuts now when no more rows are expected, or while the cost model is cold', () => {
    for (const warm of [true, false]) {
      const { recorder, submit } = setup({ sloMs: 25, warm });
      submit('a');
      expect(recorder.cuts.map((c) => c.labels)).toEqual([['a']]);
    }
  });

  it('waits for more rows under steady arrivals, and cuts each batch in time for every member', async () => {
    const { clock, recorder, submit } = setup({ sloMs: 25 });
    const arrived = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const label = `r${i}`;
      arrived.set(label, i);
      submit(label);
      // The instance answers as soon as the clock passes the batch's cost.
      clock.advance(1);
      for (const c of recorder.cuts) if (c.atMs + costMs(c.labels.length) <= i + 1) c.finish();
      await flush();
    }
    clock.advance(30);
    const sizes = recorder.cuts.map((c) => c.labels.length);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(60);
    // Once it has seen the arrival rate (1 row a ms), it waits to batch rather than cutting each row alone.
    expect(Math.max(...sizes.slice(-5))).toBeGreaterThan(2);
    for (const c of recorder.cuts) {
      for (const l of c.labels) expect(c.atMs + costMs(c.labels.length)).toBeLessThanOrEqual((arrived.get(l) ?? NaN) + 25);
    }
  });

  it('sends one batch ahead of an instance late on its estimate; the next arrivals wait behind that one and grow', async () => {
    const { clock, recorder, submit } = setup({ sloMs: 50, capacity: 4, instances: 1 });
    submit('a'); // idle: cut at once, expected to end 2.5 ms on
    clock.advance(10); // still running, long past that
    submit('b'); // the instance may free any moment: due for sending ahead
    await flush();
    expect(recorder.cuts.map((c) => c.labels)).toEqual([['a'], ['b']]);
    // Due at b's expected end, not a's: taken from the earliest finish in flight (a's, overdue), each was sent ahead alone.
    submit('c');
    submit('d');
    await flush();
    expect(recorder.cuts).toHaveLength(2);
    clock.advance(3); // b's expected end, in the timer's whole ms
    expect(recorder.cuts.map((c) => c.labels)).toEqual([['a'], ['b'], ['c', 'd']]);
  });

  it('waits no later than the earliest deadline allows for the batch it waits for', async () => {
    const { clock, recorder, submit } = setup({ sloMs: 25 });
    // Teach it an arrival rate: about 1 row a ms, each cut and answered at once (due at once),
    // faster than batches of 1 keep up with (2.5 ms each).
    for (let i = 0; i < 20; i++) {
      submit(`w${i}`, { deadlineMs: 1 });
      for (const c of recorder.cuts.splice(0)) c.finish();
      await flush();
      clock.advance(1);
    }
    const before = recorder.cuts.length;
    // It waits for the batch that keeps up with the arrivals it has seen (the rate it learned over
    // 20 ms is ~0.6 rows a ms: 2 rows, 3 ms a run), but this request's own deadline is 5 ms away.
    const startMs = Number(clock.ns - 1_000n * MS) / 1e6;
    submit('due', { deadlineMs: 5 });
    expect(recorder.cuts.length).toBe(before);
    for (let t = 0; t < 5 && recorder.cuts.length === before; t += 0.25) clock.advance(0.25);
    const cut = recorder.cuts.at(-1);
    expect(cut?.labels).toEqual(['due']);
    // It waited for rows, and cut in time for its member to finish by its deadline.
    expect(cut?.atMs).toBeGreaterThan(startMs);
    expect((cut?.atMs ?? Infinity) + costMs(1)).toBeLessThanOrEqual(startMs + 5);
    expect(cut?.atMs).toBeLessThanOrEqual(startMs + 5 - costMs(2));
  });

  it('under a flood cuts what is queued up to max_batch_size while every member stays in time: a backlog served in larger batches serves more', async () => {
    const { recorder, submit } = setup({ sloMs: 1_000 });
    // 2 ms + 0.5 ms a row, measured to 8 (= max_batch_size): 6 rows do 90 % of 8's rows/s, the efficient size
    // waited for; what is queued already is cut up to 8. The first goes alone onto the idle instance.
    for (let i = 0; i < 20; i++) submit(`f${i}`);
    for (let i = 0; i < 10; i++) {
      for (const c of recorder.cuts.slice(i)) c.finish();
      await flush();
    }
    expect(recorder.cuts.map((c) => c.labels.length)).toEqual([1, 8, 8, 3]);
  });

  it('with tenants sharing the model, cuts a backlog at the efficient size; once one tenant sends alone for 10 s, up to max_batch_size', async () => {
    const a: JobTenant = { name: 'a', weight: 1, queueShare: 1 };
    const b: JobTenant = { name: 'b', weight: 1, queueShare: 1 };
    // B's request, then A's flood: the arrivals switched tenants, so A's first batch is 6 rows (the efficient
    // size), not the 8 a flood alone gets (the test above): a request of B's arriving next waits for less.
    // (With 20 ms to the worker and back, twice a row's 22.5 ms allows the 6 rows: see the test below.)
    const shared = setup({ sloMs: 1_000, overheadMs: 20 });
    shared.submit('b0', { tenant: b });
    for (let i = 0; i < 20; i++) shared.submit(`a${i}`, { tenant: a });
    shared.recorder.cuts[0]?.finish();
    await flush();
    expect(shared.recorder.cuts.map((c) => c.labels.length)).toEqual([1, 6]);
    // B sent once, A's first arrival after it marked the model shared, and A alone has sent since: for 2 s (a
    // quiet tenant's pause: still shared), then for 10 s (B has gone).
    const floodAfter = async (ms: number): Promise<number | undefined> => {
      const later = setup({ sloMs: 1_000, overheadMs: 20 });
      later.submit('b0', { tenant: b });
      later.submit('a0', { tenant: a });
      for (let i = 0; i < 2; i++) {
        for (const c of later.recorder.cuts) c.finish();
        await flush();
      }
      later.clock.advance(ms);
      for (let i = 1; i <= 20; i++) later.submit(`a${i}`, { tenant: a });
      later.recorder.cuts.at(-1)?.finish();
      await flush();
      // (the cuts before it: b0, a0 and the first of a1… onto the idle instance, one row each)
      return later.recorder.cuts.at(-1)?.labels.length;
    };
    expect(await floodAfter(2_000)).toBe(6);
    expect(await floodAfter(10_001)).toBe(8);
  });

  it("with tenants sharing the model, cuts a flooding tenant's batch only as the instance frees, however late: a request of another tenant arriving meanwhile rides in it", async () => {
    const a: JobTenant = { name: 'a', weight: 1, queueShare: 1 };
    const b: JobTenant = { name: 'b', weight: 1, queueShare: 1 };
    const { clock, recorder, submit } = setup({ sloMs: 1_000, capacity: 2, instances: 1, overheadMs: 20 });
    // B's request runs (1 row: 2.5 ms by the table); A's flood arrives behind it. A full batch is queued, and a
    // slot is free to send it ahead, but it is held until the instance frees.
    submit('b0', { tenant: b });
    for (let i = 0; i < 20; i++) submit(`a${i}`, { tenant: a });
    expect(recorder.cuts.map((c) => c.labels)).toEqual([['b0']]);
    // The run overruns its estimate fourfold (a busy machine): nothing is cut ahead of its end meanwhile.
    clock.advance(5);
    submit('b1', { tenant: b });
    clock.advance(5);
    expect(recorder.cuts).toHaveLength(1);
    recorder.cuts[0]?.finish();
    await flush();
    expect(recorder.cuts).toHaveLength(2);
    expect(recorder.cuts[1]?.labels).toContain('b1');
    expect(recorder.cuts[1]?.labels).toHaveLength(6);
  });

  it("with tenants sharing the model, sizes a flood's batches so that another tenant's request, by its deadline, can wait out one and ride in the next", async () => {
    const a: JobTenant = { name: 'a', weight: 1, queueShare: 1 };
    const b: JobTenant = { name: 'b', weight: 1, queueShare: 1 };
    // B's request brings a deadline 28 ms away: a batch of n rows run (2 + 0.5 n ms) and then cut to answer
    // (20 ms more) fits it up to 4 rows; the efficient size is 6 (the test above).
    const { recorder, submit } = setup({ sloMs: 1_000, overheadMs: 20 });
    submit('b0', { tenant: b, deadlineMs: 28 });
    for (let i = 0; i < 20; i++) submit(`a${i}`, { tenant: a });
    for (let i = 0; i < 3; i++) {
      recorder.cuts[i]?.finish();
      await flush();
    }
    expect(recorder.cuts.map((c) => c.labels.length)).toEqual([1, 4, 4, 4]);
  });

  it("with tenants sharing the model, follows the cost model and the deadlines as they change: the full batch is asked at every decision, worked out once per change", async () => {
    const a: JobTenant = { name: 'a', weight: 1, queueShare: 1 };
    const b: JobTenant = { name: 'b', weight: 1, queueShare: 1 };
    const { batcher, recorder, submit } = setup({ sloMs: 1_000, overheadMs: 20 });
    submit('b0', { tenant: b });
    submit('a0', { tenant: a });
    // Shared, 20 ms from cut to answer beyond the compute: the efficient 6 rows fit twice a row's 22.5 ms.
    expect(batcher.fullBatchRows).toBe(6);
    expect(batcher.fullBatchRows).toBe(6);
    // The way to the worker shortens to nothing (new timings): a row alone is 2.5 ms, and only the throughput
    // floor's 2 rows are left (the test below).
    for (let i = 0; i < 100; i++) batcher.cost.observeOverhead(costMs(1) * 1e6, costMs(1) * 1e6);
    expect(batcher.fullBatchRows).toBe(2);
    // Back to 20 ms, and a request of B's brings a deadline 28 ms away: 4 rows (its wait and ride, 24 + n ms).
    for (let i = 0; i < 100; i++) batcher.cost.observeOverhead((costMs(1) + 20) * 1e6, costMs(1) * 1e6);
    expect(batcher.fullBatchRows).toBe(6);
    submit('b1', { tenant: b, deadlineMs: 28 });
    expect(batcher.fullBatchRows).toBe(4);
    for (const c of recorder.cuts) c.finish();
    await flush();
  });

  it("with tenants sharing the model, keeps another tenant's request within twice a row's latency alone: a compute-bound flood's batches shrink, down to half their throughput", async () => {
    const a: JobTenant = { name: 'a', weight: 1, queueShare: 1 };
    const b: JobTenant = { name: 'b', weight: 1, queueShare: 1 };
    // Nothing beyond the compute (2 + 0.5 n ms): B's wait for a batch of n rows and its own batch, 2 (2 + 0.5 n),
    // is within twice a row's 2.5 ms only at 1 row, which does 0.4 rows/ms against the 6 rows' 1.2: below half.
    // 2 rows (0.67) is the smallest above it. Without B the flood gets the efficient 6 (the tests above).
    const { recorder, submit } = setup({ sloMs: 1_000 });
    submit('b0', { tenant: b });
    for (let i = 0; i < 20; i++) submit(`a${i}`, { tenant: a });
    for (let i = 0; i < 3; i++) {
      recorder.cuts[i]?.finish();
      await flush();
    }
    expect(recorder.cuts.map((c) => c.labels.length)).toEqual([1, 2, 2, 2]);
  });

  it('grows a backlog batch past the efficient size only as far as its earliest deadline allows', async () => {
    const { recorder, submit } = setup({ sloMs: 1_000 });
    submit('running');
    // f0 must end within 5.6 ms: 7 rows run 5.5 ms, 8 rows 6 ms. The others have time.
    submit('f0', { deadlineMs: 5.6 });
    for (let i = 1; i < 9; i++) submit(`f${i}`);
    for (let i = 0; i < 4; i++) {
      for (const c of recorder.cuts.slice(i)) c.finish();
      await flush();
    }
    expect(recorder.cuts.map((c) => c.labels.length)).toEqual([1, 7, 2]);
    expect(recorder.cuts[1]?.labels[0]).toBe('f0');
  });

  it('sends ahead into a busy instance only when waiting for it would make a member miss', async () => {
    const { clock, recorder, submit } = setup({ sloMs: 100, capacity: 2, instances: 1 });
    // Teach it the arrival rate: about 1 row a ms, each row cut and answered at once.
    for (let i = 0; i < 20; i++) {
      submit(`t${i}`, { deadlineMs: 1 });
      for (const c of recorder.cuts.splice(0)) c.finish();
      await flush();
      clock.advance(1);
    }
    recorder.cuts.splice(0);
    // Due at once: cut now onto the idle instance; by the table it ends 2.5 ms from now.
    submit('running', { deadlineMs: 3 });
    expect(recorder.cuts.map((c) => c.labels)).toEqual([['running']]);
    // Loose deadline: wait for the instance, so the batch can grow.
    submit('loose');
    expect(recorder.cuts).toHaveLength(1);
    // Due at 5.8 ms: as it is (2 rows, 3 ms) it ends at 5.5 ms behind the running one; grown by the
    // rows expected until then it would not: it goes ahead into the busy instance's queue now.
    submit('tight', { deadlineMs: 5.8 });
    expect(recorder.cuts.map((c) => c.labels)).toEqual([['running'], ['loose', 'tight']]);
  });

  it('waits for the busy instance when the batch stays in time either way, then cuts it whole', async () => {
    const { recorder, submit } = setup({ sloMs: 100, capacity: 2, instances: 1 });
    submit('running');
    submit('b');
    submit('c');
    expect(recorder.cuts).toHaveLength(1);
    recorder.cuts[0]?.finish();
    await flush();
    expect(recorder.cuts.map((c) => c.labels)).toEqual([['running'], ['b', 'c']]);
  });

  it('sheds a request whose SLO passed while it queued: UNAVAILABLE "Request timeout expired", never computed', async () => {
    const { clock, recorder, batcher, submit, results } = setup({ sloMs: 10 });
    submit('running');
    submit('late');
    clock.advance(11);
    recorder.cuts[0]?.finish();
    await flush();
    const error = results.get('late')?.error;
    expect(isShed(error)).toBe(true);
    expect(error).toBeInstanceOf(ServingError);
    expect((error as ServingError).code).toBe(status.UNAVAILABLE);
    expect((error as ServingError).message).toMatch(/^Request timeout expired: model 'm\/1' shed the request/);
    expect(recorder.cuts.flatMap((c) => c.labels)).toEqual(['running']);
    expect(batcher.computedPastDeadline).toBe(0);
  });

  it('sheds on arrival a request that the queue ahead of it would make miss its SLO', async () => {
    const { recorder, submit, results } = setup({ sloMs: 10, maxBatch: 2 });
    submit('running');
    // Each pair costs 3 ms: the 7th pair ends past 10 ms.
    for (let i = 0; i < 14; i++) submit(`q${i}`);
    await flush();
    expect(recorder.cuts).toHaveLength(1);
    const shed = [...results.entries()].filter(([, s]) => isShed(s.error)).map(([l]) => l);
    expect(shed.length).toBeGreaterThan(0);
    expect(shed).not.toContain('q0');
  });

  it('does not shed on arrival a request that rides in the next batch, however late the estimate', async () => {
    const { recorder, submit, results } = setup({ sloMs: 6, maxBatch: 8 });
    submit('running');
    // Half the running row (1.25 ms) plus the batch of k rows ahead (2 + 0.5 k ms): from k = 6 past the 6 ms SLO
    // (and its 5 % margin); only the rows beyond the next batch of 8 are shed.
    for (let i = 0; i < 12; i++) submit(`q${i}`);
    await flush();
    const shed = [...results.entries()].filter(([, s]) => isShed(s.error)).map(([l]) => l);
    expect(shed).toEqual(['q8', 'q9', 'q10', 'q11']);
    expect(recorder.cuts.map((c) => c.labels)).toEqual([['running']]);
    expect(results.get('q7')).toEqual({});
  });

  it('counts the queue by how fast it drained lately under a backlog, when that is slower than the compute timed', async () => {
    const { clock, recorder, batcher, submit, results } = setup({ sloMs: 1_000, maxBatch: 2 });
    // Pairs compute in 3 ms, but a pair comes back every 12 ms (the batch's copy to the worker, a busy gateway).
    submit('r');
    for (let i = 0; i < 30; i++) submit(`b${i}`, { deadlineMs: 60_000 });
    for (let i = 0; i < 12; i++) {
      clock.advance(12);
      recorder.cuts[i]?.finish();
      await flush();
    }
    expect(batcher.cost.computeNs(2)).toBe(3e6);
    // 7 rows wait now and a pair is out: by compute ~13 ms, as drained (6 ms a row) over 50.
    submit('fits-compute-only', { deadlineMs: 50 });
    await flush();
    const e = results.get('fits-compute-only')?.error;
    expect(isShed(e)).toBe(true);
    expect((e as Error).message).toMatch(/it would finish in 5\d ms, its deadline is in 50 ms/);
  });

  it('sheds nothing by estimate while nothing runs, so an estimate grown too pessimistic is corrected', async () => {
    const { recorder, batcher, submit, results } = setup({ sloMs: 25, warm: false });
    // A busy spell taught it 40 ms a row: by that, no request meets a 25 ms SLO.
    batcher.cost.observe(1, 40e6);
    submit('a');
    expect(recorder.cuts.map((c) => c.labels)).toEqual([['a']]);
    recorder.cuts[0]?.finish();
    await flush();
    expect(results.get('a')?.result).toBeDefined();
    expect(batcher.cost.estimateNs(1)).toBeLessThan(40e6);
  });

  it('keeps the tenants’ DRR order and the priority levels', async () => {
    const a: JobTenant = { name: 'a', weight: 1, queueShare: 1 };
    const b: JobTenant = { name: 'b', weight: 1, queueShare: 1 };
    const fair = setup({ sloMs: 1000, maxBatch: 1 });
    fair.submit('a0', { tenant: a });
    for (let i = 1; i <= 3; i++) fair.submit(`a${i}`, { tenant: a });
    for (let i = 1; i <= 2; i++) fair.submit(`b${i}`, { tenant: b });
    for (let i = 0; i < 6; i++) {
      fair.recorder.cuts[i]?.finish();
      await flush();
    }
    expect(fair.recorder.cuts.map((c) => c.labels[0])).toEqual(['a0', 'a1', 'b1', 'a2', 'b2', 'a3']);

    const prio = setup({ sloMs: 1000, maxBatch: 2, priorityLevels: 2n });
    prio.submit('first', { priority: 2 });
    prio.submit('low', { priority: 2 });
    prio.submit('high', { priority: 1 });
    prio.recorder.cuts[0]?.finish();
    await flush();
    expect(prio.recorder.cuts.map((c) => c.labels)).toEqual([['first'], ['high', 'low']]);
  });
});

describe('freeAtNs: when an instance is free with nothing queued for it', () => {
  it('is the latest expected finish with one instance: a batch sent ahead waits behind all in flight', () => {
    // A run late on its estimate (its finish already past) no longer makes the next arrival look due.
    expect(freeAtNs([90n, 130n], 1)).toBe(130n);
    expect(freeAtNs([130n, 90n], 1)).toBe(130n);
  });

  it('is the n-th latest with n instances, and unknown while fewer batches than instances are in flight', () => {
    expect(freeAtNs([90n, 200n, 130n], 2)).toBe(130n);
    expect(freeAtNs([90n], 2)).toBeUndefined();
    expect(freeAtNs([], 1)).toBeUndefined();
  });
});

describe('DynamicBatcher in SLO mode: callers in a closed loop', () => {
  /**
   * Four callers, each sending again 0.5 ms after its answer; the instance runs 2 ms + 0.5 ms a row. The sizes of
   * the batches cut, in order, over `answers` answers.
   */
  async function closedLoop(answers: number): Promise<number[]> {
    const { clock, recorder, submit } = setup({ sloMs: 1_000 });
    let sent = 0;
    for (const c of ['c0', 'c1', 'c2', 'c3']) submit(`${c}#${sent++}`);
    await flush();
    for (let done = 0; done < answers; done++) {
      // Timers the batcher set (a wait) fire as the clock moves, until a batch is cut.
      for (let t = 0; recorder.cuts[done] === undefined && t < 100; t++) {
        clock.advance(0.1);
        await flush();
      }
      const cut = recorder.cuts[done];
      if (cut === undefined) throw new Error(`no batch cut after ${done} answers`);
      clock.advance(costMs(cut.labels.length));
      cut.finish();
      await flush();
      clock.advance(0.5);
      for (const label of cut.labels) submit(`${label.split('#')[0]}#${sent++}`);
      await flush();
    }
    return recorder.cuts.map((c) => c.labels.length);
  }

  it('waits for the callers of the batch just answered, so one batch holds them all', async () => {
    const sizes = await closedLoop(30);
    // The first arrivals split the callers (nothing known of their return yet); once the batcher has timed their
    // return (0.5 ms, against the 2 ms a merged run saves), every batch holds all four.
    expect(sizes.slice(-10)).toEqual(Array(10).fill(4));
  });
});

describe('DynamicBatcher: a standing queue ahead of callers with deadlines (standsTooLong)', () => {
  // One instance, batches of 2 at 3 ms, a row running: the k-th request queued expects 1.25 ms (half the running
  // row) plus its pairs ahead; from 6 rows ahead that is 10.25 ms, past half of a 20 ms deadline and beyond two
  // batches, though well within the deadline itself.
  for (const sloMs of [0, 100]) {
    it(`sheds arrivals behind more than two batches that would take over half their deadline (${sloMs === 0 ? 'fixed delays' : 'SLO mode'})`, async () => {
      const { recorder, batcher, submit, results } = setup({ sloMs, maxBatch: 2 });
      submit('running');
      for (let i = 0; i < 10; i++) submit(`q${i}`, { deadlineMs: 20 });
      await flush();
      const shed = [...results.entries()].filter(([, s]) => isShed(s.error)).map(([l]) => l);
      expect(shed).toEqual(['q5', 'q6', 'q7', 'q8', 'q9']);
      expect((results.get('q5')?.error as Error).message).toBe(
        "Request timeout expired: model 'm/1' shed the request before it ran: 5 rows wait ahead of it, so it would not run in the next 2 batches per instance, and it would finish in 10.3 ms, past half of the 20.0 ms to its deadline",
      );
      // The five kept run in pairs, in time.
      for (let i = 0; i < 4; i++) {
        recorder.cuts[i]?.finish();
        await flush();
      }
      expect(recorder.cuts.map((c) => c.labels)).toEqual([['running'], ['q0', 'q1'], ['q2', 'q3'], ['q4']]);
      expect(batcher.computedPastDeadline).toBe(0);
    });
  }

  it('leaves the same queue alone for callers whose deadlines leave room, and for SLO-mode requests due at the SLO', async () => {
    for (const more of [{ deadlineMs: 1_000 }, {}]) {
      const { results, submit } = setup({ sloMs: 100, maxBatch: 2 });
      submit('running');
      for (let i = 0; i < 10; i++) submit(`q${i}`, more);
      await flush();
      expect([...results.values()].filter((s) => s.error !== undefined)).toEqual([]);
    }
  });
});
