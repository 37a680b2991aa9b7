import { describe, expect, it } from 'vitest';
import { gainVerdict } from '../../../bench/scenarios/slo-goodput.js';

describe("slo-goodput's gain bar (≥ 1.3× the default at 150 % load)", () => {
  it('judges it at 150 % load and above', () => {
    expect(gainVerdict(1.5, 1400, 1000, 'fixed 0 ms')).toEqual({ line: '- 150 %: SLO mode 1.40× the default (fixed 0 ms) — **met** (≥ 1.3×).', met: true });
    expect(gainVerdict(1.5, 1200, 1000, 'fixed 0 ms').met).toBe(false);
    expect(gainVerdict(2, 1300, 1000, 'fixed 0 ms').met).toBe(true);
  });

  it('says when the default served none, or neither served any', () => {
    expect(gainVerdict(1.5, 423, 0, 'fixed 0 ms')).toEqual({ line: '- 150 %: SLO mode 423/s where the default (fixed 0 ms) served none — **met** (≥ 1.3×).', met: true });
    expect(gainVerdict(1.5, 0, 0, 'fixed 0 ms')).toEqual({
      line: '- 150 %: neither the SLO mode nor the default (fixed 0 ms) served any within the SLO — **not met** (≥ 1.3×).',
      met: false,
    });
  });

  it('does not judge a sweep that stopped below 150 % (--loads 50 once read "not met")', () => {
    expect(gainVerdict(0.5, 1729, 1729, 'fixed 0 ms')).toEqual({
      line: '- The gain over the default (≥ 1.3× at 150 % load) is not judged: the highest load swept is 50 %.',
      met: undefined,
    });
  });
});
