import { describe, expect, it } from 'vitest';
import { INLINE_SAMPLES, type InlineOutcome, MovableInstance, runsInline, WARM_RUNS } from '../../../worker/inline-runs.js';
import { type ModelInstance } from '../../../worker/model-instance.js';
import { type BatchOutput, type BatchTask, type ThreadInit } from '../../../worker/thread-protocol.js';

describe('runsInline', () => {
  it('moves an instance once enough runs were timed and their median is within the bound', () => {
    const runs = (ns: number, n = INLINE_SAMPLES): number[] => Array.from({ length: n }, () => ns);
    expect(runsInline(runs(20_000), 50_000)).toBe(true);
    expect(runsInline(runs(20_000, INLINE_SAMPLES - 1), 50_000)).toBe(false);
    expect(runsInline(runs(60_000), 50_000)).toBe(false);
    // The median, not the mean: a few slow runs (a first run, a descheduled thread) do not keep it on its thread.
    expect(runsInline([...runs(20_000, INLINE_SAMPLES - 3), 5e6, 5e6, 5e6], 50_000)).toBe(true);
    expect(runsInline([...runs(20_000, INLINE_SAMPLES / 2 - 1), ...runs(80_000, INLINE_SAMPLES / 2 + 1)], 50_000)).toBe(false);
    // 0: never.
    expect(runsInline(runs(1), 0)).toBe(false);
  });
});

describe('MovableInstance', () => {
  /** A thread session whose runs report the time the test says. */
  const fakeThread = (times: () => number): ModelInstance & { runs: number; timed: number; closed: boolean } => ({
    runs: 0,
    timed: 0,
    closed: false,
    info: { inputs: [], outputs: [], executionProvider: 'cpu', fallbackReason: '' },
    run(t: BatchTask): Promise<BatchOutput> {
      this.runs++;
      if (t.timed === true) this.timed++;
      return Promise.resolve({ outputs: [], taskStartNs: 0n, runStartNs: 0n, runEndNs: 0n, heldNs: times() });
    },
    close(): Promise<void> {
      this.closed = true;
      return Promise.resolve();
    },
  });
  const task = { inputs: [], outputs: [] };
  const init = { label: 'm#0', model: { bytes: new Uint8Array(0) }, device: { kind: 'cpu' as const }, options: {} as ThreadInit['options'] };

  it('decides once, on its first runs: an instance whose first runs were long stays on its thread even when later runs are short', async () => {
    let ns = 50_001;
    const thread = fakeThread(() => ns);
    const moved: unknown[] = [];
    const instance = new MovableInstance(thread, init, { maxRunNs: 50_000 }, (e) => moved.push(e));
    for (let k = 0; k < WARM_RUNS + INLINE_SAMPLES; k++) await instance.run(task, []);
    ns = 1_000;
    for (let k = 0; k < 2 * INLINE_SAMPLES; k++) await instance.run(task, []);
    await new Promise((r) => setTimeout(r, 20));
    expect(instance.inline).toBe(false);
    expect(moved).toEqual([]);
    // Decided: a run is the thread's own promise, with nothing wrapped around it.
    const direct = thread.run(task, []);
    const run = thread.run.bind(thread);
    thread.run = () => direct;
    expect(instance.run(task, [])).toBe(direct);
    thread.run = run;
  });

  /** An instance whose runs take `onThread` ns on its thread and `onMain` ns on the main thread; its decisions, as they come. */
  function setup(onThread: number, onMain: number, bound = 50_000) {
    const thread = fakeThread(() => onThread);
    const main = fakeThread(() => onMain);
    const outcomes: InlineOutcome[] = [];
    const instance = new MovableInstance(thread, init, { maxRunNs: bound }, (o) => outcomes.push(o), () => Promise.resolve(main));
    return { thread, main, outcomes, instance };
  }
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));
  /** The runs on its thread that decide whether it is tried on the main thread. */
  const FIRST = WARM_RUNS + INLINE_SAMPLES;

  it('tries an instance on the main thread when its runs on its thread are within the bound, and keeps it there when its runs there are too', async () => {
    const { thread, main, outcomes, instance } = setup(40_000, 20_000);
    for (let k = 0; k < FIRST - 1; k++) await instance.run(task, []);
    await settle();
    expect(instance.inline).toBe(false);
    await instance.run(task, []);
    await settle();
    expect(instance.inline).toBe(true);
    // On trial: its thread session stays open, nothing decided yet.
    expect(instance.onThread).toBe(true);
    expect(outcomes).toEqual([]);
    for (let k = 0; k < INLINE_SAMPLES; k++) await instance.run(task, []);
    expect(outcomes).toEqual([expect.objectContaining({ moved: true, medianNs: 20_000, threadMedianNs: 40_000 })]);
    expect(instance.inline).toBe(true);
    expect(instance.onThread).toBe(false);
    expect(thread.closed).toBe(true);
    expect([thread.runs, main.runs]).toEqual([FIRST, INLINE_SAMPLES]);
    await instance.run(task, []);
    expect(main.runs).toBe(INLINE_SAMPLES + 1);
    expect(main.closed).toBe(false);
  });

  it('sends an instance back to its thread for good when its runs on the main thread are over the bound', async () => {
    const { thread, main, outcomes, instance } = setup(40_000, 80_000);
    for (let k = 0; k < FIRST; k++) await instance.run(task, []);
    await settle();
    expect(instance.inline).toBe(true);
    for (let k = 0; k < INLINE_SAMPLES; k++) await instance.run(task, []);
    await settle();
    expect(outcomes).toEqual([expect.objectContaining({ moved: false, medianNs: 80_000, threadMedianNs: 40_000 })]);
    expect(instance.inline).toBe(false);
    expect(main.closed).toBe(true);
    expect(thread.closed).toBe(false);
    for (let k = 0; k < 2 * INLINE_SAMPLES; k++) await instance.run(task, []);
    await settle();
    expect([thread.runs, main.runs]).toEqual([FIRST + 2 * INLINE_SAMPLES, INLINE_SAMPLES]);
    // Only the runs that decided were timed: back on its thread for good, its runs are not.
    expect([thread.timed, main.timed]).toEqual([FIRST, INLINE_SAMPLES]);
    expect(outcomes).toHaveLength(1);
  });

  it('never tries the main thread when its runs on its thread are over the bound', async () => {
    const { thread, main, outcomes, instance } = setup(50_001, 1_000);
    for (let k = 0; k < 2 * FIRST; k++) await instance.run(task, []);
    await settle();
    expect(instance.inline).toBe(false);
    expect(outcomes).toEqual([]);
    expect([thread.runs, main.runs]).toEqual([2 * FIRST, 0]);
  });

  it('stays on its thread when the main thread cannot open it, and says why', async () => {
    const thread = fakeThread(() => 1_000);
    const outcomes: InlineOutcome[] = [];
    const instance = new MovableInstance(thread, init, { maxRunNs: 50_000 }, (o) => outcomes.push(o), () => Promise.reject(new Error('no memory')));
    for (let k = 0; k < FIRST; k++) await instance.run(task, []);
    await settle();
    expect(instance.inline).toBe(false);
    expect(outcomes).toEqual([{ moved: false, error: new Error('no memory') }]);
    await instance.run(task, []);
    expect(thread.runs).toBe(FIRST + 1);
  });

  it('keeps it on the main thread when its runs there take longer than the bound but less than the hand-off to its thread did', async () => {
    // Runs of 40 µs on its thread whose answers come 5 ms after they were handed over (a busy thread's queue,
    // its wake-ups); 80 µs on the main thread, over the 50 µs bound but far under the hand-off.
    const thread = fakeThread(() => 40_000);
    const run = thread.run.bind(thread);
    thread.run = (t, x) => new Promise((resolve) => setTimeout(() => resolve(run(t, x)), 5));
    const main = fakeThread(() => 80_000);
    const outcomes: InlineOutcome[] = [];
    const instance = new MovableInstance(thread, init, { maxRunNs: 50_000 }, (o) => outcomes.push(o), () => Promise.resolve(main));
    for (let k = 0; k < FIRST; k++) await instance.run(task, []);
    await settle();
    for (let k = 0; k < INLINE_SAMPLES; k++) await instance.run(task, []);
    expect(outcomes).toHaveLength(1);
    const [outcome] = outcomes;
    expect(outcome).toMatchObject({ moved: true, medianNs: 80_000, threadMedianNs: 40_000 });
    expect(outcome !== undefined && 'handOffMedianNs' in outcome ? outcome.handOffMedianNs : 0).toBeGreaterThan(4_000_000);
    expect(instance.onThread).toBe(false);
  });

  it('gives each of a model\'s N instances 1/N of the bound: on the main thread they run one at a time', async () => {
    // 40 µs runs: within a 50 µs bound for one instance, over its half for one of two.
    const one = setup(40_000, 20_000);
    const thread = fakeThread(() => 40_000);
    const outcomes: InlineOutcome[] = [];
    const ofTwo = new MovableInstance(thread, init, { maxRunNs: 50_000, instances: 2 }, (o) => outcomes.push(o), () => Promise.resolve(fakeThread(() => 20_000)));
    for (let k = 0; k < FIRST; k++) await Promise.all([one.instance.run(task, []), ofTwo.run(task, [])]);
    await settle();
    expect(one.instance.inline).toBe(true);
    expect(ofTwo.inline).toBe(false);
    expect(outcomes).toEqual([]);
  });
});

