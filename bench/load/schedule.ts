// Arrival times for the open loop: constant spacing, or Poisson arrivals
// (exponential gaps) from a seeded generator, so a run can be repeated.
import { mulberry32 } from '../../models/build/seeded-random.js';

export type Distribution = 'constant' | 'poisson';

/**
 * An endless sequence of send times in ms from the start, `rate` per second
 * on average. Poisson gaps are -ln(U)/rate with U from mulberry32(seed).
 */
export function* arrivals(rate: number, distribution: Distribution, seed = 1): Generator<number, never> {
  if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`request rate must be a positive number, got ${rate}`);
  const meanGapMs = 1000 / rate;
  const next = mulberry32(seed);
  let t = 0;
  for (;;) {
    if (distribution === 'constant') t += meanGapMs;
    else t += -Math.log(1 - next()) * meanGapMs; // 1 - U is in (0, 1]: no log(0)
    yield t;
  }
}

/** The first `n` arrival times (for tests and previews). */
export function firstArrivals(n: number, rate: number, distribution: Distribution, seed = 1): number[] {
  const it = arrivals(rate, distribution, seed);
  return Array.from({ length: n }, () => it.next().value);
}
