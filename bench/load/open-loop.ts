import type * as hdr from 'hdr-histogram-js';
import { type Send, DRAIN_GRACE_MS } from './closed-loop.js';
import { type LatencySummary, latencyHistogram, recordUs, summarize } from './histogram.js';
import { type Distribution, arrivals } from './schedule.js';
import { type Measured, MeasurementWindows, type WindowHooks, type WindowOptions, errorKey, errorMessage, sleep } from './windows.js';

/**
 * An open loop whose server falls behind piles up requests without bound;
 * past this many in flight the level is overloaded anyway, and tens of
 * thousands of streams on one HTTP/2 connection can break the connection.
 */
export const DEFAULT_MAX_OUTSTANDING = 1_000;

export interface OpenLoopOptions {
  /** Requests per second sent, whatever the answers do. */
  readonly rate: number;
  readonly distribution: Distribution;
  /** Seed of the Poisson schedule (the same seed gives the same gaps). */
  readonly seed?: number;
  readonly warmupMs: number;
  readonly send: Send;
  readonly windows: WindowOptions;
  /** Requests in flight at most; an arrival beyond it is counted as CLIENT_OVERLOADED, not sent (default DEFAULT_MAX_OUTSTANDING). */
  readonly maxOutstanding?: number;
  readonly hooks?: WindowHooks;
  /** After the last window, how long answers still in flight get before they are cancelled (default DRAIN_GRACE_MS). */
  readonly drainGraceMs?: number;
}

export interface OpenLoopMeasured extends Measured {
  /** How late sends left against their schedule (timer granularity, a busy client), over the whole run. */
  readonly sendLag: LatencySummary;
  /** Requests still unanswered at the end of the last window. */
  readonly outstandingAtEnd: number;
}

/**
 * Open-loop load: requests leave on a schedule (constant or Poisson gaps)
 * and do not wait for earlier answers, so queueing in the server shows up
 * in the latency instead of slowing the sender down. Latency runs from the
 * actual send, as in perf_analyzer; the lag behind the schedule is reported
 * separately. Node timers have ~1 ms resolution: arrivals that fall due
 * together leave together.
 */
export async function openLoop(o: OpenLoopOptions): Promise<OpenLoopMeasured> {
  const windows = new MeasurementWindows(o.windows, o.hooks);
  const max = o.maxOutstanding ?? DEFAULT_MAX_OUTSTANDING;
  const lag: hdr.Histogram = latencyHistogram();
  const inFlight = new Set<AbortController>();
  const pending = new Set<Promise<void>>();
  const schedule = arrivals(o.rate, o.distribution, o.seed ?? 1);
  let next = schedule.next().value;
  let seq = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const t0 = performance.now();

  const fire = (scheduledMs: number): void => {
    if (inFlight.size >= max) {
      windows.fail('CLIENT_OVERLOADED', `${max} requests already in flight; arrival dropped`);
      return;
    }
    const abort = new AbortController();
    inFlight.add(abort);
    const sent = performance.now();
    if (windows.measuring) recordUs(lag, (sent - t0 - scheduledMs) * 1000);
    const p = o.send(seq++, abort.signal).then(
      () => windows.record((performance.now() - sent) * 1000),
      (error: unknown) => windows.fail(errorKey(error), errorMessage(error)),
    );
    const tracked = p.finally(() => {
      inFlight.delete(abort);
      pending.delete(tracked);
    });
    pending.add(tracked);
  };

  const tick = (): void => {
    if (stopped) return;
    const now = performance.now() - t0;
    while (next <= now) {
      fire(next);
      next = schedule.next().value;
    }
    timer = setTimeout(tick, Math.max(0, next - (performance.now() - t0)));
  };

  tick();
  let measured: Measured;
  let outstandingAtEnd = 0;
  try {
    await sleep(o.warmupMs);
    measured = await windows.measure();
    outstandingAtEnd = inFlight.size;
  } finally {
    stopped = true;
    clearTimeout(timer);
    const grace = setTimeout(() => {
      for (const a of inFlight) a.abort();
    }, o.drainGraceMs ?? DRAIN_GRACE_MS);
    await Promise.all(pending);
    clearTimeout(grace);
  }
  const sendLag = summarize(lag);
  lag.destroy();
  return { ...measured, sendLag, outstandingAtEnd };
}
