import { describe, expect, it } from 'vitest';
import { RecentMap } from '../../core/recent-map.js';

describe('RecentMap', () => {
  it('makes a value on first touch, keeps it after, and drops the least recently touched past its bound', () => {
    let made = 0;
    const m = new RecentMap<{ key: string }>(2, (key) => ((made += 1), { key }));
    const a = m.touch('a');
    expect(m.touch('a')).toBe(a);
    m.touch('b');
    m.touch('a'); // now b is the least recent
    m.touch('c');
    expect([m.get('a')?.key, m.get('b'), m.get('c')?.key]).toEqual(['a', undefined, 'c']);
    expect([...m.values()].map((v) => v.key)).toEqual(['a', 'c']);
    expect([m.size, made]).toEqual([2, 3]);
    // get does not touch: c stays the most recent.
    m.get('a');
    m.touch('d');
    expect(m.get('a')).toBeUndefined();
  });

  it('refuses a bound below 1', () => {
    expect(() => new RecentMap(0, () => 1)).toThrow(/at least 1/);
  });
});
