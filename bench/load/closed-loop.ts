import { type Measured, MeasurementWindows, type WindowHooks, type WindowOptions, errorKey, errorMessage, sleep } from './windows.js';

/**
 * Sends request number `seq`; resolves when it is answered (and checked),
 * rejects when it fails. `caller`: which of a closed loop's callers sends it
 * (0…concurrency-1; undefined in an open loop), for callers that keep state
 * of their own, such as a sequence.
 */
export type Send = (seq: number, signal: AbortSignal, caller?: number) => Promise<unknown>;

export interface ClosedLoopOptions {
  /** Requests in flight at all times (perf_analyzer's concurrency). */
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly send: Send;
  readonly windows: WindowOptions;
  readonly hooks?: WindowHooks;
  /** After the last window, how long answers still in flight get before they are cancelled (default DRAIN_GRACE_MS). */
  readonly drainGraceMs?: number;
}

// After the last window, answers still in flight get this long before they
// are cancelled, so a stalled server cannot keep the run alive.
export const DRAIN_GRACE_MS = 5_000;

/**
 * Closed-loop load: `concurrency` callers each send their next request as
 * soon as the last one is answered, through warm-up and then measurement
 * windows until stable (or --max-trials). Counts and latencies come only
 * from answers that arrive inside a window. It always stops by itself.
 */
export async function closedLoop(o: ClosedLoopOptions): Promise<Measured> {
  if (!Number.isInteger(o.concurrency) || o.concurrency < 1) throw new RangeError(`concurrency must be an integer ≥ 1, got ${o.concurrency}`);
  const windows = new MeasurementWindows(o.windows, o.hooks);
  const inFlight = new Set<AbortController>();
  let seq = 0;
  let stopped = false;

  const caller = async (index: number): Promise<void> => {
    while (!stopped) {
      const n = seq++;
      const abort = new AbortController();
      inFlight.add(abort);
      const t0 = performance.now();
      try {
        await o.send(n, abort.signal, index);
        windows.record((performance.now() - t0) * 1000);
      } catch (error) {
        windows.fail(errorKey(error), errorMessage(error));
        // A server answering errors at once would otherwise spin this loop.
        if (!stopped) await sleep(1);
      } finally {
        inFlight.delete(abort);
      }
    }
  };

  const callers = Array.from({ length: o.concurrency }, (_, i) => caller(i));
  try {
    await sleep(o.warmupMs);
    return await windows.measure();
  } finally {
    stopped = true;
    const grace = setTimeout(() => {
      for (const a of inFlight) a.abort();
    }, o.drainGraceMs ?? DRAIN_GRACE_MS);
    await Promise.all(callers);
    clearTimeout(grace);
  }
}
