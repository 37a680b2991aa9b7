import { describe, expect, it } from 'vitest';
import { overloadVerdicts, type OverloadRun } from '../../../bench/scenarios/overload.js';
import { median } from '../../../bench/report/median.js';

const run = (mode: string, goodput: number, tail: number, exitMet = true): OverloadRun => ({ mode, goodput, tail, exitMet });

describe('overloadVerdicts: the issue #15 bar per mode, by the medians of its rounds', () => {
  it('one run a mode: the run is the verdict', () => {
    expect(overloadVerdicts([run('fixed', 0.91, 1.5), run('slo', 0.8, 2.5)])).toEqual([
      { mode: 'fixed', goodputs: [0.91], tails: [1.5], goodput: 0.91, tail: 1.5, goodputMet: true, tailMet: true, exitMet: true },
      { mode: 'slo', goodputs: [0.8], tails: [2.5], goodput: 0.8, tail: 2.5, goodputMet: false, tailMet: false, exitMet: true },
    ]);
  });

  it('rounds in turn: each mode by its medians, so one lucky or unlucky run decides nothing', () => {
    const v = overloadVerdicts([run('fixed', 0.95, 1.2), run('slo', 0.7, 3), run('fixed', 0.6, 4), run('slo', 0.93, 1.9), run('fixed', 0.92, 1.8), run('slo', 0.72, 1.5)]);
    expect(v.map((x) => x.mode)).toEqual(['fixed', 'slo']);
    expect(v[0]).toMatchObject({ goodputs: [0.95, 0.6, 0.92], goodput: 0.92, tail: 1.8, goodputMet: true, tailMet: true });
    expect(v[1]).toMatchObject({ goodputs: [0.7, 0.93, 0.72], goodput: 0.72, tail: 1.9, goodputMet: false, tailMet: true });
  });

  it('SIGTERM must end every process in every round', () => {
    const [v] = overloadVerdicts([run('fixed', 0.95, 1, true), run('fixed', 0.95, 1, false)]);
    expect(v?.exitMet).toBe(false);
  });

  it('the bar is inclusive at 90 % and 2×', () => {
    const [v] = overloadVerdicts([run('fixed', 0.9, 2)]);
    expect([v?.goodputMet, v?.tailMet]).toEqual([true, true]);
  });
});

describe('median of rounds', () => {
  it('takes the middle, or the mean of the two middles, of the finite values', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([NaN, 5, Infinity])).toBe(5);
    expect(median([])).toBeNaN();
    expect(median([NaN])).toBeNaN();
  });
});
