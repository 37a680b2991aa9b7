import { describe, expect, it } from 'vitest';
import { Cancellation, type CancelSignal } from '../../core/cancellation.js';

describe('Cancellation', () => {
  it('tells each listener added before the abort once, and none added after', () => {
    const c = new Cancellation();
    const calls: string[] = [];
    const a = (): void => void calls.push('a');
    const b = (): void => void calls.push('b');
    c.addEventListener('abort', a);
    c.addEventListener('abort', b, { once: true });
    expect(c.aborted).toBe(false);
    c.abort();
    c.abort();
    expect(c.aborted).toBe(true);
    expect(calls).toEqual(['a', 'b']);
    c.addEventListener('abort', () => calls.push('late'));
    c.abort();
    expect(calls).toEqual(['a', 'b']);
  });

  it('forgets a removed listener; removing one never added does nothing', () => {
    const c = new Cancellation();
    let n = 0;
    const l = (): void => void n++;
    c.removeEventListener('abort', l);
    c.addEventListener('abort', l);
    c.removeEventListener('abort', l);
    c.abort();
    expect(n).toBe(0);
  });

  it('aborts from an emitter or a timer as it is (abort is bound)', async () => {
    const c = new Cancellation();
    setTimeout(c.abort, 1);
    await new Promise((r) => setTimeout(r, 10));
    expect(c.aborted).toBe(true);
  });

  it('is what an AbortSignal also is, so HTTP calls and tests pass one', () => {
    const controller = new AbortController();
    const signal: CancelSignal = controller.signal;
    let told = false;
    signal.addEventListener('abort', () => (told = true), { once: true });
    controller.abort();
    expect([signal.aborted, told]).toEqual([true, true]);
  });
});
