import { describe, expect, it } from 'vitest';
import { ArrivalRate } from '../../gateway/batching/arrival-rate.js';

// The SLO mode's view of arrivals: the smoothed rate, and the recent gap that sees a burst.

const MS = 1_000_000n;

describe('ArrivalRate', () => {
  it('measures a steady rate, and forgets it after a long silence', () => {
    const a = new ArrivalRate();
    for (let t = 0n; t <= 200n; t++) a.observe(1, t * MS);
    expect(a.rowsPerNs(200n * MS) * 1e6).toBeCloseTo(1, 1);
    expect(a.lastNs).toBe(200n * MS);
    expect(a.rowsPerNs(400n * MS)).toBe(0);
  });

  it('has no recent gap before four gaps, then the median gap per row of the last eight, beside a mean over more', () => {
    const a = new ArrivalRate();
    const times = [0, 1, 2, 3];
    for (const t of times) a.observe(1, BigInt(t) * MS);
    expect(a.recentGapNs()).toBeUndefined();
    expect(a.meanGapNs()).toBeUndefined();
    a.observe(1, 13n * MS); // one long gap among short ones
    expect(a.recentGapNs()).toBe(1e6);
    // The mean counts it: 1 ms, moved a 32nd of the way to 10 ms.
    expect(a.meanGapNs()).toBeCloseTo(1e6 + 9e6 / 32, -1);
    // A request of 4 rows 2 ms after the last: 0.5 ms a row.
    for (let i = 0; i < 8; i++) a.observe(4, 13n * MS + BigInt(i + 1) * 2n * MS);
    expect(a.recentGapNs()).toBe(0.5e6);
  });

  it("sees a closed loop's bursts: recent gaps far below the average gap", () => {
    // 16 callers answered together every 10 ms, sending again 0.1 ms apart.
    const a = new ArrivalRate();
    let t = 0n;
    for (let burst = 0; burst < 20; burst++) {
      for (let i = 0; i < 16; i++) a.observe(1, t + BigInt(i) * (MS / 10n));
      t += 10n * MS;
    }
    const last = t - 10n * MS + 15n * (MS / 10n);
    expect(1 / a.rowsPerNs(last)).toBeGreaterThan(0.4e6);
    // 15 gaps of 0.1 ms and one of 8.5 ms a cycle: a mean near 0.63 ms, a recent median of 0.1.
    expect(a.meanGapNs()).toBeGreaterThan(0.4e6);
    expect(a.meanGapNs()).toBeLessThan(0.9e6);
    expect(a.recentGapNs()).toBe(0.1e6);
  });
});
