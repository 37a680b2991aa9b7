import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ServingError } from '../../core/errors.js';
import { type BatchInput, type Tensor } from '../../core/tensor.js';
import { tensorOf } from '../helpers/joined-tensor.js';
import { type Clock } from '../../gateway/batching/clock.js';
import { type BatchRunner, type BatchSlots, DynamicBatcher } from '../../gateway/batching/dynamic-batcher.js';
import { batchingPolicy } from '../helpers/batching-policy.js';
import { type ExecutionObserver, type ExecutionResult, type InferJob, type JobResult } from '../../gateway/scheduling/execution.js';
import {
  type ModelDynamicBatching,
  type ModelQueuePolicy,
  ModelQueuePolicy_TimeoutAction,
} from '../../proto/gen/model_config.js';

// The batcher shell with a fake clock, fake slots and a fake dispatcher that
// records every execution and finishes it only when the test says so.

const MS = 1_000_000n;

class FakeClock implements Clock {
  ns = 1_000n * MS;
  readonly startEpochMs = 1_700_000_000_000;
  readonly #startNs = this.ns;
  #timers: { at: bigint; fn: () => void }[] = [];

  now(): bigint {
    return this.ns;
  }
  epochMs(): number {
    return this.startEpochMs + Number(this.ns - this.#startNs) / 1e6;
  }
  setTimeout(fn: () => void, ms: number): () => void {
    const timer = { at: this.ns + BigInt(ms) * MS, fn };
    this.#timers.push(timer);
    return () => {
      this.#timers = this.#timers.filter((t) => t !== timer);
    };
  }
  get timers(): number {
    return this.#timers.length;
  }
  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void {
    const target = this.ns + BigInt(Math.round(ms * 1e6));
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= target).sort((a, b) => (a.at < b.at ? -1 : 1))[0];
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.ns = due.at > this.ns ? due.at : this.ns;
      due.fn();
    }
    this.ns = target;
  }
}

class FakeSlots implements BatchSlots<number> {
  busy = 0;
  readonly #listeners = new Set<() => void>();
  /** `instances` below `capacity`: the rest are queue-ahead slots. */
  constructor(
    public capacity: number,
    readonly instances?: number,
  ) {}
  get free(): number {
    return Math.max(0, this.capacity - this.busy);
  }
  get idle(): number {
    return this.instances === undefined ? this.free : Math.max(0, this.instances - this.busy);
  }
  acquire(): number | undefined {
    if (this.busy >= this.capacity) return undefined;
    return ++this.busy;
  }
  release(): void {
    this.busy--;
    for (const l of this.#listeners) l();
  }
  grow(capacity: number): void {
    this.capacity = capacity;
    for (const l of this.#listeners) l();
  }
  onFree(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

interface Execution {
  readonly inputs: readonly BatchInput[];
  readonly outputs: readonly string[];
  readonly deadline: number;
  /** Request ids (first FP32 value of each member's rows). */
  readonly ids: number[];
  /** Answers with y = x and z = -x (or `outputs`), after `waitNs` in the worker for the instance; releases the slot. */
  finish(outputs?: Tensor[], waitNs?: number): void;
  fail(error: Error): void;
}

class FakeDispatcher implements BatchRunner<number> {
  readonly executions: Execution[] = [];
  constructor(readonly slots: FakeSlots) {}
  run(_p: number, inputs: readonly BatchInput[], outputs: readonly string[], deadline: number): Promise<ExecutionResult> {
    return new Promise((resolve, reject) => {
      const x = tensorOf(inputs[0] as BatchInput);
      const values = new Float32Array(x.data.slice().buffer);
      const width = x.shape[1] ?? 1;
      const ids = Array.from({ length: x.shape[0] ?? 0 }, (_, r) => values[r * width] ?? NaN);
      const done = (): void => this.slots.release();
      this.executions.push({
        inputs,
        outputs,
        deadline,
        ids,
        finish: (given, waitNs) => {
          done();
          const z = { ...x, name: 'z', data: new Uint8Array(values.map((v) => -v).buffer) };
          const result = given ?? [{ ...x, name: 'y' }, z];
          resolve({ outputs: result, computeInputNs: 1, computeInferNs: 2, computeOutputNs: 3, workerId: 'w', workerWaitNs: waitNs });
        },
        fail: (error) => {
          done();
          reject(error);
        },
      });
    });
  }
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

function setup(
  options: { capacity?: number; instances?: number; maxBatchSize?: number; batching?: Partial<ModelDynamicBatching> } = {},
) {
  const clock = new FakeClock();
  const slots = new FakeSlots(options.capacity ?? 1, options.instances);
  const dispatcher = new FakeDispatcher(slots);
  const executed: number[] = [];
  const observer: ExecutionObserver = { executed: (rows) => executed.push(rows) };
  const policy = batchingPolicy(options.maxBatchSize ?? 8, options.batching, 100);
  const batcher = new DynamicBatcher({ modelKey: 'mlp/1', slots, dispatcher, policy, observer, clock });
  let next = 1;
  /** A request whose rows are [id, id + 0.5], [id + 1, id + 1.5], … (width 2 unless given). */
  function submit(more: Partial<InferJob> & { rows?: number; width?: number; abort?: AbortController } = {}) {
    const rows = more.rows ?? 1;
    const width = more.width ?? 2;
    const id = next;
    next += rows;
    const values = Array.from({ length: rows * width }, (_, i) => id + Math.floor(i / width) + (i % width) / 2);
    const abort = more.abort ?? new AbortController();
    const job: InferJob = {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [rows, width], data: new Uint8Array(Float32Array.from(values).buffer) }],
      outputs: more.outputs ?? [],
      signal: abort.signal,
      deadline: more.deadline ?? Infinity,
      batchSize: rows,
      ...(more.priority === undefined ? {} : { priority: more.priority }),
      ...(more.timeoutUs === undefined ? {} : { timeoutUs: more.timeoutUs }),
    };
    const settled = track(batcher.enqueue(job));
    return { id, values, abort, ...settled };
  }
  return { clock, slots, dispatcher, executed, batcher, submit };
}

function track(promise: Promise<JobResult>) {
  const state: { result?: JobResult; error?: unknown; settlements: number } = { settlements: 0 };
  promise.then(
    (r) => {
      state.result = r;
      state.settlements++;
    },
    (e: unknown) => {
      state.error = e;
      state.settlements++;
    },
  );
  return { promise, state };
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const floats = (t: Tensor | undefined): number[] => Array.from(new Float32Array(t!.data.slice().buffer));

function expectError(error: unknown, code: status, message: RegExp): void {
  expect(error).toBeInstanceOf(ServingError);
  expect((error as ServingError).code).toBe(code);
  expect((error as ServingError).message).toMatch(message);
}

describe('DynamicBatcher', () => {
  it('batches what queued while the slot was busy and splits the outputs back to each request', async () => {
    const { dispatcher, executed, submit } = setup();
    const first = submit();
    expect(dispatcher.executions.map((e) => e.ids)).toEqual([[1]]);
    const a = submit({ rows: 1 });
    const b = submit({ rows: 3, outputs: ['z'] });
    const c = submit({ rows: 2, outputs: ['y'] });
    expect(dispatcher.executions).toHaveLength(1);
    dispatcher.executions[0]?.finish();
    await flush();
    expect(first.state.result?.outputs.map((t) => t.name)).toEqual(['y', 'z']);
    expect(dispatcher.executions[1]?.ids).toEqual([2, 3, 4, 5, 6, 7]);
    // One member wants every output, so the batch asks for all.
    expect(dispatcher.executions[1]?.outputs).toEqual([]);
    dispatcher.executions[1]?.finish();
    await flush();
    expect(executed).toEqual([1, 6]);
    expect(a.state.result?.outputs.map((t) => [t.name, t.shape, floats(t)])).toEqual([
      ['y', [1, 2], a.values],
      ['z', [1, 2], a.values.map((v) => -v)],
    ]);
    expect(b.state.result?.outputs.map((t) => [t.name, t.shape, floats(t)])).toEqual([['z', [3, 2], b.values.map((v) => -v)]]);
    expect(c.state.result?.outputs.map((t) => [t.name, t.shape, floats(t)])).toEqual([['y', [2, 2], c.values]]);
    expect(a.state.result?.queueNs).toBe(0);
  });

  it('counts the wait in the worker for the instance as queue time, after the wait in the batcher', async () => {
    const { clock, dispatcher, submit } = setup();
    const a = submit();
    const b = submit();
    clock.advance(3);
    dispatcher.executions[0]?.finish(undefined, 2e6);
    await flush();
    dispatcher.executions[1]?.finish();
    await flush();
    expect(a.state.result?.queueNs).toBe(2e6);
    // Cut 3 ms after it arrived; the worker reported no wait.
    expect(b.state.result?.queueNs).toBe(3e6);
  });

  it('asks the worker for the union of requested outputs', async () => {
    const { dispatcher, submit } = setup();
    submit();
    submit({ outputs: ['y'] });
    submit({ outputs: ['z', 'y'] });
    dispatcher.executions[0]?.finish();
    await flush();
    expect(dispatcher.executions[1]?.outputs).toEqual(['y', 'z']);
  });

  it('cuts a batch only when a slot frees', async () => {
    const { dispatcher, slots, submit, batcher } = setup({ capacity: 0 });
    submit();
    submit();
    expect(dispatcher.executions).toHaveLength(0);
    expect(batcher.pending).toBe(2);
    slots.grow(1);
    expect(dispatcher.executions.map((e) => e.ids)).toEqual([[1, 2]]);
    expect(batcher.pending).toBe(0);
  });

  it('waits max_queue_delay for more requests, then sends', () => {
    const { clock, dispatcher, submit } = setup({ batching: { maxQueueDelayMicroseconds: 1000n } });
    submit();
    clock.advance(0.5);
    submit();
    expect(dispatcher.executions).toHaveLength(0);
    clock.advance(0.5);
    expect(dispatcher.executions.map((e) => e.ids)).toEqual([[1, 2]]);
  });

  it('sends at once on reaching a preferred batch size', () => {
    const { dispatcher, submit } = setup({ batching: { maxQueueDelayMicroseconds: 10_000n, preferredBatchSize: [3] } });
    submit();
    submit();
    expect(dispatcher.executions).toHaveLength(0);
    submit();
    expect(dispatcher.executions.map((e) => e.ids)).toEqual([[1, 2, 3]]);
  });

  it('never batches different shapes together, nor lets a later request overtake', async () => {
    const { dispatcher, submit } = setup();
    submit();
    submit({ width: 2 });
    submit({ width: 3 });
    submit({ width: 2 });
    for (let i = 0; i < 3; i++) {
      dispatcher.executions[i]?.finish();
      await flush();
    }
    expect(dispatcher.executions.map((e) => [e.ids, e.inputs[0]?.shape])).toEqual([
      [[1], [1, 2]],
      [[2], [1, 2]],
      [[3], [1, 3]],
      [[4], [1, 2]],
    ]);
  });

  it('rejects at once when the level’s queue is full: UNAVAILABLE "Exceeds maximum queue size"', async () => {
    const { submit, batcher } = setup({ capacity: 0, batching: { defaultQueuePolicy: queuePolicy({ maxQueueSize: 2 }) } });
    submit();
    submit();
    const third = submit();
    await flush();
    expectError(third.state.error, status.UNAVAILABLE, /^Exceeds maximum queue size/);
    expect(batcher.pending).toBe(2);
  });

  it('bounds a queue configured as unbounded with the bound given', async () => {
    const { submit } = setup({ capacity: 0 });
    for (let i = 0; i < 100; i++) submit();
    const over = submit();
    await flush();
    expectError(over.state.error, status.UNAVAILABLE, /Exceeds maximum queue size/);
  });

  it('rejects a request whose queue timeout passes (REJECT): UNAVAILABLE "Request timeout expired", never run', async () => {
    const { clock, dispatcher, submit, slots } = setup({
      capacity: 0,
      batching: { defaultQueuePolicy: queuePolicy({ defaultTimeoutMicroseconds: 1000n }) },
    });
    const a = submit();
    clock.advance(0.9);
    const b = submit();
    clock.advance(0.2);
    await flush();
    expectError(a.state.error, status.UNAVAILABLE, /^Request timeout expired/);
    expect(b.state.settlements).toBe(0);
    slots.grow(1);
    expect(dispatcher.executions.map((e) => e.ids)).toEqual([[2]]);
  });

  it('lets a request shorten the timeout only when the policy allows overrides', async () => {
    const allowed = setup({
      capacity: 0,
      batching: { defaultQueuePolicy: queuePolicy({ defaultTimeoutMicroseconds: 10_000n, allowTimeoutOverride: true }) },
    });
    const short = allowed.submit({ timeoutUs: 500 });
    const long = allowed.submit({ timeoutUs: 50_000 });
    allowed.clock.advance(1);
    await flush();
    expectError(short.state.error, status.UNAVAILABLE, /Request timeout expired/);
    expect(long.state.settlements).toBe(0);
    allowed.clock.advance(10);
    await flush();
    expectError(long.state.error, status.UNAVAILABLE, /Request timeout expired/);

    const fixed = setup({ capacity: 0, batching: { defaultQueuePolicy: queuePolicy({ defaultTimeoutMicroseconds: 10_000n }) } });
    const ignored = fixed.submit({ timeoutUs: 500 });
    fixed.clock.advance(1);
    await flush();
    expect(ignored.state.settlements).toBe(0);
  });

  it('moves a timed-out request behind the others of its level (DELAY) and still runs it', async () => {
    const { clock, dispatcher, submit } = setup({
      maxBatchSize: 2,
      batching: {
        defaultQueuePolicy: queuePolicy({ defaultTimeoutMicroseconds: 1000n, timeoutAction: ModelQueuePolicy_TimeoutAction.DELAY }),
      },
    });
    submit(); // occupies the slot
    const late = submit();
    clock.advance(2);
    submit();
    submit();
    dispatcher.executions[0]?.finish();
    await flush();
    expect(dispatcher.executions[1]?.ids).toEqual([3, 4]);
    dispatcher.executions[1]?.finish();
    await flush();
    expect(dispatcher.executions[2]?.ids).toEqual([2]);
    dispatcher.executions[2]?.finish();
    await flush();
    expect(late.state.result?.outputs[0]?.name).toBe('y');
  });

  it('takes a cancelled request out of the queue at once: CANCELLED, never executed', async () => {
    const { dispatcher, submit, batcher } = setup();
    submit();
    const cancelled = submit();
    const kept = submit();
    cancelled.abort.abort();
    await flush();
    expectError(cancelled.state.error, status.CANCELLED, /cancelled/);
    expect(batcher.pending).toBe(1);
    dispatcher.executions[0]?.finish();
    await flush();
    expect(dispatcher.executions.map((e) => e.ids)).toEqual([[1], [3]]);
    dispatcher.executions[1]?.finish();
    await flush();
    expect(kept.state.result).toBeDefined();
    expect(cancelled.state.settlements).toBe(1);
  });

  it('answers DEADLINE_EXCEEDED for a request whose deadline passed while queued, and never runs it', async () => {
    const { clock, dispatcher, submit } = setup();
    submit();
    const aborted = submit({ deadline: clock.epochMs() + 5 });
    const silent = submit({ deadline: clock.epochMs() + 5 });
    clock.advance(10);
    aborted.abort.abort(); // what the call's deadline timer does
    await flush();
    expectError(aborted.state.error, status.DEADLINE_EXCEEDED, /deadline exceeded/);
    // No abort came for `silent`: it is dropped when the next batch is cut.
    const fresh = submit();
    dispatcher.executions[0]?.finish();
    await flush();
    expectError(silent.state.error, status.DEADLINE_EXCEEDED, /deadline exceeded/);
    expect(dispatcher.executions.map((e) => e.ids)).toEqual([[1], [fresh.id]]);
  });

  it('refuses a request already past its deadline or cancelled', async () => {
    const { clock, dispatcher, submit } = setup();
    const late = submit({ deadline: clock.epochMs() - 1 });
    const abort = new AbortController();
    abort.abort();
    const gone = submit({ abort });
    await flush();
    expectError(late.state.error, status.DEADLINE_EXCEEDED, /deadline/);
    expectError(gone.state.error, status.CANCELLED, /cancelled/);
    expect(dispatcher.executions).toHaveLength(0);
  });

  it('gives the batch the latest member deadline', async () => {
    const { clock, dispatcher, submit } = setup();
    submit();
    submit({ deadline: clock.epochMs() + 50 });
    submit({ deadline: clock.epochMs() + 90 });
    dispatcher.executions[0]?.finish();
    await flush();
    expect(dispatcher.executions[1]?.deadline).toBe(clock.epochMs() + 90);
  });

  it('fails every member, exactly once, with the execution’s error', async () => {
    const { dispatcher, submit, executed } = setup();
    submit();
    const members = [submit(), submit({ rows: 2 }), submit()];
    dispatcher.executions[0]?.finish();
    await flush();
    const boom = new ServingError(status.UNAVAILABLE, 'worker w1 went away');
    dispatcher.executions[1]?.fail(boom);
    await flush();
    for (const m of members) {
      expect(m.state.error).toBe(boom);
      expect(m.state.settlements).toBe(1);
    }
    expect(executed).toEqual([1]);
  });

  it('fails every member with INTERNAL when the worker returns the wrong number of rows', async () => {
    const { dispatcher, submit } = setup();
    submit();
    const members = [submit(), submit()];
    dispatcher.executions[0]?.finish();
    await flush();
    dispatcher.executions[1]?.finish([{ name: 'y', datatype: 'FP32', shape: [3, 2], data: new Uint8Array(24) }]);
    await flush();
    for (const m of members) expectError(m.state.error, status.INTERNAL, /expected 2 rows/);
  });

  it('serves higher priority levels first; an out-of-range priority goes to the default level, as in Triton', async () => {
    const { dispatcher, submit } = setup({ maxBatchSize: 1, batching: { priorityLevels: 2n, defaultPriorityLevel: 2n } });
    submit();
    submit({ priority: 2 });
    submit(); // default level 2
    submit({ priority: 1 });
    const outOfRange = submit({ priority: 3 });
    await flush();
    for (let i = 0; i < 4; i++) {
      dispatcher.executions[i]?.finish();
      await flush();
    }
    expect(dispatcher.executions.map((e) => e.ids)).toEqual([[1], [4], [2], [3], [5]]);
    expect(outOfRange.state.error).toBeUndefined();
  });

  it('sends a batch into a queue-ahead slot only when it is as large as the last one cut', async () => {
    const { dispatcher, submit } = setup({ capacity: 2, instances: 1, maxBatchSize: 8 });
    submit({ rows: 3 });
    await flush();
    expect(dispatcher.executions.map((e) => e.ids)).toEqual([[1, 2, 3]]);
    submit();
    submit();
    await flush();
    // The instance is busy: two rows would be frozen early, so they wait to grow.
    expect(dispatcher.executions).toHaveLength(1);
    submit();
    await flush();
    // Three rows, as many as the running batch: they go ahead.
    expect(dispatcher.executions.map((e) => e.ids)).toEqual([[1, 2, 3], [4, 5, 6]]);
    dispatcher.executions[0]?.finish();
    submit();
    await flush();
    // The queued-ahead batch now runs, so the instance is still busy.
    expect(dispatcher.executions).toHaveLength(2);
    dispatcher.executions[1]?.finish();
    await flush();
    // The instance is idle again: the lone request goes at once.
    expect(dispatcher.executions.map((e) => e.ids)).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
  });

  it('answers in cut order with preserve_ordering, even when a later batch finishes first', async () => {
    const { dispatcher, submit } = setup({ capacity: 2, batching: { preserveOrdering: true } });
    const a = submit();
    const b = submit();
    dispatcher.executions[1]?.finish();
    await flush();
    expect(b.state.settlements).toBe(0);
    dispatcher.executions[0]?.finish();
    await flush();
    expect([a.state.settlements, b.state.settlements]).toEqual([1, 1]);
  });

  it('stop() rejects queued requests with the reason and waits for running batches', async () => {
    const timed = queuePolicy({ defaultTimeoutMicroseconds: 1000n });
    const { clock, dispatcher, submit, batcher } = setup({ batching: { defaultQueuePolicy: timed } });
    const running = submit();
    const queued = submit();
    const reason = new ServingError(status.UNAVAILABLE, 'model is unloading');
    let stopped = false;
    const stopping = batcher.stop(reason).then(() => (stopped = true));
    await flush();
    expect(queued.state.error).toBe(reason);
    expect(stopped).toBe(false);
    expect(clock.timers).toBe(0);
    dispatcher.executions[0]?.finish();
    await stopping;
    expect(running.state.result).toBeDefined();
    await expect(batcher.enqueue({ ...jobLike(), signal: new AbortController().signal })).rejects.toBe(reason);
  });
});

function jobLike(): InferJob {
  return { inputs: [], outputs: [], signal: new AbortController().signal, deadline: Infinity, batchSize: 1 };
}
