import { describe, expect, it } from 'vitest';
import { Backlog } from '../../../worker/backlog.js';

// A worker's load report in time (worker/backlog.ts): the executions it
// holds, each estimated at its arrival by the runs of its size timed there,
// less what the running ones have run, over the instances.

const MS = 1e6;

describe('Backlog', () => {
  it('is unknown while an execution held arrived before any run was timed, and none when nothing is held', () => {
    const b = new Backlog();
    expect(b.waitNs(0, 1)).toBe(0);
    const first = b.arrive(8);
    expect(first).toBeNaN();
    expect(b.waitNs(0, 1)).toBeUndefined();
    b.ran(8, 10 * MS);
    b.leave(first);
    expect(b.waitNs(0, 1)).toBe(0);
  });

  it('counts each execution by its rows, at the speed runs of that size took here', () => {
    const b = new Backlog();
    // Runs of 1 row take 2 ms, of 64 rows 20 ms (a fixed cost and a cost per row, as a real model).
    for (let i = 0; i < 3; i++) {
      b.ran(1, 2 * MS);
      b.ran(64, 20 * MS);
    }
    const large = b.arrive(64);
    const small = [b.arrive(1), b.arrive(1), b.arrive(1)];
    expect(large).toBe(20 * MS);
    expect(small).toEqual([2 * MS, 2 * MS, 2 * MS]);
    // One instance: all of it; two: half each (the fluid estimate).
    expect(b.waitNs(0, 1)).toBe(26 * MS);
    expect(b.waitNs(0, 2)).toBe(13 * MS);
    // The running ones have run 5 ms between them.
    expect(b.waitNs(5 * MS, 1)).toBe(21 * MS);
    expect(b.waitNs(100 * MS, 1)).toBe(0);
    b.leave(large);
    expect(b.waitNs(0, 1)).toBe(6 * MS);
    for (const s of small) b.leave(s);
    expect(b.waitNs(0, 1)).toBe(0);
  });

  it('takes back exactly what it added, whatever the timings learned meanwhile', () => {
    const b = new Backlog();
    b.ran(4, 8 * MS);
    const e = b.arrive(4);
    // Runs got slower since: the held execution still leaves with its own estimate.
    for (let i = 0; i < 8; i++) b.ran(4, 40 * MS);
    const later = b.arrive(4);
    expect(later).toBe(40 * MS);
    b.leave(e);
    expect(b.waitNs(0, 1)).toBe(40 * MS);
    b.leave(later);
    expect(b.waitNs(0, 1)).toBe(0);
  });
});
