import { describe, expect, it } from 'vitest';
import { type CallEntry, CallTable } from '../../core/call-table.js';
import { RunningCount } from '../../core/running-count.js';

interface Call extends CallEntry {
  readonly name: string;
}

const call = (name: string): Call => ({ callId: 0, name });

/** The call in flight under `id`, seen through entries() (take would remove it). */
const inFlight = (table: CallTable<Call>, id: number): Call | undefined => table.entries().find((e) => e.callId === id);

describe('CallTable', () => {
  it('hands out ids from 1, finds each call by its id, and forgets it once taken', () => {
    const table = new CallTable<Call>();
    const a = call('a');
    const b = call('b');
    expect(table.add(a)).toBe(1);
    expect(table.add(b)).toBe(2);
    expect(a.callId).toBe(1);
    expect(table.size).toBe(2);
    expect(inFlight(table, 2)).toBe(b);
    expect(table.take(1)).toBe(a);
    expect(table.take(1)).toBeUndefined();
    expect(inFlight(table, 1)).toBeUndefined();
    expect(table.size).toBe(1);
    expect(table.entries()).toEqual([b]);
  });

  it('answers nothing for an id whose slot holds another call (a stale or made-up id)', () => {
    const table = new CallTable<Call>(0, 4);
    const a = call('a');
    table.add(a); // id 1, slot 1 of 4
    expect(inFlight(table, 1 + 4)).toBeUndefined();
    expect(table.take(1 + 4)).toBeUndefined();
    expect(table.size).toBe(1);
  });

  it('never hands out the reserved id, nor an id whose slot a call still holds', () => {
    const table = new CallTable<Call>(3, 4);
    const slow = call('slow');
    expect(table.add(slow)).toBe(1); // slot 1, still in flight below
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) {
      const c = call(`c${i}`);
      ids.push(table.add(c));
      expect(table.take(c.callId)).toBe(c);
    }
    expect(ids).not.toContain(3);
    // Ids whose low bits are those of the slow call's slot (1, 5, 9, 13…) are skipped while it waits.
    expect(ids.filter((id) => (id & 3) === 1)).toEqual([]);
    expect(inFlight(table, 1)).toBe(slow);
  });

  it('grows as calls pile up, and keeps every call in flight under its id', () => {
    const table = new CallTable<Call>(0, 2);
    const calls = Array.from({ length: 100 }, (_, i) => call(`c${i}`));
    for (const c of calls) table.add(c);
    expect(table.size).toBe(100);
    expect(new Set(calls.map((c) => c.callId)).size).toBe(100);
    for (const c of calls) expect(inFlight(table, c.callId)).toBe(c);
    for (const c of calls.slice(0, 50)) expect(table.take(c.callId)).toBe(c);
    expect(table.entries()).toEqual(calls.slice(50));
  });

  it('wraps its ids around after 2^32 − 1, past the reserved id, and still finds calls with ids above 2^31', () => {
    const table = new CallTable<Call>(0, 4, 0xffffffff - 1);
    const ids: number[] = [];
    const calls: Call[] = [];
    for (let i = 0; i < 3; i++) {
      const c = call(`c${i}`);
      calls.push(c);
      ids.push(table.add(c));
    }
    expect(ids).toEqual([0xffffffff - 1, 0xffffffff, 1]);
    for (const c of calls) expect(inFlight(table, c.callId)).toBe(c);
  });
});

describe('RunningCount', () => {
  it('counts runs until they settle, fulfilled or rejected, and resolves idle() when none is left', async () => {
    const running = new RunningCount();
    await running.idle(); // none: at once
    let resolveA!: () => void;
    let rejectB!: (e: Error) => void;
    const a = new Promise<void>((r) => (resolveA = r));
    const b = new Promise<void>((_, j) => (rejectB = j));
    b.catch(() => undefined);
    running.track(a);
    running.track(b);
    expect(running.size).toBe(2);
    let idle = false;
    void running.idle().then(() => (idle = true));
    resolveA();
    await a;
    await Promise.resolve();
    expect(running.size).toBe(1);
    expect(idle).toBe(false);
    rejectB(new Error('failed run'));
    await b.catch(() => undefined);
    await new Promise((r) => setImmediate(r));
    expect(running.size).toBe(0);
    expect(idle).toBe(true);
  });
});
