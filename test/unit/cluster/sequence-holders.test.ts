import { describe, expect, it } from 'vitest';
import { SequenceHolders } from '../../../gateway/cluster/sequence-holders.js';

// The primary's record of which gateway process keeps each open sequence.

/** A drop each test answers when it chooses, and the processes asked, in order. */
function drops(): { asked: string[]; answer: () => void; drop: (holder: string) => Promise<void> } {
  const asked: string[] = [];
  const pending: (() => void)[] = [];
  return {
    asked,
    answer: () => pending.shift()?.(),
    drop: (holder) => {
      asked.push(holder);
      return new Promise<void>((resolve) => pending.push(resolve));
    },
  };
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('SequenceHolders', () => {
  it('records the process that took the START, after the one that kept it dropped its own', async () => {
    const holders = new SequenceHolders<string>(() => true);
    const d = drops();
    await holders.claim('k', 'a', d.drop);
    expect(d.asked).toEqual([]);
    const b = holders.claim('k', 'b', d.drop);
    await settle();
    expect(d.asked).toEqual(['a']);
    expect(holders.holder('k')).toBe('a');
    d.answer();
    await b;
    expect(holders.holder('k')).toBe('b');
  });

  it('runs two claims of one key in turn: the second drops the first claimant, and the record names the last', async () => {
    const holders = new SequenceHolders<string>(() => true);
    const d = drops();
    await holders.claim('k', 'c', d.drop);
    // a and b take STARTs of the sequence c keeps, at once.
    const a = holders.claim('k', 'a', d.drop);
    const b = holders.claim('k', 'b', d.drop);
    await settle();
    // Only c is asked so far: b waits for a's claim (read at once, b would also have dropped c, not a).
    expect(d.asked).toEqual(['c']);
    d.answer();
    await a;
    await settle();
    expect(d.asked).toEqual(['c', 'a']);
    d.answer();
    await b;
    expect(holders.holder('k')).toBe('b');
  });

  it('keeps other keys apart, skips a holder that is gone, and forgets a process and what ended', async () => {
    const live = new Set(['a', 'b']);
    const holders = new SequenceHolders<string>((p) => live.has(p));
    const d = drops();
    await holders.claim('k1', 'a', d.drop);
    await holders.claim('k2', 'a', d.drop);
    live.delete('a');
    await holders.claim('k1', 'b', d.drop);
    expect(d.asked).toEqual([]);
    expect(holders.holder('k1')).toBe('b');
    holders.ended('k1', 'a');
    expect(holders.holder('k1')).toBe('b');
    holders.ended('k1', 'b');
    expect(holders.holder('k1')).toBeUndefined();
    holders.forget('a');
    expect(holders.holder('k2')).toBeUndefined();
  });

  it('records the claimant when the drop fails (the process that kept it is going)', async () => {
    const holders = new SequenceHolders<string>(() => true);
    await holders.claim('k', 'a', () => Promise.resolve());
    await holders.claim('k', 'b', () => Promise.reject(new Error('channel closed')));
    expect(holders.holder('k')).toBe('b');
  });
});
