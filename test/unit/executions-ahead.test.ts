import { describe, expect, it } from 'vitest';
import { AHEAD_BUDGET_NS, executionsAhead, MAX_EXECUTIONS_AHEAD_PER_INSTANCE } from '../../core/pipelining.js';
import { DirectScheduler } from '../../gateway/scheduling/direct-scheduler.js';
import { Dispatcher } from '../../gateway/scheduling/dispatcher.js';
import { type InferJob } from '../../gateway/scheduling/execution.js';
import { InstanceSlots } from '../../gateway/scheduling/instance-slots.js';
import { type WorkerConnection } from '../../gateway/scheduling/worker-connection.js';
import { FakeWorker } from '../helpers/fake-worker.js';

// How many executions a gateway sends ahead per instance: one for long runs
// and batching models, more for short runs up to a budget of queued compute,
// and never more than the worker takes from this gateway.

const MAX = MAX_EXECUTIONS_AHEAD_PER_INSTANCE;

describe('executionsAhead', () => {
  it('sends one ahead until a run was timed', () => {
    expect(executionsAhead(0)).toBe(1);
    expect(executionsAhead(Number.NaN)).toBe(1);
  });

  it('fills the budget of queued compute with short runs, up to the most any worker takes', () => {
    expect(executionsAhead(10_000)).toBe(MAX);
    expect(executionsAhead(AHEAD_BUDGET_NS / 3)).toBe(3);
    expect(executionsAhead(AHEAD_BUDGET_NS / 3 + 1)).toBe(2);
  });

  it('keeps one ahead for runs as long as the budget or longer', () => {
    expect(executionsAhead(AHEAD_BUDGET_NS)).toBe(1);
    expect(executionsAhead(50 * AHEAD_BUDGET_NS)).toBe(1);
  });
});

describe('InstanceSlots.setAhead', () => {
  it('grows each worker within its own limit, and frees the new slots to the schedulers', () => {
    const slots = new InstanceSlots();
    slots.add(new FakeWorker(0n, MAX) as unknown as WorkerConnection, 2);
    slots.add({ endpoint: { id: 'w1' } } as unknown as WorkerConnection, 1); // registered: no limit of its own given
    expect(slots.free).toBe(2 * 2 + 2);
    let told = 0;
    slots.onFree(() => told++);
    slots.setAhead(3);
    expect(slots.free).toBe(2 * 4 + 2);
    expect(told).toBe(1);
    slots.setAhead(3);
    expect(told).toBe(1);
  });

  it('shrinking takes back no slot in use: the excess drains as executions end', () => {
    const slots = new InstanceSlots();
    slots.add(new FakeWorker(0n, MAX) as unknown as WorkerConnection, 1);
    slots.setAhead(MAX);
    const taken = Array.from({ length: 1 + MAX }, () => slots.acquire()).filter((p) => p !== undefined);
    expect(taken).toHaveLength(1 + MAX);
    slots.setAhead(1);
    expect(slots.free).toBe(0);
    for (const p of taken.slice(0, MAX - 1)) slots.release(p);
    expect(slots.free).toBe(0); // 2 still out, capacity 2
    slots.release(taken[MAX - 1] as (typeof taken)[number]);
    expect(slots.free).toBe(1);
    expect(slots.acquire()).toBeDefined();
  });
});

describe('DirectScheduler sends short runs ahead', () => {
  function setup(computeNs: bigint, maxAhead?: number) {
    const worker = new FakeWorker(computeNs, maxAhead);
    const slots = new InstanceSlots();
    slots.add(worker as unknown as WorkerConnection, 1);
    const scheduler = new DirectScheduler({ modelKey: 'm/1', slots, dispatcher: new Dispatcher('m/1', slots), maxQueueSize: 100 });
    const submit = (name: string): Promise<unknown> => {
      const job: InferJob = {
        inputs: [{ name, datatype: 'FP32', shape: [1], data: new Uint8Array(4) }],
        outputs: [],
        signal: new AbortController().signal,
        deadline: Infinity,
        batchSize: 1,
      };
      return scheduler.enqueue(job);
    };
    return { worker, submit };
  }

  it('a worker the gateway started gets up to 1 + MAX executions per instance once runs are short', async () => {
    const { worker, submit } = setup(20_000n, MAX);
    const calls = Array.from({ length: 30 }, (_, i) => submit(`r${i}`));
    expect(worker.inFlight).toBe(2); // cold: one ahead
    await worker.finishOne(); // 20 µs runs: the budget holds more than the limit
    expect(worker.inFlight).toBe(1 + MAX);
    await worker.finishAll();
    await Promise.all(calls);
    expect(worker.ran).toEqual(Array.from({ length: 30 }, (_, i) => `r${i}`));
  });

  it('long runs keep one ahead', async () => {
    const { worker, submit } = setup(5_000_000n, MAX);
    const calls = Array.from({ length: 10 }, (_, i) => submit(`r${i}`));
    await worker.finishOne();
    await worker.finishOne();
    expect(worker.inFlight).toBe(2);
    await worker.finishAll();
    await Promise.all(calls);
  });

  it('a registered worker, shared with gateways this one does not know of, gets one ahead whatever the runs', async () => {
    const { worker, submit } = setup(20_000n);
    const calls = Array.from({ length: 10 }, (_, i) => submit(`r${i}`));
    await worker.finishOne();
    expect(worker.inFlight).toBe(2);
    await worker.finishAll();
    await Promise.all(calls);
  });
});
