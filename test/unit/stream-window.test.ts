import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { NARROW_WINDOW_BYTES, QUIET_NS, StreamWindows, WIDE_WINDOW_BYTES, type WindowSession } from '../../gateway/grpc/stream-window.js';

/** A session that records the windows announced to it. */
class FakeSession extends EventEmitter {
  readonly announced: number[] = [];
  closed = false;
  destroyed = false;
  refuse = false;
  settings(settings: { initialWindowSize?: number }): void {
    if (this.refuse) throw new Error('ERR_HTTP2_MAX_PENDING_SETTINGS_ACK');
    this.announced.push(settings.initialWindowSize ?? -1);
  }
  end(): void {
    this.closed = true;
    this.emit('close');
  }
}

const asSession = (s: FakeSession): WindowSession => s as unknown as WindowSession;
const MS = 1_000_000n;

describe('StreamWindows', () => {
  let clock = 0n;
  const now = (): bigint => clock;
  /** Advances the clock and the timers together. */
  const advance = (ms: number): void => {
    clock += BigInt(ms) * MS;
    vi.advanceTimersByTime(ms);
  };

  beforeEach(() => {
    clock = 0n;
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('stays wide and announces nothing while nothing is refused', () => {
    const windows = new StreamWindows({ now });
    const s = new FakeSession();
    windows.add(asSession(s));
    advance(5_000);
    expect(windows.bytes).toBe(WIDE_WINDOW_BYTES);
    expect(s.announced).toEqual([]);
    expect(windows.narrowings).toBe(0);
  });

  it('narrows every session at the first refusal, once, and widens after a quiet second', () => {
    const windows = new StreamWindows({ now });
    const a = new FakeSession();
    const b = new FakeSession();
    windows.add(asSession(a));
    windows.add(asSession(b));
    windows.refused();
    windows.refused();
    expect(windows.bytes).toBe(NARROW_WINDOW_BYTES);
    expect(a.announced).toEqual([NARROW_WINDOW_BYTES]);
    expect(b.announced).toEqual([NARROW_WINDOW_BYTES]);
    advance(Number(QUIET_NS / MS) + 1);
    expect(windows.bytes).toBe(WIDE_WINDOW_BYTES);
    expect(a.announced).toEqual([NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES]);
    expect(b.announced).toEqual([NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES]);
    expect(windows.narrowings).toBe(1);
  });

  it('stays narrow while refusals go on, and widens a second after the last', () => {
    const windows = new StreamWindows({ now });
    const s = new FakeSession();
    windows.add(asSession(s));
    windows.refused();
    for (let i = 0; i < 5; i++) {
      advance(600);
      windows.refused();
      expect(windows.bytes).toBe(NARROW_WINDOW_BYTES);
    }
    advance(900);
    expect(windows.bytes).toBe(NARROW_WINDOW_BYTES);
    advance(200);
    expect(windows.bytes).toBe(WIDE_WINDOW_BYTES);
    expect(s.announced).toEqual([NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES]);
  });

  it('gives a session opened while narrow the narrow window, and forgets closed sessions', () => {
    const windows = new StreamWindows({ now });
    const old = new FakeSession();
    windows.add(asSession(old));
    old.end();
    windows.refused();
    expect(old.announced).toEqual([]);
    const late = new FakeSession();
    windows.add(asSession(late));
    expect(late.announced).toEqual([NARROW_WINDOW_BYTES]);
    advance(1_100);
    expect(late.announced).toEqual([NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES]);
    expect(old.announced).toEqual([]);
  });

  it('reports a session that refuses the settings and goes on with the others', () => {
    const errors: unknown[] = [];
    const windows = new StreamWindows({ now, onError: (e) => errors.push(e) });
    const stuck = new FakeSession();
    stuck.refuse = true;
    const fine = new FakeSession();
    windows.add(asSession(stuck));
    windows.add(asSession(fine));
    windows.refused();
    expect(errors).toHaveLength(1);
    expect(fine.announced).toEqual([NARROW_WINDOW_BYTES]);
  });

  it('close stops the timer: the windows stay as they were', () => {
    const windows = new StreamWindows({ now });
    const s = new FakeSession();
    windows.add(asSession(s));
    windows.refused();
    windows.close();
    advance(5_000);
    expect(s.announced).toEqual([NARROW_WINDOW_BYTES]);
  });
});
