import { describe, expect, it } from 'vitest';
import { type ExecuteOutput, ModelHost, type LoadSpec } from '../../../worker/model-host.js';
import { type ModelInstance } from '../../../worker/model-instance.js';
import { type BatchOutput, type BatchTask, type SessionInfo, type ThreadInit } from '../../../worker/thread-protocol.js';

// ModelHost with several gateway connections (owners): shared loads and
// executions merged into one run. Fake identity instances whose runs end
// when the test says so.

const INFO: SessionInfo = {
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2], dimNames: ['b', ''] }],
  outputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2], dimNames: ['b', ''] }],
  executionProvider: 'cpu',
  fallbackReason: '',
};

class IdentityInstance implements ModelInstance {
  readonly info = INFO;
  readonly runs: Array<{ task: BatchTask; finish: () => void }> = [];
  closed = false;
  constructor(readonly init: ThreadInit) {}
  run(task: BatchTask): Promise<BatchOutput> {
    return new Promise((resolve) => {
      this.runs.push({ task, finish: () => resolve({ outputs: task.inputs, taskStartNs: 1n, runStartNs: 1n, runEndNs: 2n, heldNs: 1 }) });
    });
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function setup(queuedPerInstance = 3, mergeBeforePipelining = false) {
  const started: IdentityInstance[] = [];
  const host = new ModelHost({
    cores: 4,
    queuedPerInstance,
    mergeBeforePipelining,
    logger: { debug: () => undefined, info: () => undefined, warn: () => undefined },
    startInstances: (inits) =>
      inits.map(async (init) => {
        const i = new IdentityInstance(init);
        started.push(i);
        return i;
      }),
  });
  return { host, started };
}

function spec(maxBatchSize: number, path = '/m.onnx'): LoadSpec {
  return {
    modelKey: 'm/1',
    model: { path },
    maxBatchSize,
    instanceCount: 1,
    device: { kind: 'cpu' },
    options: { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all', enableCpuMemArena: true, executionMode: 'sequential', enableMemPattern: true },
  };
}

function rows(n: number, start: number): { task: BatchTask; transfer: ArrayBuffer[] } {
  const data = new Float32Array(n * 2).map((_, i) => start + i).buffer;
  return { task: { inputs: [{ name: 'x', datatype: 'FP32', shape: [n, 2], data }], outputs: [] }, transfer: [data] };
}

const values = (out: BatchOutput | ExecuteOutput): number[] => {
  const d: ArrayBuffer | Uint8Array | undefined = out.outputs[0]?.data;
  if (d === undefined) return [];
  return d instanceof ArrayBuffer ? [...new Float32Array(d)] : [...new Float32Array(d.buffer, d.byteOffset, d.byteLength / 4)];
};

describe('ModelHost shared by several gateway connections', () => {
  it('shares an identical load from another connection; an unload drops only that reference', async () => {
    const { host, started } = setup();
    await host.load(spec(8), 1);
    await host.load(spec(8), 2);
    expect(started).toHaveLength(1);
    expect(host.status()[0]?.connections).toBe(2);
    await host.unload('m/1', 1);
    expect(host.status()[0]?.connections).toBe(1);
    expect(started[0]?.closed).toBe(false);
    await host.unload('m/1', 2);
    expect(host.status()).toEqual([]);
    expect(started[0]?.closed).toBe(true);
  });

  it('replaces on a different spec, and on a reload from the same connection (as with one gateway)', async () => {
    const { host, started } = setup();
    await host.load(spec(8), 1);
    await host.load(spec(8, '/other.onnx'), 2);
    expect(started).toHaveLength(2);
    expect(started[0]?.closed).toBe(true);
    expect(host.status()[0]?.connections).toBe(2);
    await host.load(spec(8, '/other.onnx'), 2);
    expect(started).toHaveLength(3);
    // Connection 1 inherited these instances: its load of the same spec follows the reload, it does not repeat it.
    await host.load(spec(8, '/other.onnx'), 1);
    expect(started).toHaveLength(3);
    expect(host.status()[0]?.connections).toBe(2);
  });

  it('a closed connection releases its references; a model no one holds goes only when asked to', async () => {
    const { host, started } = setup();
    await host.load(spec(8), 1);
    await host.load(spec(8), 2);
    await host.release(1, true);
    expect(host.status()[0]?.connections).toBe(1);
    await host.release(2, false);
    expect(host.status()).toHaveLength(1);
    await host.load(spec(8), 3);
    await host.release(3, true);
    expect(host.status()).toEqual([]);
    expect(started.every((i) => i.closed)).toBe(true);
  });

  it('merges executions waiting for the instance, from several connections, into one run up to max_batch_size', async () => {
    const { host, started } = setup(7);
    await host.load(spec(4), 1);
    await host.load(spec(4), 2);
    const instance = started[0] as IdentityInstance;
    // Two go to the thread at once (running and next); the rest wait.
    const first = host.execute('m/1', rows(1, 0).task, [], 1);
    const second = host.execute('m/1', rows(1, 10).task, [], 2);
    const waiting = [host.execute('m/1', rows(1, 20).task, [], 1), host.execute('m/1', rows(2, 30).task, [], 2), host.execute('m/1', rows(1, 40).task, [], 2), host.execute('m/1', rows(3, 50).task, [], 1)];
    await flush();
    expect(instance.runs).toHaveLength(2);
    instance.runs[0]?.finish();
    await expect(first).resolves.toMatchObject({ outputs: [{ shape: [1, 2] }] });
    await flush();
    // 20 (1 row) + 30 (2 rows) + 40 (1 row) = 4 rows = max_batch_size; 50 (3 rows) waits.
    expect(instance.runs).toHaveLength(3);
    expect(instance.runs[2]?.task.inputs[0]?.shape).toEqual([4, 2]);
    instance.runs[1]?.finish();
    instance.runs[2]?.finish();
    await flush();
    expect(values(await (waiting[0] as Promise<BatchOutput | ExecuteOutput>))).toEqual([20, 21]);
    expect(values(await (waiting[1] as Promise<BatchOutput | ExecuteOutput>))).toEqual([30, 31, 32, 33]);
    expect(values(await (waiting[2] as Promise<BatchOutput | ExecuteOutput>))).toEqual([40, 41]);
    expect(values(await second)).toEqual([10, 11]);
    expect(instance.runs).toHaveLength(4);
    instance.runs[3]?.finish();
    expect(values(await (waiting[3] as Promise<BatchOutput | ExecuteOutput>))).toEqual([50, 51, 52, 53, 54, 55]);
    expect(host.status()[0]).toMatchObject({ runs: 4n, mergedRuns: 1n, mergedCalls: 3n, crossConnectionRuns: 1n, maxMergedRows: 4, maxCrossConnectionRows: 4 });
  });

  it('shared by several gateways: one run per instance thread at a time, so what arrives during a run merges into the next', async () => {
    const { host, started } = setup(3, true);
    await host.load(spec(8), 1);
    const instance = started[0] as IdentityInstance;
    const first = host.execute('m/1', rows(1, 0).task, [], 1);
    const during = [host.execute('m/1', rows(1, 10).task, [], 2), host.execute('m/1', rows(2, 20).task, [], 1), host.execute('m/1', rows(1, 30).task, [], 2)];
    await flush();
    expect(instance.runs).toHaveLength(1);
    instance.runs[0]?.finish();
    await first;
    await flush();
    expect(instance.runs).toHaveLength(2);
    expect(instance.runs[1]?.task.inputs[0]?.shape).toEqual([4, 2]);
    instance.runs[1]?.finish();
    expect((await Promise.all(during)).map(values)).toEqual([[10, 11], [20, 21, 22, 23], [30, 31]]);
    expect(host.status()[0]).toMatchObject({ runs: 2n, mergedRuns: 1n, mergedCalls: 3n, crossConnectionRuns: 1n, maxCrossConnectionRows: 4 });
  });

  it('never merges a model without max_batch_size', async () => {
    const { host, started } = setup(7);
    await host.load(spec(0), 1);
    const instance = started[0] as IdentityInstance;
    const calls = [0, 1, 2, 3].map((i) => host.execute('m/1', rows(1, i).task, [], 1));
    await flush();
    for (let i = 0; i < 4; i++) {
      instance.runs[i]?.finish();
      await flush();
    }
    await Promise.all(calls);
    expect(instance.runs.map((r) => r.task.inputs[0]?.shape[0])).toEqual([1, 1, 1, 1]);
    expect(host.status()[0]?.mergedRuns).toBe(0n);
  });
});
