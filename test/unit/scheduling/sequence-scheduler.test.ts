import { describe, expect, it } from 'vitest';
import { Cancellation } from '../../../core/cancellation.js';
import { type Tensor } from '../../../core/tensor.js';
import { type SequencePlan } from '../../../models/config/sequence-config.js';
import { type InferJob, type JobResult, type Scheduler, type SequenceFlags } from '../../../gateway/scheduling/execution.js';
import { processKey, type SequenceProcesses, SequenceScheduler, zeroState } from '../../../gateway/scheduling/sequence-scheduler.js';

// The sequence scheduler's rules, on a fake inner scheduler that the test
// answers by hand (as the model would: OUTPUT = STATE_OUT = STATE_IN + INPUT)
// and a fake clock for the idle limit.

const PLAN: SequencePlan = {
  controls: [
    { name: 'START', kind: 'start', datatype: 'INT32', falseTrue: [0, 1], itemRank: 1 },
    { name: 'END', kind: 'end', datatype: 'BOOL', falseTrue: [false, true], itemRank: 0 },
    { name: 'READY', kind: 'ready', datatype: 'FP32', falseTrue: [0, 1], itemRank: 1 },
    { name: 'CORRID', kind: 'corrid', datatype: 'UINT64', itemRank: 1 },
  ],
  states: [{ inputName: 'STATE_IN', outputName: 'STATE_OUT', datatype: 'FP32', dims: [1] }],
  idleUs: 100_000,
  maxCandidates: 2,
  serverInputs: new Set(['START', 'END', 'READY', 'CORRID', 'STATE_IN']),
  serverOutputs: new Set(['STATE_OUT']),
};

const f32 = (name: string, v: number): Tensor => ({ name, datatype: 'FP32', shape: [1, 1], data: new Uint8Array(Float32Array.of(v).buffer) });
const valueOf = (t: Tensor | undefined): number => new DataView((t as Tensor).data.buffer, (t as Tensor).data.byteOffset).getFloat32(0, true);
const tensor = (job: InferJob, name: string): Tensor => {
  const t = job.inputs.find((i) => i.name === name);
  if (!t) throw new Error(`no input ${name}`);
  return t;
};

class FakeInner implements Scheduler {
  readonly jobs: { job: InferJob; resolve: (r: JobResult) => void; reject: (e: unknown) => void }[] = [];
  stopped = false;
  get pending(): number {
    return this.jobs.length;
  }
  enqueue(job: InferJob): Promise<JobResult> {
    return new Promise((resolve, reject) => this.jobs.push({ job, resolve, reject }));
  }
  /** Answers the oldest job as running_sum would. */
  answer(): InferJob {
    const next = this.jobs.shift();
    if (!next) throw new Error('no job to answer');
    const sum = valueOf(tensor(next.job, 'STATE_IN')) + valueOf(tensor(next.job, 'INPUT'));
    const outputs = [f32('OUTPUT', sum), f32('STATE_OUT', sum)];
    next.resolve({ outputs, queueNs: 0, execution: { outputs, computeInputNs: 0, computeInferNs: 0, computeOutputNs: 0, workerId: 'w' } });
    return next.job;
  }
  fail(error: Error): void {
    this.jobs.shift()?.reject(error);
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
}

function setup(plan: SequencePlan = PLAN, processes?: SequenceProcesses, maxCandidates?: () => number) {
  const inner = new FakeInner();
  let nowMs = 0;
  const scheduler = new SequenceScheduler({
    modelName: 'm',
    version: 1,
    plan,
    batching: true,
    maxCandidates: maxCandidates ?? plan.maxCandidates,
    initialStates: [zeroState('STATE_IN', 'FP32', [1], true)],
    inner,
    now: () => nowMs,
    reapTimer: false,
    ...(processes ? { processes } : {}),
  });
  const send = (value: number, sequence: SequenceFlags | undefined, signal = new Cancellation()) =>
    scheduler.enqueue({ inputs: [f32('INPUT', value)], outputs: [], signal, deadline: Infinity, batchSize: 1, sequence });
  const flush = () => new Promise((r) => setImmediate(r));
  return { inner, scheduler, send, flush, advance: (ms: number) => (nowMs += ms) };
}

const sumOf = async (p: Promise<JobResult>): Promise<number> => {
  const r = await p;
  expect(r.outputs.map((o) => o.name)).toEqual(['OUTPUT']);
  return valueOf(r.outputs[0]);
};

describe('SequenceScheduler', () => {
  it('runs a sequence\'s requests one at a time, in order, each with the state the one before left', async () => {
    const { inner, send, flush } = setup();
    const a = [send(1, { id: 7n, start: true, end: false }), send(2, { id: 7n, start: false, end: false }), send(3, { id: 7n, start: false, end: true })];
    await flush();
    expect(inner.jobs).toHaveLength(1);
    const first = inner.answer();
    await flush();
    expect(inner.jobs).toHaveLength(1);
    inner.answer();
    await flush();
    const last = inner.answer();
    expect(await Promise.all(a.map(sumOf))).toEqual([1, 3, 6]);
    // START on the first only, END on the last only, READY always; the CORRID of the sequence.
    expect([...tensor(first, 'START').data]).toEqual([1, 0, 0, 0]);
    expect(tensor(first, 'START').shape).toEqual([1, 1]);
    expect([...tensor(first, 'END').data]).toEqual([0]);
    expect(tensor(first, 'END').shape).toEqual([1]);
    expect([...tensor(last, 'END').data]).toEqual([1]);
    expect(valueOf(tensor(last, 'READY'))).toBe(1);
    expect(new DataView(tensor(last, 'CORRID').data.buffer).getBigUint64(0, true)).toBe(7n);
  });

  it('runs different sequences side by side, and a third from the backlog once one ends', async () => {
    const { inner, scheduler, send, flush } = setup();
    const a = send(1, { id: 1n, start: true, end: false });
    const b = send(10, { id: 2n, start: true, end: false });
    const c = send(100, { id: 3n, start: true, end: true });
    await flush();
    expect(inner.jobs.map((j) => valueOf(tensor(j.job, 'INPUT')))).toEqual([1, 10]);
    expect(scheduler.sequences).toEqual({ candidates: 2, backlog: 1 });
    inner.answer();
    inner.answer();
    expect([await sumOf(a), await sumOf(b)]).toEqual([1, 10]);
    // Sequence 1 ends: 3 takes its place.
    const a2 = send(1, { id: 1n, start: false, end: true });
    await flush();
    inner.answer();
    expect(await sumOf(a2)).toBe(2);
    await flush();
    expect(inner.jobs).toHaveLength(1);
    inner.answer();
    expect(await sumOf(c)).toBe(100);
    expect(scheduler.sequences).toEqual({ candidates: 1, backlog: 0 });
  });

  it('refuses a request without a correlation ID, of more than one row, or continuing an unknown sequence', async () => {
    const { send, scheduler } = setup();
    await expect(send(1, undefined)).rejects.toThrow("inference request to model 'm' must specify a non-zero or non-empty correlation ID");
    await expect(send(1, { id: 0n, start: true, end: false })).rejects.toThrow('non-zero or non-empty correlation ID');
    await expect(send(1, { id: '', start: true, end: false })).rejects.toThrow('non-zero or non-empty correlation ID');
    await expect(send(1, { id: 5n, start: false, end: false })).rejects.toThrow("inference request for sequence 5 to model 'm' must specify the START flag on the first request of the sequence");
    await expect(send(1, { id: 'x', start: true, end: false })).rejects.toThrow("must specify an integer correlation ID: its CORRID control input 'CORRID' is UINT64");
    await expect(
      scheduler.enqueue({ inputs: [], outputs: [], signal: new Cancellation(), deadline: Infinity, batchSize: 2, sequence: { id: 5n, start: true, end: false } }),
    ).rejects.toThrow('must specify batch-size 1 due to requirements of sequence batcher');
    expect(scheduler.sequences).toEqual({ candidates: 0, backlog: 0 });
  });

  it('gives places that open as instances join to the backlog first, oldest first', async () => {
    let places = 1;
    const { inner, scheduler, send, flush } = setup(PLAN, undefined, () => places);
    void send(1, { id: 1n, start: true, end: false });
    void send(20, { id: 2n, start: true, end: false });
    await flush();
    expect(scheduler.sequences).toEqual({ candidates: 1, backlog: 1 });
    places = 2;
    void send(300, { id: 3n, start: true, end: false });
    await flush();
    // Sequence 2 took the new place; 3, newer, waits.
    expect(inner.jobs.map((j) => valueOf(tensor(j.job, 'INPUT')))).toEqual([1, 20]);
    expect(scheduler.sequences).toEqual({ candidates: 2, backlog: 1 });
  });

  it('ends a sequence idle past the limit: its place goes to the backlog, its next request without START is refused', async () => {
    const { inner, scheduler, send, flush, advance } = setup({ ...PLAN, maxCandidates: 1 });
    const a = send(1, { id: 1n, start: true, end: false });
    await flush();
    inner.answer();
    await sumOf(a);
    const b = send(5, { id: 2n, start: true, end: true });
    await flush();
    expect(inner.jobs).toHaveLength(0);
    advance(100);
    scheduler.reapIdle();
    expect(inner.jobs).toHaveLength(0);
    advance(1);
    scheduler.reapIdle();
    await flush();
    expect(inner.jobs).toHaveLength(1);
    inner.answer();
    expect(await sumOf(b)).toBe(5);
    await expect(send(1, { id: 1n, start: false, end: false })).rejects.toThrow('must specify the START flag');
  });

  it('starts from the initial state again when START comes for an open sequence', async () => {
    const { inner, send, flush } = setup();
    const r = [send(4, { id: 1n, start: true, end: false }), send(4, { id: 1n, start: false, end: false }), send(9, { id: 1n, start: true, end: false })];
    for (let i = 0; i < 3; i++) {
      await flush();
      inner.answer();
    }
    expect(await Promise.all(r.map(sumOf))).toEqual([4, 8, 9]);
  });

  it('keeps the last good state when a request fails, and runs the next', async () => {
    const { inner, send, flush } = setup();
    const a = send(2, { id: 1n, start: true, end: false });
    const b = send(50, { id: 1n, start: false, end: false }).catch((e: unknown) => e);
    const c = send(3, { id: 1n, start: false, end: true });
    await flush();
    inner.answer();
    await flush();
    inner.fail(new Error('worker lost'));
    await flush();
    inner.answer();
    expect(await sumOf(a)).toBe(2);
    expect(String(await b)).toContain('worker lost');
    expect(await sumOf(c)).toBe(5);
  });

  it('drops a queued request whose caller gave up, without running it', async () => {
    const { inner, send, flush } = setup();
    const a = send(1, { id: 1n, start: true, end: false });
    const cancel = new Cancellation();
    const b = send(2, { id: 1n, start: false, end: false }, cancel);
    const c = send(3, { id: 1n, start: false, end: true });
    await flush();
    cancel.abort();
    await expect(b).rejects.toThrow('cancelled');
    inner.answer();
    await flush();
    inner.answer();
    expect([await sumOf(a), await sumOf(c)]).toEqual([1, 4]);
  });

  it('rejects what waits when stopped, and stops the inner scheduler', async () => {
    const { inner, scheduler, send, flush } = setup({ ...PLAN, maxCandidates: 1 });
    send(1, { id: 1n, start: true, end: false }).catch(() => undefined);
    const waiting = send(2, { id: 2n, start: true, end: false });
    await flush();
    await scheduler.stop(new Error('unloading'));
    await expect(waiting).rejects.toThrow('unloading');
    expect(inner.stopped).toBe(true);
    await expect(send(1, { id: 3n, start: true, end: false })).rejects.toThrow('unloading');
  });

  it('with several processes: a START is recorded as kept here, its later requests cost nothing, others run where they are kept', async () => {
    const calls: string[] = [];
    const processes: SequenceProcesses = {
      claim: async (model, version, key) => void calls.push(`claim ${model}/${version} ${JSON.stringify(key)}`),
      forward: async (_model, _version, key, job) => {
        calls.push(`forward ${JSON.stringify(key)} ${String((job.sequence as SequenceFlags).id)}`);
        return { outputs: [f32('OUTPUT', -1)], queueNs: 0, execution: { outputs: [], computeInputNs: 0, computeInferNs: 0, computeOutputNs: 0, workerId: 'w' } };
      },
      ended: (key) => void calls.push(`ended ${JSON.stringify(key)}`),
    };
    const { inner, scheduler, send, flush } = setup(PLAN, processes);
    const name = (id: bigint): string => processKey('m/1', id);
    const a = send(1, { id: 3n, start: true, end: false });
    await flush();
    inner.answer();
    expect(await sumOf(a)).toBe(1);
    const b = send(2, { id: 3n, start: false, end: false });
    await flush();
    inner.answer();
    expect(await sumOf(b)).toBe(3);
    // Not open here: run where it is kept.
    expect(await sumOf(send(1, { id: 4n, start: false, end: true }))).toBe(-1);
    // Refusals any process would give are given here.
    await expect(send(1, undefined)).rejects.toThrow('non-zero or non-empty correlation ID');
    const c = send(3, { id: 3n, start: false, end: true });
    await flush();
    inner.answer();
    expect(await sumOf(c)).toBe(6);
    expect(calls).toEqual([`claim m/1 ${JSON.stringify(name(3n))}`, `forward ${JSON.stringify(name(4n))} 4`, `ended ${JSON.stringify(name(3n))}`]);
    // Another process took a START of 5: this one's ends, and 5's next request goes there.
    const d = send(1, { id: 5n, start: true, end: false });
    await flush();
    inner.answer();
    await sumOf(d);
    scheduler.drop(name(5n));
    expect(await sumOf(send(1, { id: 5n, start: false, end: false }))).toBe(-1);
    expect(calls.at(-1)).toBe(`forward ${JSON.stringify(name(5n))} 5`);
  });
});
