import { describe, expect, it } from 'vitest';
import { isStable } from '../../../bench/load/stability.js';

const w = (throughput: number, latencyUs: number): { throughput: number; latencyUs: number } => ({ throughput, latencyUs });

describe('perf_analyzer stability rule', () => {
  it('needs as many windows as the rule looks at', () => {
    expect(isStable([w(100, 10), w(100, 10)])).toBe(false);
    expect(isStable([w(100, 10), w(100, 10), w(100, 10)])).toBe(true);
    expect(isStable([w(100, 10), w(100, 10)], { stabilityPercent: 10, windows: 2 })).toBe(true);
  });

  it('holds when every one of the last windows is within ±P % of their average, for throughput and latency', () => {
    expect(isStable([w(95, 1000), w(105, 1050), w(100, 950)])).toBe(true);
    // 80 is 13 % below the average of (80, 100, 100) = 93.3
    expect(isStable([w(80, 1000), w(100, 1000), w(100, 1000)])).toBe(false);
    expect(isStable([w(100, 800), w(100, 1000), w(100, 1000)])).toBe(false);
    expect(isStable([w(80, 1000), w(100, 1000), w(100, 1000)], { stabilityPercent: 15, windows: 3 })).toBe(true);
  });

  it('looks only at the last windows', () => {
    expect(isStable([w(10, 1), w(500, 99), w(100, 10), w(101, 10), w(99, 10)])).toBe(true);
    expect(isStable([w(100, 10), w(101, 10), w(99, 10), w(500, 10)])).toBe(false);
  });

  it('never calls a window without answers stable', () => {
    expect(isStable([w(0, NaN), w(0, NaN), w(0, NaN)])).toBe(false);
    expect(isStable([w(100, 10), w(100, NaN), w(100, 10)])).toBe(false);
  });

  it('with 0 % demands identical windows', () => {
    expect(isStable([w(100, 10), w(100, 10), w(100, 10)], { stabilityPercent: 0, windows: 3 })).toBe(true);
    expect(isStable([w(100, 10), w(100.5, 10), w(100, 10)], { stabilityPercent: 0, windows: 3 })).toBe(false);
  });
});
