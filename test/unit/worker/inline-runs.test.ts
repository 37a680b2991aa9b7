import { describe, expect, it } from 'vitest';
import { INLINE_SAMPLES, runsInline } from '../../../worker/inline-runs.js';

describe('runsInline', () => {
  it('moves an instance once enough runs were timed and their median is within the bound', () => {
    const runs = (ns: number, n = INLINE_SAMPLES): number[] => Array.from({ length: n }, () => ns);
    expect(runsInline(runs(20_000), 50_000)).toBe(true);
    expect(runsInline(runs(20_000, INLINE_SAMPLES - 1), 50_000)).toBe(false);
    expect(runsInline(runs(60_000), 50_000)).toBe(false);
    // The median, not the mean: a few slow runs (a first run, a descheduled thread) do not keep it on its thread.
    expect(runsInline([...runs(20_000, INLINE_SAMPLES - 3), 5e6, 5e6, 5e6], 50_000)).toBe(true);
    expect(runsInline([...runs(20_000, INLINE_SAMPLES / 2 - 1), ...runs(80_000, INLINE_SAMPLES / 2 + 1)], 50_000)).toBe(false);
    // 0: never.
    expect(runsInline(runs(1), 0)).toBe(false);
  });
});
