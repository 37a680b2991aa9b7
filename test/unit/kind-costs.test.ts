import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { type ExecuteAnswer } from '../../core/execute-frame.js';
import { type CostModel } from '../../core/cost-model.js';
import { DEFAULT_KIND, instanceKindOf, KindCosts, SHAPES } from '../../core/kind-costs.js';
import { batchShape } from '../../gateway/batching/batch-rows.js';
import { type BatchRunner, type BatchSlots, DynamicBatcher } from '../../gateway/batching/dynamic-batcher.js';
import { batchingPolicy } from '../helpers/batching-policy.js';
import { cutRecorder, oneSlot, stoppedClock } from '../helpers/batcher-fakes.js';
import { Dispatcher } from '../../gateway/scheduling/dispatcher.js';
import { type ExecutionResult, type InferJob } from '../../gateway/scheduling/execution.js';
import { InstanceSlots, noteTiming, type Placement } from '../../gateway/scheduling/instance-slots.js';
import { type WorkerConnection, WorkerLostError } from '../../gateway/scheduling/worker-connection.js';

// A cost model per model version and instance kind (issue #15): a GPU's
// time hardly grows with rows, a CPU's nearly in proportion. Each
// execution teaches its own kind's model, the scheduler decides with the
// lead kind's (the most instances), and the worker choice weighs each
// worker by its own kind's.

const MS = 1e6;
/** A GPU-like curve: 2 ms whatever the rows (up to 64). */
const gpuNs = (): number => 2 * MS;
/** A CPU-like curve: 0.5 ms a row. */
const cpuNs = (rows: number): number => 0.5 * MS * rows;

function timed(costs: KindCosts, kind: string, curve: (rows: number) => number): void {
  for (let i = 0; i < 2; i++) for (const rows of [1, 8, 64]) costs.of(kind).observe(rows, curve(rows));
}

/** The model KindCosts keeps for `shape` on `kind` (its own, not what a shape is read from): undefined while none. */
function shapeModelOf(costs: KindCosts, kind: string, shape: string): CostModel | undefined {
  return costs.shapeEntries().find((e) => e.kind === kind && e.shape === shape)?.model;
}

describe('instanceKindOf', () => {
  it('is the execution provider the instances were loaded on, without the device; the CPU when none is said', () => {
    expect(instanceKindOf('cpu')).toBe('cpu');
    // Every device of a provider is one kind: one curve for every GPU of it.
    expect(instanceKindOf('cuda:0')).toBe('cuda');
    expect(instanceKindOf('cuda:3')).toBe('cuda');
    expect(instanceKindOf(' WebGPU:0 ')).toBe('webgpu');
    // A registered worker's record describes a fallback; its instances run on the CPU.
    expect(instanceKindOf('cpu (GPU unavailable: CUDA execution provider unavailable on device 0: x, y; WebGPU …)')).toBe('cpu');
    // Instances of one worker on several providers.
    expect(instanceKindOf('cuda:0,cpu')).toBe('cuda+cpu');
    expect(instanceKindOf('')).toBe(DEFAULT_KIND);
    expect(instanceKindOf(undefined)).toBe('cpu');
  });
});

describe('KindCosts', () => {
  it('keeps one model per kind, and the lead is the kind asked for', () => {
    const costs = new KindCosts();
    timed(costs, 'cuda', gpuNs);
    timed(costs, 'cpu', cpuNs);
    expect(costs.lead('cpu').computeNs(64)).toBe(32 * MS);
    expect(costs.lead('cuda').computeNs(64)).toBe(2 * MS);
    expect(costs.leadKind).toBe('cuda');
    expect(costs.entries().map(([kind, m]) => [kind, m.samples])).toEqual([
      ['cuda', 6],
      ['cpu', 6],
    ]);
  });

  it('lists a kind without a timing only while it leads', () => {
    const costs = new KindCosts();
    timed(costs, 'cpu', cpuNs);
    costs.of('cuda');
    expect(costs.entries().map(([kind]) => kind)).toEqual(['cpu']);
    costs.lead('cuda');
    expect(costs.entries().map(([kind]) => kind)).toEqual(['cuda', 'cpu']);
  });

  it('counts instances of other kinds at the lead kind’s speed; one for one while a model cannot say', () => {
    const costs = new KindCosts();
    const both = new Map([
      ['cuda', 1],
      ['cpu', 4],
    ]);
    expect(costs.equivalentInstances(new Map([['cpu', 3]]), 64)).toBe(3);
    costs.lead('cuda');
    expect(costs.equivalentInstances(both, 64)).toBe(5);
    timed(costs, 'cuda', gpuNs);
    expect(costs.equivalentInstances(both, 64)).toBe(5); // the CPU's model is still cold
    timed(costs, 'cpu', cpuNs);
    // At 64 rows a CPU instance does 2/32 of the GPU's work: 1 + 4/16.
    expect(costs.equivalentInstances(both, 64)).toBeCloseTo(1.25, 9);
    // At one row the CPU is faster (0.5 ms against 2): 1 + 4 × 4.
    expect(costs.equivalentInstances(both, 1)).toBeCloseTo(17, 9);
  });
});

describe('KindCosts by shape', () => {
  it('keeps no model per shape while the version runs one shape; once another runs, one per kind and shape', () => {
    const costs = new KindCosts();
    expect(costs.noteShape('cpu', 'a')).toBeUndefined();
    expect(costs.noteShape('cpu', 'a')).toBeUndefined();
    expect(costs.variableShapes).toBe(false);
    expect(shapeModelOf(costs, 'cpu', 'a')).toBeUndefined();
    const b = costs.noteShape('cpu', 'b');
    expect(costs.variableShapes).toBe(true);
    expect(b).toBeDefined();
    b?.observe(4, 8 * MS);
    const a = costs.noteShape('cpu', 'a');
    expect(a).not.toBe(b);
    expect(costs.noteShape('cuda', 'a')).not.toBe(a);
    expect(shapeModelOf(costs, 'cpu', 'b')?.computeNs(4)).toBe(8 * MS);
    expect(shapeModelOf(costs, 'cuda', 'b')).toBeUndefined();
    // The most recently run first.
    expect(costs.shapeEntries().map((e) => `${e.kind} ${e.shape}`)).toEqual(['cuda a', 'cpu a', 'cpu b']);
  });

  it('keeps the SHAPES most recently run', () => {
    const costs = new KindCosts();
    costs.noteShape('cpu', 'first');
    for (let i = 0; i < SHAPES + 5; i++) costs.noteShape('cpu', `s${i}`);
    costs.noteShape('cpu', 's3'); // run again: kept
    costs.noteShape('cpu', 'new');
    expect(costs.shapeEntries()).toHaveLength(SHAPES);
    expect(shapeModelOf(costs, 'cpu', 's3')).toBeDefined();
    expect(shapeModelOf(costs, 'cpu', 's5')).toBeUndefined();
    expect(shapeModelOf(costs, 'cpu', 'new')).toBeDefined();
  });
});

/** A worker that answers at once, each execution computing `computeNs`. */
function worker(id: string, computeNs = 0n): WorkerConnection {
  const fake = {
    endpoint: { id, address: `unix:/${id}`, deviceKind: 'cpu' as const, deviceId: 0 },
    execute: (_request: unknown, _deadline: number, done?: (lost: boolean) => void): Promise<ExecuteAnswer> => {
      done?.(false);
      return Promise.resolve({ outputs: [], computeInputNs: 0n, computeInferNs: computeNs, computeOutputNs: 0n });
    },
  };
  return fake as unknown as WorkerConnection;
}

describe('InstanceSlots by kind', () => {
  it('the lead kind holds the most instances, a tie to the accelerator, and stays while no worker holds the version', () => {
    const slots = new InstanceSlots();
    expect(slots.leadKind).toBe('cpu');
    slots.add(worker('g'), 1, 'cuda');
    expect(slots.leadKind).toBe('cuda');
    slots.add(worker('c1'), 1, 'cpu');
    expect(slots.leadKind).toBe('cuda');
    slots.add(worker('c2'), 2, 'cpu');
    expect(slots.leadKind).toBe('cpu');
    expect([...slots.instancesByKind]).toEqual([
      ['cuda', 1],
      ['cpu', 3],
    ]);
    slots.remove('c2');
    slots.remove('c1');
    slots.remove('g');
    expect(slots.leadKind).toBe('cuda'); // as when the last worker left (c1 and g: a tie)
    expect(slots.instancesByKind.size).toBe(0);
    slots.add(worker('g'), 1, 'webgpu');
    slots.remove('g');
    expect(slots.leadKind).toBe('webgpu');
    expect(slots.placements()).toEqual([]);
  });

  it('weighs each worker by its own kind’s model: single rows to the CPU, full batches to the GPU', () => {
    const costs = new KindCosts();
    timed(costs, 'cuda', gpuNs);
    timed(costs, 'cpu', cpuNs);
    const slots = new InstanceSlots();
    slots.add(worker('g'), 1, 'cuda');
    slots.add(worker('c'), 1, 'cpu');
    slots.expectBy((rows, kind) => costs.of(kind).computeNs(rows));
    const [g, c] = [slots.acquire(), slots.acquire()];
    if (g === undefined || c === undefined) throw new Error('no slot');
    const now = performance.now();
    // Each ran as its own kind's model expects (ratio 1).
    noteTiming(g, 2 * MS, now, slots.expectedNs(64, g));
    noteTiming(c, 0.5 * MS, now, slots.expectedNs(1, c));
    slots.release(g);
    slots.release(c);
    expect(slots.placements().map((v) => [v.worker, v.kind, v.computeRatio])).toEqual([
      ['g', 'cuda', 1],
      ['c', 'cpu', 1],
    ]);
    const pick = (rows: number): string | undefined => {
      const p = slots.acquire(undefined, rows);
      if (p) slots.release(p);
      return p?.worker.endpoint.id;
    };
    expect(pick(1)).toBe('c'); // 0.5 ms against 2
    expect(pick(64)).toBe('g'); // 2 ms against 32
  });

  it('the dispatcher says which kind ran an execution, and times a retry on another kind against nothing', async () => {
    const slots = new InstanceSlots();
    const lost = Object.assign(worker('c'), {
      execute: (_r: unknown, _d: number, done?: (lost: boolean) => void): Promise<ExecuteAnswer> => {
        done?.(true);
        return Promise.reject(new WorkerLostError(status.UNAVAILABLE, 'worker c lost'));
      },
    });
    slots.add(lost as unknown as WorkerConnection, 1, 'cpu');
    slots.add(worker('g', 2_000_000n), 1, 'cuda');
    slots.expectBy((rows, kind) => (kind === 'cpu' ? cpuNs(rows) : gpuNs()));
    const dispatcher = new Dispatcher('m/1', slots);
    const first = slots.acquire();
    expect(first?.worker.endpoint.id).toBe('c');
    const result = await dispatcher.run(first as Placement, [], [], Date.now() + 1_000, undefined, 8);
    expect([result.workerId, result.instanceKind]).toEqual(['g', 'cuda']);
    // Timed (its speed known), but not against the CPU's 4 ms for 8 rows.
    expect(slots.placements().map((v) => [v.worker, v.execNs, v.computeRatio])).toEqual([['g', 2 * MS, undefined]]);
  });
});

/** Slots of two kinds for the batcher: one instance of each, as many slots; the lead is said by the test. */
class TwoKindSlots implements BatchSlots<string> {
  leadKind = 'cuda';
  readonly instancesByKind = new Map([
    ['cuda', 1],
    ['cpu', 1],
  ]);
  readonly instanceCount = 2;
  readonly #busy = new Set<string>();
  readonly #listeners = new Set<() => void>();
  get free(): number {
    return 2 - this.#busy.size;
  }
  get idle(): number {
    return this.free;
  }
  acquire(): string | undefined {
    const kind = ['cuda', 'cpu'].find((k) => !this.#busy.has(k));
    if (kind !== undefined) this.#busy.add(kind);
    return kind;
  }
  release(kind: string): void {
    this.#busy.delete(kind);
    for (const l of this.#listeners) l();
  }
  onFree(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** Runs each batch on the kind of its slot, at that kind's curve, answering in the next microtask. */
class KindRunner implements BatchRunner<string> {
  constructor(readonly slots: TwoKindSlots) {}
  async run(kind: string, inputs: readonly { readonly shape: readonly number[] }[]): Promise<ExecutionResult> {
    const rows = inputs[0]?.shape[0] ?? 1;
    await Promise.resolve();
    this.slots.release(kind);
    const ns = kind === 'cpu' ? cpuNs(rows) : gpuNs();
    return { outputs: [], computeInputNs: 0, computeInferNs: ns, computeOutputNs: 0, workerId: kind, instanceKind: kind };
  }
}

describe('DynamicBatcher by kind', () => {
  it('each execution teaches its own kind’s model, and the batcher decides with the lead kind’s', async () => {
    const slots = new TwoKindSlots();
    const policy = batchingPolicy(64);
    const batcher = new DynamicBatcher({ modelKey: 'm/1', slots, dispatcher: new KindRunner(slots), policy });
    const job = (): InferJob => ({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: new Uint8Array(4) }],
      outputs: [],
      signal: new AbortController().signal,
      deadline: Infinity,
      batchSize: 1,
    });
    // Two requests at once: one batch of one row on each kind, ten times.
    for (let i = 0; i < 10; i++) await Promise.all([batcher.enqueue(job()), batcher.enqueue(job())]);
    expect(batcher.costs.of('cuda').samples).toBe(10);
    expect(batcher.costs.of('cpu').samples).toBe(10);
    expect(batcher.cost.computeNs(1)).toBe(2 * MS);
    slots.leadKind = 'cpu';
    expect(batcher.cost.computeNs(1)).toBe(0.5 * MS);
    // The batching endpoint's order: the lead first.
    expect(batcher.costs.entries().map(([kind]) => kind)).toEqual(['cpu', 'cuda']);
  });
});

describe('DynamicBatcher shedding by kind', () => {
  /** A clock that stands still: the queue is judged as it stands. */
  const clock = stoppedClock();

  /** Two batches out (one per kind, never answered), then six one-row requests; the CPU's batch takes `cpuMs`. */
  function sixthAfterTwoRunning(cpuMs: number): { error?: unknown } {
    const slots = new TwoKindSlots();
    const runner: BatchRunner<string> = { run: () => new Promise<ExecutionResult>(() => {}) };
    const policy = batchingPolicy(2);
    const batcher = new DynamicBatcher({ modelKey: 'm/1', slots, dispatcher: runner, policy, clock });
    for (let i = 0; i < 4; i++) {
      for (const rows of [1, 2]) {
        batcher.costs.of('cuda').observe(rows, 10 * MS);
        batcher.costs.of('cpu').observe(rows, cpuMs * MS);
      }
    }
    const job = (deadlineInMs: number): InferJob => ({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: new Uint8Array(4) }],
      outputs: [],
      signal: new AbortController().signal,
      deadline: clock.epochMs() + deadlineInMs,
      batchSize: 1,
    });
    const out: { error?: unknown } = {};
    for (let i = 0; i < 7; i++) void batcher.enqueue(job(1_000)).catch(() => {});
    batcher.enqueue(job(32)).catch((e: unknown) => (out.error = e));
    return out;
  }

  it('spreads the rows ahead over the instances counted at the lead kind’s speed', async () => {
    // Equal kinds: six rows in batches of 2 over two instances, half of the two out: 25 ms, within 32.
    const equal = sixthAfterTwoRunning(10);
    // A CPU instance 9 times slower counts as 1/9 of the GPU's: 37 ms, past 32.
    const slowCpu = sixthAfterTwoRunning(90);
    await new Promise((r) => setImmediate(r));
    expect(equal.error).toBeUndefined();
    expect((slowCpu.error as Error | undefined)?.message).toMatch(/^Request timeout expired: model 'm\/1' shed the request before it ran/);
  });
});

describe('SLO batching by kind', () => {
  it('cuts a backlog for the kind of the slot it goes to: a full batch for the GPU, what the CPU runs within the SLO for the CPU', () => {
    const clock = stoppedClock();
    // Both instances busy with work from before: the requests queue.
    class Slots extends TwoKindSlots {
      readonly held = new Set(['cuda', 'cpu']);
      override get free(): number {
        return 2 - this.held.size;
      }
      override acquire(): string | undefined {
        const kind = this.nextKind();
        if (kind !== undefined) this.held.add(kind);
        return kind;
      }
      nextKind(): string | undefined {
        return ['cuda', 'cpu'].find((k) => !this.held.has(k));
      }
      override release(kind: string): void {
        this.held.delete(kind);
        super.release(kind);
      }
    }
    const slots = new Slots();
    const cut: { kind: string; rows: number }[] = [];
    const runner: BatchRunner<string> = {
      run: (kind, inputs) => {
        cut.push({ kind, rows: inputs[0]?.shape[0] ?? 0 });
        return new Promise<ExecutionResult>(() => {});
      },
    };
    const policy = batchingPolicy(64);
    const batcher = new DynamicBatcher({ modelKey: 'm/1', slots, dispatcher: runner, policy, clock, shedding: false, sloNs: 25_000_000n });
    // The GPU: 2 ms whatever the rows; the CPU: 1 ms + 0.5 ms a row (64 rows: 33 ms, past the SLO).
    for (let i = 0; i < 4; i++) {
      for (const rows of [1, 8, 64]) {
        batcher.costs.of('cuda').observe(rows, gpuNs());
        batcher.costs.of('cpu').observe(rows, (1 + 0.5 * rows) * MS);
      }
    }
    for (let i = 0; i < 200; i++) {
      void batcher
        .enqueue({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: new Uint8Array(4) }], outputs: [], signal: new AbortController().signal, deadline: Infinity, batchSize: 1 })
        .catch(() => {});
    }
    expect(cut).toEqual([]);
    slots.release('cuda');
    slots.release('cpu');
    expect(cut.map((c) => c.kind)).toEqual(['cuda', 'cpu']);
    expect(cut[0]?.rows).toBe(64);
    // By the GPU's curve the CPU would get 64 rows too (2 ms), and end them 33 ms later; by its own, at most 48 end in 25 ms.
    expect(cut[1]?.rows).toBeGreaterThanOrEqual(14);
    expect(cut[1]?.rows).toBeLessThanOrEqual(48);
  });
});

describe('DynamicBatcher by shape', () => {
  it('where shapes vary, each batch also teaches its shape\'s model; the version\'s model learns them all', async () => {
    const slots = new TwoKindSlots();
    slots.instancesByKind.delete('cuda');
    slots.leadKind = 'cpu';
    const runner: BatchRunner<string> = {
      run: async (kind, inputs) => {
        const width = inputs[0]?.shape[1] ?? 1;
        await Promise.resolve();
        slots.release(kind);
        return { outputs: [], computeInputNs: 0, computeInferNs: width * 1_000, computeOutputNs: 0, workerId: kind, instanceKind: 'cpu' };
      },
    };
    const policy = batchingPolicy(8);
    const batcher = new DynamicBatcher({ modelKey: 'm/1', slots, dispatcher: runner, policy });
    const row = (width: number) => ({ name: 'x', datatype: 'FP32' as const, shape: [1, width], data: new Uint8Array(4 * width) });
    const call = (width: number): Promise<unknown> => batcher.enqueue({ inputs: [row(width)], outputs: [], signal: new AbortController().signal, deadline: Infinity, batchSize: 1 });
    for (let i = 0; i < 3; i++) await call(16);
    expect(batcher.costs.variableShapes).toBe(false);
    for (let i = 0; i < 4; i++) {
      await call(4096);
      await call(16);
    }
    const short = shapeModelOf(batcher.costs, 'cpu', batchShape([row(16)]).key);
    const long = shapeModelOf(batcher.costs, 'cpu', batchShape([row(4096)]).key);
    expect([short?.samples, long?.samples, batcher.cost.samples]).toEqual([4, 4, 11]);
    expect([short?.computeNs(1), long?.computeNs(1)]).toEqual([16_000, 4_096_000]);
  });
});

describe('DynamicBatcher shedding by shape', () => {
  it('estimates a request\'s own batch by its shape\'s model: a long row behind short ones is shed where the version\'s model admits it', async () => {
    const clock = stoppedClock();
    const runner: BatchRunner<number> = { run: () => new Promise<ExecutionResult>(() => {}) };
    const batcher = new DynamicBatcher({ modelKey: 'm/1', slots: oneSlot(false), dispatcher: runner, policy: batchingPolicy(4), clock });
    const row = (width: number) => ({ name: 'x', datatype: 'FP32' as const, shape: [1, width], data: new Uint8Array(4 * width) });
    // The version's model, taught by short rows: 1 ms + 0.1 ms a row. Long rows: 1 ms + 10 ms a row.
    for (let i = 0; i < 4; i++) {
      for (const rows of [1, 2, 4]) {
        batcher.costs.of('cpu').observe(rows, (1 + 0.1 * rows) * MS);
        batcher.costs.noteShape('cpu', batchShape([row(16)]).key)?.observe(rows, (1 + 0.1 * rows) * MS);
        batcher.costs.noteShape('cpu', batchShape([row(4096)]).key)?.observe(rows, (1 + 10 * rows) * MS);
      }
    }
    const outcome = (width: number, deadlineInMs = Infinity): Promise<string> =>
      batcher
        .enqueue({ inputs: [row(width)], outputs: [], signal: new AbortController().signal, deadline: clock.epochMs() + deadlineInMs, batchSize: 1 })
        .then(
          () => 'OK',
          (e: Error) => e.message,
        );
    // One batch running (never answered), then 8 short rows queued: two batches of 4 ahead of whatever comes next.
    for (let i = 0; i < 9; i++) void outcome(16);
    const late = await Promise.race([outcome(4096, 10), new Promise<string>((r) => setImmediate(() => r('admitted')))]);
    // 2 batches of 4 short rows (2.8 ms), half the one running and its own batch of one long row (11 ms): past 10 ms.
    expect(late).toMatch(/^Request timeout expired: model 'm\/1' shed the request before it ran: it would finish in 14 ms, its deadline is in 10 ms$/);
    // A short row behind the same queue: its own batch 1.1 ms, 4.5 ms in all.
    expect(await Promise.race([outcome(16, 10), new Promise<string>((r) => setImmediate(() => r('admitted')))])).toBe('admitted');
  });
});

describe('SLO batching by shape', () => {
  it('sizes a batch of long rows by their own model once trusted, not by the version’s, which short rows taught', () => {
    const clock = stoppedClock();
    const slots = oneSlot(true);
    const cut: number[] = [];
    const runner = cutRecorder(cut);
    const policy = batchingPolicy(64);
    const batcher = new DynamicBatcher({ modelKey: 'm/1', slots, dispatcher: runner, policy, clock, shedding: false, sloNs: 25_000_000n });
    const row = (width: number) => ({ name: 'x', datatype: 'FP32' as const, shape: [1, width], data: new Uint8Array(4 * width) });
    const shortKey = batchShape([row(16)]).key;
    const longKey = batchShape([row(4096)]).key;
    // The version's model, taught by short rows: 1 ms + 0.1 ms a row (64 rows: 7.4 ms). Long rows: 1 ms + 1 ms a row.
    for (let i = 0; i < 4; i++) {
      for (const rows of [1, 8, 64]) {
        batcher.costs.of('cpu').observe(rows, (1 + 0.1 * rows) * MS);
        batcher.costs.noteShape('cpu', shortKey)?.observe(rows, (1 + 0.1 * rows) * MS);
        batcher.costs.noteShape('cpu', longKey)?.observe(rows, (1 + rows) * MS);
      }
    }
    const enqueue = (width: number): void => {
      void batcher.enqueue({ inputs: [row(width)], outputs: [], signal: new AbortController().signal, deadline: Infinity, batchSize: 1 }).catch(() => {});
    };
    for (let i = 0; i < 100; i++) enqueue(4096);
    slots.release(1);
    // By the version's model 64 long rows would take 7.4 ms; by theirs 65 ms: at most 24 end within the 25 ms SLO.
    expect(cut).toHaveLength(1);
    expect(cut[0]).toBeLessThanOrEqual(24);
    expect(cut[0]).toBeGreaterThanOrEqual(1);
  });
});

describe('SLO batching by shape: arrivals', () => {
  it('weighs a batch against the arrivals of its own shape: a long row alone is cut at once, however fast short rows come', async () => {
    let ns = 1_000_000_000n;
    let timers: { at: bigint; fn: () => void }[] = [];
    const clock = {
      now: (): bigint => ns,
      epochMs: (): number => 1_700_000_000_000 + Number(ns) / 1e6,
      setTimeout: (fn: () => void, ms: number): (() => void) => {
        const t = { at: ns + BigInt(ms) * 1_000_000n, fn };
        timers.push(t);
        return () => (timers = timers.filter((x) => x !== t));
      },
    };
    const advance = async (ms: number): Promise<void> => {
      const end = ns + BigInt(Math.round(ms * 1e6));
      for (;;) {
        const due = timers.filter((t) => t.at <= end).sort((a, b) => (a.at < b.at ? -1 : 1))[0];
        if (!due) break;
        timers = timers.filter((t) => t !== due);
        if (due.at > ns) ns = due.at;
        due.fn();
        await new Promise((r) => setImmediate(r));
      }
      ns = end;
      await new Promise((r) => setImmediate(r));
    };
    const slots = oneSlot(false);
    const cut: number[] = [];
    const runner: BatchRunner<number> = {
      run: async (_p, inputs) => {
        cut.push(inputs[0]?.shape[1] ?? 0);
        await Promise.resolve();
        slots.release(1);
        return { outputs: [], computeInputNs: 0, computeInferNs: 0, computeOutputNs: 0, workerId: 'w' };
      },
    };
    const policy = batchingPolicy(64);
    const batcher = new DynamicBatcher({ modelKey: 'm/1', slots, dispatcher: runner, policy, clock, shedding: false, sloNs: 200_000_000n });
    const row = (width: number) => ({ name: 'x', datatype: 'FP32' as const, shape: [1, width], data: new Uint8Array(4 * width) });
    const long = batchShape([row(4096)]).key;
    // Both shapes timed: the version's shapes vary. A long row takes 2 ms, and 64 take 65.
    batcher.costs.noteShape('cpu', batchShape([row(16)]).key);
    for (let i = 0; i < 4; i++) for (const rows of [1, 8, 64]) batcher.costs.noteShape('cpu', long)?.observe(rows, (1 + rows) * MS);
    for (let i = 0; i < 4; i++) for (const rows of [1, 8, 64]) batcher.costs.of('cpu').observe(rows, (1 + rows) * MS);
    const send = (width: number): void => {
      void batcher.enqueue({ inputs: [row(width)], outputs: [], signal: new AbortController().signal, deadline: Infinity, batchSize: 1 }).catch(() => {});
    };
    // Short rows at 10 a ms for 20 ms, each served as it comes; one long row before them, to start its shape's rate.
    send(4096);
    await advance(50);
    for (let i = 0; i < 200; i++) {
      send(16);
      await advance(0.1);
    }
    await advance(300);
    const before = cut.length;
    // At every shape's rate (10 rows a ms) a long row alone would wait for 19 more to keep up; at its own, it is cut now.
    send(4096);
    expect(cut.slice(before)).toEqual([4096]);
  });
});
