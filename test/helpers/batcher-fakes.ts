import { type Clock } from '../../gateway/batching/clock.js';
import { type BatchRunner, type BatchSlots } from '../../gateway/batching/dynamic-batcher.js';
import { type ExecutionResult } from '../../gateway/scheduling/execution.js';

// Fakes for a DynamicBatcher under test: one instance's slot, a clock that
// stands still, and a runner that records the batches cut and never answers.

/** One instance's slot: taken from the start when `held` (work from before), freed by release(). */
export function oneSlot(held: boolean): BatchSlots<number> {
  let busy = held;
  const listeners = new Set<() => void>();
  return {
    get free() {
      return busy ? 0 : 1;
    },
    get idle() {
      return busy ? 0 : 1;
    },
    acquire: () => (busy ? undefined : ((busy = true), 1)),
    release: () => {
      busy = false;
      for (const l of listeners) l();
    },
    onFree: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  };
}

/** A clock that stands at 1 s (monotonic) and never fires a timer: decisions are taken at one instant. */
export function stoppedClock(): Clock {
  return { now: () => 1_000_000_000n, epochMs: () => 1_700_000_000_000, setTimeout: () => () => {} };
}

/** A runner that pushes each batch's rows (its first input's first dim) onto `cut` and never answers. */
export function cutRecorder(cut: number[]): BatchRunner<number> {
  return {
    run: (_p, inputs) => {
      cut.push(inputs[0]?.shape[0] ?? 0);
      return new Promise<ExecutionResult>(() => {});
    },
  };
}
