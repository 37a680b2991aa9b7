import { describe, expect, it } from 'vitest';
import { VersionTraffic, versionTrafficOf } from '../../../gateway/repository/version-traffic.js';

const config = (value: string) => ({ parameters: { version_traffic: { stringValue: value } } });

describe('versionTrafficOf', () => {
  it('reads VERSION:WEIGHT pairs, spaces allowed; none without the parameter', () => {
    expect(versionTrafficOf(config('1:90, 2 : 10'))).toEqual([
      { version: 1, weight: 90 },
      { version: 2, weight: 10 },
    ]);
    expect(versionTrafficOf({ parameters: {} })).toBeUndefined();
  });

  it.each([
    ['', "'' is not VERSION:WEIGHT"],
    ['1:90,2', "'2' is not VERSION:WEIGHT"],
    ['1:-5', "'1:-5' is not VERSION:WEIGHT"],
    ['1:0.5', "'1:0.5' is not VERSION:WEIGHT"],
    ['1:10,1:20', 'version 1 is listed twice'],
    ['1:0,2:0', 'every weight is 0'],
    ['1:2000000', 'out of range'],
  ])("refuses '%s', saying why", (value, why) => {
    expect(() => versionTrafficOf(config(value))).toThrow(new RegExp(`parameter 'version_traffic': expected VERSION:WEIGHT pairs .*${why.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  });
});

describe('VersionTraffic (smooth weighted round robin)', () => {
  const all = (): boolean => true;

  it('gives each version exactly its weight over every cycle, interleaved', () => {
    const t = new VersionTraffic([
      { version: 1, weight: 9 },
      { version: 2, weight: 1 },
    ]);
    const picks = Array.from({ length: 100 }, () => t.pick(all));
    expect(picks.filter((v) => v === 2)).toHaveLength(10);
    // Never two canary requests in a row: one in every cycle of 10.
    for (let cycle = 0; cycle < 10; cycle++) expect(picks.slice(cycle * 10, cycle * 10 + 10).filter((v) => v === 2)).toHaveLength(1);
    const even = new VersionTraffic([
      { version: 3, weight: 1 },
      { version: 4, weight: 1 },
    ]);
    expect(Array.from({ length: 4 }, () => even.pick(all))).toEqual([3, 4, 3, 4]);
  });

  it('shares a version that cannot serve among the others; undefined when none can; weight 0 never', () => {
    const t = new VersionTraffic([
      { version: 1, weight: 1 },
      { version: 2, weight: 1 },
      { version: 3, weight: 0 },
    ]);
    expect(Array.from({ length: 3 }, () => t.pick((v) => v !== 2))).toEqual([1, 1, 1]);
    expect(t.pick((v) => v === 3)).toBeUndefined();
    expect(t.pick(() => false)).toBeUndefined();
  });
});
