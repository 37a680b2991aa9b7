import { describe, expect, it } from 'vitest';
import { AnswerRate } from '../../gateway/inference/answer-rate.js';

const MS = 1_000_000n;

/** A rate fed 17 busy answers of 1000 bytes, 10 ms apart: trusted, 100 bytes a µs. */
function warmed(): { r: AnswerRate; t: bigint } {
  const r = new AnswerRate();
  let t = 0n;
  r.released(t, 1000, true, true);
  for (let i = 0; i < 16; i++) r.released((t += 10n * MS), 1000, true, true);
  return { r, t };
}

describe('AnswerRate', () => {
  it('knows nothing until 16 busy answers, then bytes answered per busy ns', () => {
    const r = new AnswerRate();
    let t = 0n;
    r.released(t, 1000, true, true);
    for (let i = 0; i < 15; i++) r.released((t += 10n * MS), 1000, true, true);
    expect(r.bytesPerNs(t)).toBeUndefined();
    r.released((t += 10n * MS), 1000, true, true);
    expect(r.bytesPerNs(t)).toBe(1000 / 10e6);
  });

  it('counts only busy time: the gap after a release that left nothing held is not service time', () => {
    let { r, t } = warmed();
    r.released((t += 10n * MS), 1000, true, false); // the last one out
    r.released((t += 900n * MS), 1000, true, true); // after an idle spell: not an interval
    expect(r.bytesPerNs(t)).toBe(1000 / 10e6);
  });

  it('failures take their time but add no bytes: requests shed fast do not make the gateway look faster', () => {
    let { r, t } = warmed();
    for (let i = 0; i < 16; i++) r.released((t += 1n * MS), 1000, false, true);
    expect(r.bytesPerNs(t)).toBeCloseTo((16 * 1000) / 176e6, 12);
  });

  it('forgets a rate with no busy interval for a second: a gate that refused on it could not correct it', () => {
    const { r, t } = warmed();
    expect(r.bytesPerNs(t + 999n * MS)).toBeDefined();
    expect(r.bytesPerNs(t + 1001n * MS)).toBeUndefined();
  });
});
