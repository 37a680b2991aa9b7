import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ServingError } from '../../core/errors.js';
import { type BatchInput } from '../../core/tensor.js';
import { tensorOf } from '../helpers/joined-tensor.js';
import { type Clock } from '../../gateway/batching/clock.js';
import { type BatchRunner, type BatchSlots, DynamicBatcher } from '../../gateway/batching/dynamic-batcher.js';
import { type FairEntry, FairQueue, tenantQueueBound } from '../../gateway/batching/fair-queue.js';
import { type ExecutionResult, type InferJob, type JobResult, type JobTenant } from '../../gateway/scheduling/execution.js';
import { batchingPolicy } from '../helpers/batching-policy.js';

// Weighted deficit round robin between tenants inside the batcher, driven by
// a fake clock, one slot and a dispatcher that finishes a batch only when the
// test says so: every assertion is about order and counts, none about time.

const MS = 1_000_000n;

class FakeClock implements Clock {
  ns = 1_000n * MS;
  now(): bigint {
    return this.ns;
  }
  epochMs(): number {
    return 1_700_000_000_000 + Number(this.ns / MS);
  }
  setTimeout(): () => void {
    return () => undefined;
  }
}

class OneSlot implements BatchSlots<number> {
  busy = false;
  readonly #listeners = new Set<() => void>();
  get free(): number {
    return this.busy ? 0 : 1;
  }
  get idle(): number {
    return this.free;
  }
  acquire(): number | undefined {
    if (this.busy) return undefined;
    this.busy = true;
    return 1;
  }
  release(): void {
    this.busy = false;
    for (const l of this.#listeners) l();
  }
  onFree(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** Records each batch as the labels of its rows ("a1", "b1", …) and finishes it on demand. */
class Recorder implements BatchRunner<number> {
  readonly batches: string[][] = [];
  readonly #pending: (() => void)[] = [];
  constructor(
    readonly slot: OneSlot,
    readonly labels: Map<number, string>,
  ) {}
  run(_p: number, inputs: readonly BatchInput[]): Promise<ExecutionResult> {
    const x = tensorOf(inputs[0] as BatchInput);
    const ids = Array.from(new Float32Array(x.data.slice().buffer));
    this.batches.push([...new Set(ids.map((id) => this.labels.get(id) ?? '?'))]);
    return new Promise((resolve) => {
      this.#pending.push(() => {
        this.slot.release();
        resolve({ outputs: [{ ...x, name: 'y' }], computeInputNs: 0, computeInferNs: 1000, computeOutputNs: 0, workerId: 'w' });
      });
    });
  }
  /** Finishes the oldest running batch. */
  finish(): void {
    this.#pending.shift()?.();
  }
}

const tenant = (name: string, weight: number, queueShare = 0.5): JobTenant => ({ name, weight, queueShare });

function setup(maxBatchSize: number, maxQueueSize = 1000, priorityLevels = 0n) {
  const clock = new FakeClock();
  const slot = new OneSlot();
  const labels = new Map<number, string>();
  const recorder = new Recorder(slot, labels);
  const policy = batchingPolicy(maxBatchSize, { priorityLevels }, maxQueueSize);
  const batcher = new DynamicBatcher({ modelKey: 'm/1', slots: slot, dispatcher: recorder, policy, clock });
  let next = 1;
  const counts = new Map<string, number>();
  const results: { label: string; promise: Promise<JobResult> }[] = [];
  /** A request of `rows` rows from tenant `t`, labelled by tenant and sequence ("a3"). */
  const submit = (t: JobTenant, rows = 1, priority?: number): Promise<JobResult> => {
    const n = (counts.get(t.name) ?? 0) + 1;
    counts.set(t.name, n);
    const label = `${t.name}${n}`;
    const ids = Array.from({ length: rows }, () => next++);
    for (const id of ids) labels.set(id, label);
    const job: InferJob = {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [rows, 1], data: new Uint8Array(Float32Array.from(ids).buffer) }],
      outputs: [],
      signal: new AbortController().signal,
      deadline: Infinity,
      batchSize: rows,
      tenant: t,
      ...(priority === undefined ? {} : { priority }),
    };
    const promise = batcher.enqueue(job);
    promise.catch(() => undefined);
    results.push({ label, promise });
    return promise;
  };
  /** Finishes batches until none is running and nothing is queued. */
  const runAll = async (): Promise<void> => {
    while (slot.busy) {
      recorder.finish();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { batcher, recorder, submit, runAll, results };
}

const A = tenant('a', 1);
const B = tenant('b', 1);

describe('fair batching between tenants', () => {
  it("a flood from one tenant cannot starve another: the other's requests interleave from the next batch on", async () => {
    const { recorder, submit, runAll } = setup(4);
    for (let i = 0; i < 40; i++) void submit(A); // a1 runs at once; a2…a40 wait
    for (let i = 0; i < 5; i++) void submit(B);
    await runAll();
    expect(recorder.batches.slice(0, 4)).toEqual([['a1'], ['a2', 'b1', 'a3', 'b2'], ['a4', 'b3', 'a5', 'b4'], ['a6', 'b5', 'a7', 'a8']]);
    // First come, first served would have put b1 behind all 39 waiting requests of a.
    expect(recorder.batches.flat()).toHaveLength(45);
  });

  it('shares rows by weight while both tenants have requests waiting', async () => {
    const heavy = tenant('h', 3);
    const light = tenant('l', 1);
    const { recorder, submit, runAll } = setup(8);
    void submit(heavy); // occupies the slot
    for (let i = 0; i < 40; i++) {
      void submit(heavy);
      void submit(light);
    }
    await runAll();
    // While both are backlogged every batch of 8 rows holds 6 of h and 2 of l.
    for (const batch of recorder.batches.slice(1, 6)) {
      expect(batch.filter((x) => x.startsWith('h'))).toHaveLength(6);
      expect(batch.filter((x) => x.startsWith('l'))).toHaveLength(2);
    }
  });

  it('counts rows, not requests: a tenant sending 4-row requests gets the same rows as one sending 1-row requests', async () => {
    const { recorder, submit, runAll } = setup(8);
    void submit(A); // occupies the slot
    for (let i = 0; i < 10; i++) void submit(A, 4);
    for (let i = 0; i < 40; i++) void submit(B, 1);
    await runAll();
    const rows = (label: string): number => (label.startsWith('a') ? 4 : 1);
    for (const batch of recorder.batches.slice(1, 5)) {
      const a = batch.filter((x) => x.startsWith('a')).reduce((n, x) => n + rows(x), 0);
      const b = batch.filter((x) => x.startsWith('b')).length;
      expect(a + b).toBe(8);
      expect(a).toBe(4);
    }
  });

  it("a flood cannot fill the queue: each tenant holds at most its share, and the other's share stays open", async () => {
    const { submit, results, runAll } = setup(4, 10);
    void submit(A); // a1 runs at once, outside the queue
    for (let i = 0; i < 8; i++) void submit(A); // a2…a6 fill a's half of 10; a7…a9 are refused
    for (let i = 0; i < 5; i++) void submit(B); // b's half is still free
    await runAll();
    const settled = await Promise.allSettled(results.map((r) => r.promise));
    const refused = results.filter((_, i) => settled[i]?.status === 'rejected').map((r) => r.label);
    expect(refused).toEqual(['a7', 'a8', 'a9']);
    const first = settled.find((s) => s.status === 'rejected');
    expectServingError(
      first?.status === 'rejected' ? first.reason : undefined,
      status.UNAVAILABLE,
      /^Exceeds maximum queue size: model 'm\/1' priority level 1: tenant 'a' holds 5 of its 5 requests \(its share of 10\)$/,
    );
  });

  it('fairness holds within each priority level; levels stay strict', async () => {
    const { recorder, submit, runAll } = setup(2, 1000, 2n);
    void submit(A); // occupies the slot
    for (let i = 0; i < 4; i++) void submit(A, 1, 1);
    void submit(B, 1, 2);
    for (let i = 0; i < 3; i++) void submit(B, 1, 1);
    await runAll();
    // Level 1 interleaves a and b; b's level-2 request comes after all of level 1.
    expect(recorder.batches.slice(1)).toEqual([['a2', 'b2'], ['a3', 'b3'], ['a4', 'b4'], ['a5', 'b1']]);
  });
});

describe('tenant queue bound', () => {
  it("is the tenant's share of the level's bound, at least 1", () => {
    expect(tenantQueueBound(10, 0.5)).toBe(5);
    expect(tenantQueueBound(10, 1)).toBe(10);
    expect(tenantQueueBound(10, 0.01)).toBe(1);
    expect(tenantQueueBound(4096, 0.25)).toBe(1024);
  });
});

interface Item extends FairEntry<Item> {
  readonly name: string;
}

describe('FairQueue', () => {
  const item = (q: FairQueue<Item>, tenantName: string, weight: number, name: string, rows = 1): Item => {
    const e: Item = { name, rows, lane: q.lane(tenantName, weight), round: 0, prev: undefined, next: undefined, list: undefined };
    q.push(e);
    return e;
  };
  const order = (q: FairQueue<Item>): string[] => [...q].map((e) => e.name);

  it('reads in round-robin order without changing anything; one tenant is a FIFO', () => {
    const q = new FairQueue<Item>();
    item(q, 'a', 1, 'a1');
    item(q, 'a', 1, 'a2');
    expect(order(q)).toEqual(['a1', 'a2']);
    item(q, 'b', 1, 'b1');
    item(q, 'b', 1, 'b2');
    expect(order(q)).toEqual(['a1', 'b1', 'a2', 'b2']);
    expect(order(q)).toEqual(['a1', 'b1', 'a2', 'b2']);
    expect(q.size).toBe(4);
  });

  it("a changed weight (a reloaded tenants file) applies to the tenant's lane from then on", () => {
    const q = new FairQueue<Item>();
    item(q, 'a', 1, 'a1');
    item(q, 'b', 1, 'b1');
    expect(q.lane('a', 3)).toBe(q.lane('a', 3));
    item(q, 'a', 3, 'a2');
    item(q, 'a', 3, 'a3');
    item(q, 'b', 1, 'b2');
    // a's first request was queued at weight 1 (round 0); its next two fit its new quantum of 3 rows in round 1, beside b's one.
    expect(order(q)).toEqual(['a1', 'b1', 'a2', 'a3', 'b2']);
    expect(() => q.lane('a', 0)).toThrow(RangeError);
  });

  it('a tenant whose queue emptied joins again at the end of the current round, without its old deficit', () => {
    const q = new FairQueue<Item>();
    const a = [item(q, 'a', 1, 'a1'), item(q, 'a', 1, 'a2'), item(q, 'a', 1, 'a3')];
    const b1 = item(q, 'b', 1, 'b1');
    for (const e of [a[0], b1, a[1]]) {
      q.served(e as Item);
      q.remove(e as Item);
    }
    // b left at round 0; a2 was served in round 1: b's next request waits behind nothing but a's round 1.
    const b2 = item(q, 'b', 1, 'b2');
    expect(b2.round).toBe(1);
    expect(order(q)).toEqual(['b2', 'a3']);
  });

  it('cancelled requests leave without disturbing the order of the rest', () => {
    const q = new FairQueue<Item>();
    const a1 = item(q, 'a', 1, 'a1');
    item(q, 'a', 1, 'a2');
    const b1 = item(q, 'b', 1, 'b1');
    item(q, 'b', 1, 'b2');
    expect(q.remove(b1)).toBe(true);
    expect(q.remove(b1)).toBe(false);
    q.remove(a1);
    expect(order(q)).toEqual(['a2', 'b2']);
  });

  it('refuses a weight that is not a positive number', () => {
    expect(() => new FairQueue<Item>().lane('a', 0)).toThrow(RangeError);
  });
});

export function expectServingError(error: unknown, code: status, message: RegExp): void {
  expect(error).toBeInstanceOf(ServingError);
  expect((error as ServingError).code).toBe(code);
  expect((error as ServingError).message).toMatch(message);
}
