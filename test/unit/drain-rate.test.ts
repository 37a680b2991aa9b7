import { describe, expect, it } from 'vitest';
import { DrainRate } from '../../gateway/batching/drain-rate.js';

const MS = 1_000_000n;

describe('DrainRate', () => {
  it('knows nothing until it has seen eight busy intervals', () => {
    const d = new DrainRate();
    let t = 0n;
    for (let i = 0; i < 8; i++) {
      expect(d.nsPerRow()).toBeUndefined();
      t += 40n * MS;
      d.completed(t, 16, true);
    }
    // The first completion only starts the first interval.
    expect(d.nsPerRow()).toBeUndefined();
    t += 40n * MS;
    d.completed(t, 16, true);
    expect(d.nsPerRow()).toBe(2.5e6);
  });

  it('counts only time the model was busy: an interval after a completion that left it idle is not service time', () => {
    const d = new DrainRate();
    let t = 0n;
    d.completed(t, 8, true);
    for (let i = 0; i < 8; i++) {
      t += 80n * MS;
      d.completed(t, 8, true); // 10 ms a row
    }
    expect(d.nsPerRow()).toBe(10e6);
    d.completed((t += 10n * MS), 8, false); // busy up to here (10 ms for 8 rows), then idle
    // Out of a backlog, the rate is not used: a pessimistic one would shed what would thin the queue further.
    expect(d.nsPerRow()).toBeUndefined();
    d.completed((t += 5_000n * MS), 1, true); // the gap of 5 s before this one is not counted
    expect(d.nsPerRow()).toBe((8 * 80 + 10) / (9 * 8) * 1e6);
  });

  it('follows the last 32 busy intervals', () => {
    const d = new DrainRate();
    let t = 0n;
    d.completed(t, 4, true);
    for (let i = 0; i < 32; i++) d.completed((t += 40n * MS), 4, true); // 10 ms a row
    for (let i = 0; i < 32; i++) d.completed((t += 120n * MS), 4, true); // the machine got busier: 30
    expect(d.nsPerRow()).toBeCloseTo(30e6, 0);
  });
});
