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
      d.completed(0n, t, 16, true);
    }
    // The first completion only starts the first interval.
    expect(d.nsPerRow()).toBeUndefined();
    t += 40n * MS;
    d.completed(0n, t, 16, true);
    expect(d.nsPerRow()).toBe(2.5e6);
  });

  it('counts only time the model was busy: an interval after a completion that left it idle is not service time', () => {
    const d = new DrainRate();
    let t = 0n;
    d.completed(0n, t, 8, true);
    for (let i = 0; i < 8; i++) {
      t += 80n * MS;
      d.completed(0n, t, 8, true); // 10 ms a row
    }
    expect(d.nsPerRow()).toBe(10e6);
    d.completed(0n, (t += 10n * MS), 8, false); // busy up to here (10 ms for 8 rows), then idle
    // Out of a backlog, the rate is not used: a pessimistic one would shed what would thin the queue further.
    expect(d.nsPerRow()).toBeUndefined();
    d.completed(0n, (t += 5_000n * MS), 1, true); // the gap of 5 s before this one is not counted
    expect(d.nsPerRow()).toBe((8 * 80 + 10) / (9 * 8) * 1e6);
  });

  it('starts an interval no earlier than the batch that ends it was cut: a backlog that ended without an answer leaves no gap counted as busy', () => {
    const d = new DrainRate();
    let t = 0n;
    d.completed(0n, t, 8, true);
    for (let i = 0; i < 8; i++) d.completed(0n, (t += 80n * MS), 8, true); // 10 ms a row
    expect(d.nsPerRow()).toBe(10e6);
    // Busy after the last answer, but the queued callers then gave up: no completion ends the busy interval.
    // The next load comes 5 s later; its first batch, cut then, is answered 80 ms after its cut.
    const cut = t + 5_000n * MS;
    d.completed(cut, cut + 80n * MS, 8, true);
    expect(d.nsPerRow()).toBe(10e6);
  });

  it('follows the last 32 busy intervals', () => {
    const d = new DrainRate();
    let t = 0n;
    d.completed(0n, t, 4, true);
    for (let i = 0; i < 32; i++) d.completed(0n, (t += 40n * MS), 4, true); // 10 ms a row
    for (let i = 0; i < 32; i++) d.completed(0n, (t += 120n * MS), 4, true); // the machine got busier: 30
    expect(d.nsPerRow()).toBeCloseTo(30e6, 0);
  });
});
