import { describe, expect, it } from 'vitest';
import { INLINE_SAMPLES, MovableInstance, runsInline } from '../../../worker/inline-runs.js';
import { type ModelInstance } from '../../../worker/model-instance.js';
import { type BatchOutput, type ThreadInit } from '../../../worker/thread-protocol.js';

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
  const fakeThread = (times: () => number): ModelInstance & { runs: number } => ({
    runs: 0,
    info: { inputs: [], outputs: [], executionProvider: 'cpu', fallbackReason: '' },
    run(): Promise<BatchOutput> {
      this.runs++;
      return Promise.resolve({ outputs: [], taskStartNs: 0n, runStartNs: 0n, runEndNs: BigInt(times()) });
    },
    close: () => Promise.resolve(),
  });
  const task = { inputs: [], outputs: [] };
  const init = { label: 'm#0', model: { bytes: new Uint8Array(0) }, device: { kind: 'cpu' as const }, options: {} as ThreadInit['options'] };

  it('decides once, on its first runs: an instance whose first runs were long stays on its thread even when later runs are short', async () => {
    let ns = 200_000;
    const thread = fakeThread(() => ns);
    const moved: unknown[] = [];
    const instance = new MovableInstance(thread, init, 50_000, (e) => moved.push(e));
    for (let k = 0; k < INLINE_SAMPLES; k++) await instance.run(task, []);
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
});
