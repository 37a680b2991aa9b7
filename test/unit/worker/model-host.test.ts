import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { type ModelInstance } from '../../../worker/instance-pool.js';
import { ModelHost, type LoadSpec } from '../../../worker/model-host.js';
import { type BatchOutput, type SessionInfo, type ThreadInit } from '../../../worker/thread-protocol.js';

// ModelHost's capacity, unload and replace logic, with fake instances whose
// runs finish only when the test says so (no threads, no ORT, no sleeps).

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

const INFO: SessionInfo = {
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1], dimNames: ['batch'] }],
  outputs: [{ name: 'y', datatype: 'FP32', shape: [-1], dimNames: ['batch'] }],
  executionProvider: 'cpu',
  fallbackReason: '',
};
const OUTPUT: BatchOutput = { outputs: [], runStartNs: 1n, runEndNs: 2n };

class FakeInstance implements ModelInstance {
  readonly info = INFO;
  readonly runs: Deferred<BatchOutput>[] = [];
  closed = false;
  constructor(readonly init: ThreadInit) {}
  run(): Promise<BatchOutput> {
    const d = deferred<BatchOutput>();
    this.runs.push(d);
    return d.promise;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

function setup(cores = 8, failLabels: readonly string[] = []) {
  const started: FakeInstance[] = [];
  const host = new ModelHost({
    cores,
    logger: { info: () => undefined, warn: () => undefined },
    startInstance: async (init) => {
      if (failLabels.includes(init.label)) throw new Error(`instance ${init.label}: broken`);
      const instance = new FakeInstance(init);
      started.push(instance);
      return instance;
    },
  });
  return { host, started };
}

function spec(modelKey: string, instanceCount: number, intraOpNumThreads?: number): LoadSpec {
  return {
    modelKey,
    model: { path: '/models/m.onnx' },
    instanceCount,
    device: { kind: 'cpu' },
    options: { intraOpNumThreads, interOpNumThreads: 1, graphOptimizationLevel: 'all', enableCpuMemArena: true },
  };
}

const TASK = { inputs: [], outputs: [] };

describe('ModelHost', () => {
  it('runs at most instance_count batches at once and rejects the next with RESOURCE_EXHAUSTED', async () => {
    const { host, started } = setup();
    await host.load(spec('m/1', 2));
    const a = host.execute('m/1', TASK, []);
    const b = host.execute('m/1', TASK, []);
    await expect(host.execute('m/1', TASK, [])).rejects.toMatchObject({ code: status.RESOURCE_EXHAUSTED });
    expect(started.map((i) => i.runs.length)).toEqual([1, 1]);
    expect(host.status()).toEqual([{ modelKey: 'm/1', instanceCount: 2, busyInstances: 2, executionProvider: 'cpu' }]);

    started[1]?.runs[0]?.resolve(OUTPUT);
    await expect(b).resolves.toBe(OUTPUT);
    const c = host.execute('m/1', TASK, []);
    expect(started[1]?.runs.length).toBe(2);
    started[0]?.runs[0]?.resolve(OUTPUT);
    started[1]?.runs[1]?.resolve(OUTPUT);
    await Promise.all([a, c]);
    expect(host.status()[0]?.busyInstances).toBe(0);
  });

  it('answers NOT_FOUND for an unknown key', async () => {
    const { host } = setup();
    await expect(host.execute('nope/1', TASK, [])).rejects.toMatchObject({ code: status.NOT_FOUND });
    expect(() => host.info('nope/1')).toThrow(/not loaded/);
    await expect(host.unload('nope/1')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });

  it('maps a failed run to INTERNAL with the ORT message and frees the instance', async () => {
    const { host, started } = setup();
    await host.load(spec('m/1', 1));
    const run = host.execute('m/1', TASK, []);
    started[0]?.runs[0]?.reject(new Error('Got invalid dimensions for input: x'));
    await expect(run).rejects.toMatchObject({ code: status.INTERNAL, message: expect.stringMatching(/invalid dimensions/) });
    expect(host.status()[0]?.busyInstances).toBe(0);
  });

  it('unload hides the model at once, waits for in-flight runs, then closes the instances', async () => {
    const { host, started } = setup();
    await host.load(spec('m/1', 1));
    const run = host.execute('m/1', TASK, []);
    let unloaded = false;
    const unload = host.unload('m/1').then(() => {
      unloaded = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    await expect(host.execute('m/1', TASK, [])).rejects.toMatchObject({ code: status.NOT_FOUND });
    expect(unloaded).toBe(false);
    expect(started[0]?.closed).toBe(false);
    started[0]?.runs[0]?.resolve(OUTPUT);
    await expect(run).resolves.toBe(OUTPUT);
    await unload;
    expect(started[0]?.closed).toBe(true);
  });

  it('replaces a loaded key: new instances serve at once, old ones close after their runs', async () => {
    const { host, started } = setup();
    await host.load(spec('m/1', 1));
    const oldRun = host.execute('m/1', TASK, []);
    const reload = host.load(spec('m/1', 2));
    // The new instances open while the old one is busy; then the key switches.
    await new Promise((resolve) => setImmediate(resolve));
    expect(host.status()[0]?.instanceCount).toBe(2);
    const newRun = host.execute('m/1', TASK, []);
    expect(started[1]?.runs.length).toBe(1);
    expect(started[0]?.closed).toBe(false);
    started[0]?.runs[0]?.resolve(OUTPUT);
    started[1]?.runs[0]?.resolve(OUTPUT);
    await Promise.all([oldRun, newRun, reload]);
    expect(started[0]?.closed).toBe(true);
    expect(started[1]?.closed).toBe(false);
  });

  it('keeps the old model when a replacement fails, and closes the instances that did start', async () => {
    const { host, started } = setup(8, ['m/1#1']);
    await host.load(spec('m/1', 1));
    await expect(host.load(spec('m/1', 2))).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
      message: expect.stringMatching(/m\/1#1: broken/),
    });
    expect(started.map((i) => i.closed)).toEqual([false, true]);
    expect(host.status()).toHaveLength(1);
    const run = host.execute('m/1', TASK, []);
    started[0]?.runs[0]?.resolve(OUTPUT);
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

  it('closeAll waits for in-flight runs and closes every instance', async () => {
    const { host, started } = setup();
    await host.load(spec('a/1', 1));
    await host.load(spec('b/1', 1));
    const run = host.execute('a/1', TASK, []);
    const closing = host.closeAll();
    started[0]?.runs[0]?.resolve(OUTPUT);
    await Promise.all([run, closing]);
    expect(started.every((i) => i.closed)).toBe(true);
    expect(host.status()).toEqual([]);
  });
});
