import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { EXECUTIONS_AHEAD_PER_INSTANCE, executionSlots } from '../../../core/pipelining.js';
import { type ModelInstance, THREAD_PIPELINE_DEPTH } from '../../../worker/model-instance.js';
import { ModelHost, type LoadSpec } from '../../../worker/model-host.js';
import { type BatchOutput, type BatchTask, type SessionInfo, type ThreadInit } from '../../../worker/thread-protocol.js';

// ModelHost's capacity, queueing, unload and replace logic, with fake
// instances whose runs finish only when the test says so (no threads, no ORT,
// no sleeps). A run starts a microtask or more after execute() is called, so
// tests wait for it with nthRun(); flush() only backs up "has not started".

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every pending promise reaction run (one macrotask turn). */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const INFO: SessionInfo = {
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1], dimNames: ['batch'] }],
  outputs: [{ name: 'y', datatype: 'FP32', shape: [-1], dimNames: ['batch'] }],
  executionProvider: 'cpu',
  fallbackReason: '',
};
const OUTPUT: BatchOutput = { outputs: [], taskStartNs: 1n, runStartNs: 1n, runEndNs: 2n, heldNs: 1 };

/** A batch told apart from others by its tag (its only requested output). */
function task(tag: string): BatchTask {
  return { inputs: [], outputs: [tag] };
}

/** A distinct result per tag, so a test can tell whose run answered a call. */
function output(tag: string): BatchOutput {
  return { outputs: [{ name: tag, datatype: 'FP32', shape: [0], data: new ArrayBuffer(0) }], taskStartNs: 1n, runStartNs: 1n, runEndNs: 2n, heldNs: 1 };
}

interface Run {
  readonly tag: string;
  settled: boolean;
  resolve(value: BatchOutput): void;
  reject(error: unknown): void;
}

class FakeInstance implements ModelInstance {
  readonly info = INFO;
  readonly runs: Run[] = [];
  closed = false;
  #running = 0;
  /** Runs handed over but not started: each starts when the one before ends. */
  readonly #waiting: Array<() => void> = [];
  readonly #runStarted: Array<() => void> = [];

  constructor(
    readonly init: ThreadInit,
    /** `label:tag` of every run started on any instance, in order. */
    readonly log: string[],
  ) {}

  /**
   * Like the real thread: it may be handed THREAD_PIPELINE_DEPTH runs at
   * once, and starts each only when the one before it has ended.
   */
  run(batch: BatchTask): Promise<BatchOutput> {
    if (this.closed) throw new Error(`${this.init.label}: run after close`);
    if (this.#running >= THREAD_PIPELINE_DEPTH) throw new Error(`${this.init.label}: handed more runs than its thread takes`);
    const d = deferred<BatchOutput>();
    const tag = batch.outputs[0] ?? '';
    const settle = (): void => {
      if (!run.settled) {
        this.#running--;
        this.#waiting.shift()?.();
      }
      run.settled = true;
    };
    const run: Run = {
      tag,
      settled: false,
      resolve: (value) => {
        settle();
        d.resolve(value);
      },
      reject: (error) => {
        settle();
        d.reject(error);
      },
    };
    const start = (): void => {
      this.runs.push(run);
      this.log.push(`${this.init.label}:${tag}`);
      for (const notify of this.#runStarted.splice(0)) notify();
    };
    this.#running++;
    if (this.#running === 1) start();
    else this.#waiting.push(start);
    return d.promise;
  }

  /** The n-th run on this instance (0-based), once it has started. */
  async nthRun(n: number): Promise<Run> {
    for (;;) {
      const run = this.runs[n];
      if (run !== undefined) return run;
      await new Promise<void>((resolve) => this.#runStarted.push(resolve));
    }
  }

  async close(): Promise<void> {
    if (this.#running > 0) throw new Error(`${this.init.label}: closed with a run in flight`);
    this.closed = true;
  }
}

function setup(cores = 8, failLabels: readonly string[] = [], queuedPerInstance?: number) {
  const started: FakeInstance[] = [];
  const log: string[] = [];
  const host = new ModelHost({
    cores,
    ...(queuedPerInstance === undefined ? {} : { queuedPerInstance }),
    logger: { debug: () => undefined, info: () => undefined, warn: () => undefined },
    startInstances: (inits) =>
      inits.map(async (init) => {
        if (failLabels.includes(init.label)) throw new Error(`instance ${init.label}: broken`);
        const instance = new FakeInstance(init, log);
        started.push(instance);
        return instance;
      }),
  });
  /** started[i], which the test expects to exist. */
  const instance = (i: number): FakeInstance => {
    const found = started[i];
    if (found === undefined) throw new Error(`instance ${i} was not started`);
    return found;
  };
  return { host, started, instance, log };
}

function spec(modelKey: string, instanceCount: number, intraOpNumThreads?: number): LoadSpec {
  return {
    modelKey,
    model: { path: '/models/m.onnx' },
    instanceCount,
    device: { kind: 'cpu' },
    options: { intraOpNumThreads, interOpNumThreads: 1, graphOptimizationLevel: 'all', enableCpuMemArena: true, executionMode: 'sequential', enableMemPattern: true },
  };
}


const TASK = task('x');

const busyMessage = (count: number): RegExp =>
  new RegExp(`all ${count} instance\\(s\\) are busy and their queue is full; a worker accepts at most ${executionSlots(count)} `);

/** Resolves every run still in flight, and those that start after, until no call is left waiting. */
async function finishAll(instances: readonly FakeInstance[]): Promise<void> {
  for (;;) {
    const open = instances.flatMap((i) => i.runs.filter((r) => !r.settled));
    if (open.length === 0) return;
    for (const run of open) run.resolve(output(run.tag));
    await flush();
  }
}

describe('ModelHost', () => {
  it('runs at most instance_count batches at once, queues the next ones and rejects the rest with RESOURCE_EXHAUSTED', async () => {
    const { host, started, instance, log } = setup();
    await host.load(spec('m/1', 2));
    const queueLength = 2 * EXECUTIONS_AHEAD_PER_INSTANCE;
    expect(executionSlots(2)).toBe(2 + queueLength);
    // 2 run, queueLength wait, the one after that is refused at once.
    const calls = Array.from({ length: executionSlots(2) }, (_, i) => host.execute('m/1', task(`t${i}`), []));
    await expect(host.execute('m/1', task('over'), [])).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      message: expect.stringMatching(busyMessage(2)),
    });
    await Promise.all([instance(0).nthRun(0), instance(1).nthRun(0)]);
    await flush();
    expect(log).toEqual(['m/1#0:t0', 'm/1#1:t1']);
    expect(host.status()).toMatchObject([{ modelKey: 'm/1', instanceCount: 2, busyInstances: 2, executionProvider: 'cpu', runs: 4n, mergedRuns: 0n, connections: 1 }]);

    // The waiting calls were handed to the threads as their next runs (t2 to
    // instance 0, t3 to instance 1); a run ending starts that one and makes
    // room for exactly one more.
    (await instance(1).nthRun(0)).resolve(output('t1'));
    await expect(calls[1]).resolves.toEqual(output('t1'));
    expect((await instance(1).nthRun(1)).tag).toBe('t3');
    const extra = host.execute('m/1', task('extra'), []);
    await expect(host.execute('m/1', task('over'), [])).rejects.toMatchObject({ code: status.RESOURCE_EXHAUSTED });
    expect(host.status()[0]?.busyInstances).toBe(2);

    await finishAll(started);
    const results = await Promise.all([...calls, extra]);
    expect(results).toEqual([...calls.map((_, i) => output(`t${i}`)), output('extra')]);
    expect(log).toHaveLength(calls.length + 1);
    expect(host.status()[0]?.busyInstances).toBe(0);
  });

  it("hands each busy instance's thread one next run; later ones wait and go to the instance that frees first, oldest first", async () => {
    const { host, instance, log } = setup(8, [], 3);
    await host.load(spec('m/1', 2));
    const running = [host.execute('m/1', task('a'), []), host.execute('m/1', task('b'), [])];
    // n0, n1 go to the threads at once as their next runs; w0… wait in the host.
    const next = [host.execute('m/1', task('n0'), []), host.execute('m/1', task('n1'), [])];
    const waiting = Array.from({ length: 2 * (1 + 3) - 4 }, (_, i) => host.execute('m/1', task(`w${i}`), []));
    const a = await instance(0).nthRun(0);
    const b = await instance(1).nthRun(0);
    await flush();
    expect(log).toEqual(['m/1#0:a', 'm/1#1:b']);

    // Instance 1 frees first: its next run (n1) starts, and the oldest waiter takes its place in the thread.
    b.resolve(output('b'));
    const n1 = await instance(1).nthRun(1);
    expect(n1.tag).toBe('n1');
    n1.resolve(output('n1'));
    expect((await instance(1).nthRun(2)).tag).toBe('w0');
    await flush();
    expect(log).toEqual(['m/1#0:a', 'm/1#1:b', 'm/1#1:n1', 'm/1#1:w0']);

    // Then instance 0: n0 runs there; the next waiter in line follows it.
    a.resolve(output('a'));
    expect((await instance(0).nthRun(1)).tag).toBe('n0');

    await finishAll([instance(0), instance(1)]);
    await expect(Promise.all(running)).resolves.toEqual([output('a'), output('b')]);
    await expect(Promise.all(next)).resolves.toEqual([output('n0'), output('n1')]);
    await expect(Promise.all(waiting)).resolves.toEqual(waiting.map((_, i) => output(`w${i}`)));
    const order = log.filter((entry) => entry.includes(':w')).map((entry) => entry.split(':')[1]);
    expect(order).toEqual(waiting.map((_, i) => `w${i}`));
  });

  it('answers NOT_FOUND for an unknown key', async () => {
    const { host } = setup();
    await expect(host.execute('nope/1', TASK, [])).rejects.toMatchObject({ code: status.NOT_FOUND });
    expect(() => host.info('nope/1')).toThrow(/not loaded/);
    await expect(host.unload('nope/1')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('maps a failed run to INTERNAL with the ORT message and frees the instance', async () => {
    const { host, instance } = setup();
    await host.load(spec('m/1', 1));
    const run = host.execute('m/1', TASK, []);
    (await instance(0).nthRun(0)).reject(new Error('Got invalid dimensions for input: x'));
    await expect(run).rejects.toMatchObject({ code: status.INTERNAL, message: expect.stringMatching(/invalid dimensions/) });
    expect(host.status()[0]?.busyInstances).toBe(0);
    const next = host.execute('m/1', TASK, []);
    (await instance(0).nthRun(1)).resolve(OUTPUT);
    await expect(next).resolves.toBe(OUTPUT);
  });

  it('hands the instance of a failed run to the next waiting execution', async () => {
    const { host, instance, log } = setup();
    await host.load(spec('m/1', 1));
    const failing = host.execute('m/1', task('bad'), []);
    const waiting = Array.from({ length: executionSlots(1) - 1 }, (_, i) => host.execute('m/1', task(`w${i}`), []));
    await expect(host.execute('m/1', task('over'), [])).rejects.toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      message: expect.stringMatching(busyMessage(1)),
    });
    (await instance(0).nthRun(0)).reject(new Error('Got invalid dimensions for input: x'));
    await expect(failing).rejects.toMatchObject({ code: status.INTERNAL });
    const next = await instance(0).nthRun(1);
    expect(next.tag).toBe('w0');
    expect(host.status()[0]?.busyInstances).toBe(1);
    next.resolve(output('w0'));
    await finishAll([instance(0)]);
    await expect(Promise.all(waiting)).resolves.toEqual(waiting.map((_, i) => output(`w${i}`)));
    expect(log).toEqual(['m/1#0:bad', ...waiting.map((_, i) => `m/1#0:w${i}`)]);
    expect(host.status()[0]?.busyInstances).toBe(0);
  });

  it('unload hides the model at once, waits for in-flight runs, then closes the instances', async () => {
    const { host, instance } = setup();
    await host.load(spec('m/1', 1));
    const run = host.execute('m/1', TASK, []);
    const first = await instance(0).nthRun(0);
    let unloaded = false;
    const unload = host.unload('m/1').then(() => {
      unloaded = true;
    });
    await flush();
    await expect(host.execute('m/1', TASK, [])).rejects.toMatchObject({ code: status.NOT_FOUND });
    expect(unloaded).toBe(false);
    expect(instance(0).closed).toBe(false);
    first.resolve(OUTPUT);
    await expect(run).resolves.toBe(OUTPUT);
    await unload;
    expect(instance(0).closed).toBe(true);
  });

  it('unload lets queued executions run on the old instances before it closes them', async () => {
    const { host, instance, log } = setup();
    await host.load(spec('m/1', 1));
    const running = host.execute('m/1', task('a'), []);
    const waiting = Array.from({ length: executionSlots(1) - 1 }, (_, i) => host.execute('m/1', task(`w${i}`), []));
    const a = await instance(0).nthRun(0);
    let unloaded = false;
    const unload = host.unload('m/1').then(() => {
      unloaded = true;
    });
    await flush();
    await expect(host.execute('m/1', TASK, [])).rejects.toMatchObject({ code: status.NOT_FOUND });

    // The running batch ends: the queued one still runs (it is not rejected), and unload keeps waiting.
    a.resolve(output('a'));
    await expect(running).resolves.toEqual(output('a'));
    const w0 = await instance(0).nthRun(1);
    expect(w0.tag).toBe('w0');
    await flush();
    expect(unloaded).toBe(false);
    expect(instance(0).closed).toBe(false);

    await finishAll([instance(0)]);
    await expect(Promise.all(waiting)).resolves.toEqual(waiting.map((_, i) => output(`w${i}`)));
    await unload;
    expect(instance(0).closed).toBe(true);
    expect(log).toEqual(['m/1#0:a', ...waiting.map((_, i) => `m/1#0:w${i}`)]);
  });

  it('replaces a loaded key: new instances serve at once, old ones finish their queue, then close', async () => {
    const { host, instance } = setup();
    await host.load(spec('m/1', 1));
    const oldRun = host.execute('m/1', task('old'), []);
    const oldQueued = host.execute('m/1', task('old-queued'), []);
    const old = await instance(0).nthRun(0);
    const reload = host.load(spec('m/1', 2));
    // The new instances open while the old one is busy; then the key switches.
    await flush();
    expect(host.status()[0]?.instanceCount).toBe(2);
    const newRun = host.execute('m/1', task('new'), []);
    expect((await instance(1).nthRun(0)).tag).toBe('new');
    expect(instance(0).closed).toBe(false);

    // The execution queued on the old model runs on the old instance, not a new one.
    old.resolve(output('old'));
    expect((await instance(0).nthRun(1)).tag).toBe('old-queued');
    await flush();
    expect(instance(0).closed).toBe(false);

    await finishAll([instance(0), instance(1)]);
    await expect(Promise.all([oldRun, oldQueued, newRun])).resolves.toEqual([output('old'), output('old-queued'), output('new')]);
    await reload;
    expect(instance(0).closed).toBe(true);
    expect(instance(1).closed).toBe(false);
    expect(instance(2).runs).toHaveLength(0);
  });

  it('keeps the old model when a replacement fails, and closes the instances that did start', async () => {
    const { host, started, instance } = setup(8, ['m/1#1']);
    await host.load(spec('m/1', 1));
    await expect(host.load(spec('m/1', 2))).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      message: expect.stringMatching(/m\/1#1: broken/),
    });
    expect(started.map((i) => i.closed)).toEqual([false, true]);
    expect(host.status()).toHaveLength(1);
    const run = host.execute('m/1', TASK, []);
    (await instance(0).nthRun(0)).resolve(OUTPUT);
    await expect(run).resolves.toBe(OUTPUT);
  });

  it('shares cores between all instances unless intra_op_threads is given', async () => {
    const { host, started } = setup(8);
    await host.load(spec('a/1', 2));
    await host.load(spec('b/1', 2));
    await host.load(spec('c/1', 1, 3));
    await host.load(spec('d/1', 9));
    expect(started.map((i) => i.init.options.intraOpNumThreads)).toEqual([4, 4, 2, 2, 3, ...Array<number>(9).fill(1)]);
    expect(started.map((i) => i.init.label).slice(0, 2)).toEqual(['a/1#0', 'a/1#1']);
  });

  it('closeAll waits for in-flight and queued runs, then closes every instance', async () => {
    const { host, started, instance, log } = setup();
    await host.load(spec('a/1', 1));
    await host.load(spec('b/1', 1));
    const run = host.execute('a/1', task('a'), []);
    const queued = host.execute('a/1', task('a-queued'), []);
    const first = await instance(0).nthRun(0);
    let closed = false;
    const closing = host.closeAll().then(() => {
      closed = true;
    });
    await flush();
    expect(host.status()).toEqual([]);
    expect(instance(1).closed).toBe(true);
    expect(instance(0).closed).toBe(false);

    first.resolve(output('a'));
    (await instance(0).nthRun(1)).resolve(output('a-queued'));
    await expect(Promise.all([run, queued])).resolves.toEqual([output('a'), output('a-queued')]);
    await closing;
    expect(closed).toBe(true);
    expect(started.every((i) => i.closed)).toBe(true);
    expect(log).toEqual(['a/1#0:a', 'a/1#0:a-queued']);
  });
});

describe('ModelHost load report in time', () => {
  const SECOND = 1_000_000_000n;
  /** A run that held its instance for `ns` (what the backlog learns from). */
  const timed = (tag: string, ns: bigint): BatchOutput => ({ ...output(tag), taskStartNs: 1n, runStartNs: 1n, runEndNs: 1n + ns });

  it('says how long a new execution would wait: unknown before a run is timed, then the executions held at their speed, less what has run', async () => {
    const { host, instance } = setup();
    await host.load(spec('m/1', 1));
    expect(host.backlogNs('m/1')).toBe(0);
    expect(host.backlogNs('unknown/1')).toBeUndefined();
    const first = host.execute('m/1', task('a'), []);
    // Held, and no run of the model timed yet.
    expect(host.backlogNs('m/1')).toBeUndefined();
    (await instance(0).nthRun(0)).resolve(timed('a', SECOND));
    await first;
    expect(host.backlogNs('m/1')).toBe(0);

    // One running, one waiting (all one instance takes), each expected to take the second the first took.
    const calls = ['b', 'c'].map((t) => host.execute('m/1', task(t), []));
    await instance(0).nthRun(1);
    const held = host.backlogNs('m/1') ?? NaN;
    // Less the few ms the running one has run since it started.
    expect(held).toBeLessThanOrEqual(2e9);
    expect(held).toBeGreaterThan(1.9e9);
    (await instance(0).nthRun(1)).resolve(timed('b', SECOND));
    await calls[0];
    const after = host.backlogNs('m/1') ?? NaN;
    expect(after).toBeLessThanOrEqual(1e9);
    expect(after).toBeGreaterThan(0.9e9);
    await finishAll([instance(0)]);
    await Promise.all(calls);
    expect(host.backlogNs('m/1')).toBe(0);
  });

  it('spreads it over the instances', async () => {
    const { host, instance } = setup();
    await host.load(spec('m/1', 2));
    const warm = [host.execute('m/1', task('a'), []), host.execute('m/1', task('b'), [])];
    (await instance(0).nthRun(0)).resolve(timed('a', SECOND));
    (await instance(1).nthRun(0)).resolve(timed('b', SECOND));
    await Promise.all(warm);
    const calls = ['c', 'd', 'e', 'f'].map((t) => host.execute('m/1', task(t), []));
    await Promise.all([instance(0).nthRun(1), instance(1).nthRun(1)]);
    // Four seconds of runs over two instances, less what the two running have run.
    const held = host.backlogNs('m/1') ?? NaN;
    expect(held).toBeLessThanOrEqual(2e9);
    expect(held).toBeGreaterThan(1.9e9);
    await finishAll([instance(0), instance(1)]);
    await Promise.all(calls);
  });
});
