import { describe, expect, it } from 'vitest';
import { arrivals, firstArrivals } from '../../../bench/load/schedule.js';

const gaps = (times: readonly number[]): number[] => times.map((t, i) => t - (i === 0 ? 0 : (times[i - 1] as number)));

describe('open-loop arrival schedule', () => {
  it('spaces constant arrivals exactly 1/rate apart', () => {
    const t = firstArrivals(5, 250, 'constant');
    expect(t).toEqual([4, 8, 12, 16, 20]);
  });

  it('gives the same Poisson schedule for the same seed, and another for another seed', () => {
    expect(firstArrivals(100, 500, 'poisson', 42)).toEqual(firstArrivals(100, 500, 'poisson', 42));
    expect(firstArrivals(100, 500, 'poisson', 42)).not.toEqual(firstArrivals(100, 500, 'poisson', 43));
  });

  it('has exponential gaps: mean 1/rate, standard deviation equal to the mean, 63 % of gaps below the mean', () => {
    const rate = 200;
    const g = gaps(firstArrivals(50_000, rate, 'poisson', 7));
    const mean = g.reduce((a, b) => a + b, 0) / g.length;
    const sd = Math.sqrt(g.reduce((a, b) => a + (b - mean) ** 2, 0) / g.length);
    expect(mean).toBeGreaterThan(5 * 0.98);
    expect(mean).toBeLessThan(5 * 1.02);
    expect(sd / mean).toBeGreaterThan(0.97);
    expect(sd / mean).toBeLessThan(1.03);
    const below = g.filter((x) => x < mean).length / g.length;
    expect(below).toBeGreaterThan(1 - Math.exp(-1) - 0.01);
    expect(below).toBeLessThan(1 - Math.exp(-1) + 0.01);
    expect(g.every((x) => x > 0 && Number.isFinite(x))).toBe(true);
  });

  it('refuses a rate that is not positive', () => {
    expect(() => arrivals(0, 'poisson').next()).toThrow(/positive/);
    expect(() => arrivals(Number.NaN, 'constant').next()).toThrow(/positive/);
  });
});
