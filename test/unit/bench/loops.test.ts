// The closed and open loops with a fake server (a send that answers after a
// timer), so counting, windows, errors and the drain can be checked fast.
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { InferenceError } from '../../../client/errors.js';
import { closedLoop } from '../../../bench/load/closed-loop.js';
import { openLoop } from '../../../bench/load/open-loop.js';

const after = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('closed loop', () => {
  it('keeps exactly `concurrency` requests in flight and counts answers per window', async () => {
    let inFlight = 0;
    let most = 0;
    const boundaries: number[] = [];
    const m = await closedLoop({
      concurrency: 4,
      warmupMs: 20,
      send: async () => {
        most = Math.max(most, ++inFlight);
        await after(2);
        inFlight--;
      },
      windows: { intervalMs: 100, maxTrials: 3, stability: { stabilityPercent: 1000, windows: 3 } },
      hooks: { onBoundary: (i) => boundaries.push(i) },
    });
    expect(most).toBe(4);
    expect(inFlight).toBe(0); // drained before it resolved
    expect(m.trials).toHaveLength(3);
    expect(m.stable).toBe(true);
    expect(boundaries).toEqual([0, 1, 2, 3]);
    expect(m.requests).toBe(m.trials.reduce((n, w) => n + w.requests, 0));
    // 4 callers, ~2-3 ms per answer: hundreds of answers per 100 ms window, latency ≥ 2 ms.
    expect(m.requests).toBeGreaterThan(100);
    expect(m.latency.p50Us).toBeGreaterThanOrEqual(1_900);
    expect(m.inferPerSecond).toBeCloseTo(m.requests / m.seconds, 6);
  });

  it('stops at --max-trials when the level never settles, and says it was not stable', async () => {
    let n = 0;
    const m = await closedLoop({
      concurrency: 1,
      warmupMs: 0,
      // Every window twice as slow as the one before: never within ±10 %.
      send: () => after(1 + Math.floor(n++ / 20) * 4),
      windows: { intervalMs: 60, maxTrials: 4 },
    });
    expect(m.trials).toHaveLength(4);
    expect(m.stable).toBe(false);
    expect(m.mergedFrom).toBe(1);
  });

  it('counts failures by status and none as answers', async () => {
    const m = await closedLoop({
      concurrency: 2,
      warmupMs: 0,
      send: async () => {
        await after(1);
        throw new InferenceError(status.UNAVAILABLE, 'down');
      },
      windows: { intervalMs: 50, maxTrials: 3 },
    });
    expect(m.requests).toBe(0);
    expect(m.stable).toBe(false);
    expect(Object.keys(m.errors)).toEqual(['UNAVAILABLE']);
    expect(m.errors['UNAVAILABLE']).toBeGreaterThan(10);
    expect(m.firstError).toBe('UNAVAILABLE: down');
  });

  it('closes count windows after that many answers', async () => {
    const m = await closedLoop({
      concurrency: 1,
      warmupMs: 0,
      send: () => after(1),
      windows: { intervalMs: 5_000, requestCount: 10, maxTrials: 3, stability: { stabilityPercent: 1000, windows: 3 } },
    });
    expect(m.trials.map((w) => w.requests)).toEqual([10, 10, 10]);
    expect(m.seconds).toBeLessThan(2);
  });

  it('cancels what a stalled server never answers, a grace period after the last window', async () => {
    const started = performance.now();
    const m = await closedLoop({
      concurrency: 3,
      warmupMs: 0,
      send: (_seq, signal) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')))),
      windows: { intervalMs: 30, maxTrials: 1 },
      drainGraceMs: 300,
    });
    expect(m.requests).toBe(0);
    const took = performance.now() - started;
    expect(took).toBeGreaterThan(320);
    expect(took).toBeLessThan(3_000);
  });
});

describe('open loop', () => {
  it('sends on schedule whatever the answers do, and measures from the send', async () => {
    let inFlight = 0;
    let most = 0;
    const m = await openLoop({
      rate: 400,
      distribution: 'constant',
      warmupMs: 50,
      send: async () => {
        most = Math.max(most, ++inFlight);
        await after(30); // slower than the gaps: requests pile up instead of slowing the sender
        inFlight--;
      },
      windows: { intervalMs: 250, maxTrials: 3, stability: { stabilityPercent: 1000, windows: 3 } },
    });
    expect(m.inferPerSecond).toBeGreaterThan(400 * 0.7);
    expect(m.inferPerSecond).toBeLessThan(400 * 1.3);
    expect(most).toBeGreaterThan(5);
    expect(m.latency.p50Us).toBeGreaterThanOrEqual(29_000);
    expect(m.sendLag.count).toBeGreaterThan(0);
  });

  it('drops arrivals beyond the outstanding limit, counted as CLIENT_OVERLOADED', async () => {
    const m = await openLoop({
      rate: 500,
      distribution: 'poisson',
      seed: 3,
      warmupMs: 0,
      maxOutstanding: 2,
      send: () => after(50),
      windows: { intervalMs: 200, maxTrials: 1 },
    });
    expect(m.errors['CLIENT_OVERLOADED']).toBeGreaterThan(20);
    expect(m.requests).toBeLessThan(20);
  });
});
