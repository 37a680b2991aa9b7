import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { NARROW_WINDOW_BYTES, QUIET_NS, StreamWindows, WIDE_WINDOW_BYTES } from '../../gateway/grpc/stream-window.js';

/** A session that records the windows announced to it. */
class FakeSession {
  readonly announced: number[] = [];
  closed = false;
  destroyed = false;
  refuse = false;
  settings(settings: { initialWindowSize: number }): void {
    if (this.refuse) throw new Error('ERR_HTTP2_MAX_PENDING_SETTINGS_ACK');
    this.announced.push(settings.initialWindowSize);
  }
}

const MS = 1_000_000n;
const QUIET_MS = Number(QUIET_NS / MS);

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

  it('narrows a session at its first refusal, once, and widens it after a quiet second', () => {
    const windows = new StreamWindows({ now });
    const s = new FakeSession();
    windows.refused(s);
    windows.refused(s);
    expect(s.announced).toEqual([NARROW_WINDOW_BYTES]);
    expect(windows.narrowSessions).toBe(1);
    advance(QUIET_MS - 1);
    expect(s.announced).toEqual([NARROW_WINDOW_BYTES]);
    advance(2);
    expect(s.announced).toEqual([NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES]);
    expect(windows.narrowSessions).toBe(0);
    expect(windows.narrowings).toBe(1);
  });

  // That another connection keeps the wide window while one is refused is the integration test's
  // (early-refusal.test.ts): here a session is only ever known through its own refusals.
  it('keeps a session narrow while its refusals go on, and widens each a second after its own last', () => {
    const windows = new StreamWindows({ now });
    const a = new FakeSession();
    const b = new FakeSession();
    windows.refused(a);
    advance(500);
    windows.refused(b);
    for (let i = 0; i < 4; i++) {
      advance(400);
      windows.refused(a);
    }
    // b's only refusal was 1.6 s ago; a's last just now, each within a second of the one before.
    expect(b.announced).toEqual([NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES]);
    expect(a.announced).toEqual([NARROW_WINDOW_BYTES]);
    advance(QUIET_MS - 100);
    expect(a.announced).toEqual([NARROW_WINDOW_BYTES]);
    advance(200);
    expect(a.announced).toEqual([NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES]);
    expect(windows.narrowings).toBe(2);
  });

  it('narrows again after widening, each time a new refusal comes', () => {
    const windows = new StreamWindows({ now });
    const s = new FakeSession();
    for (let i = 0; i < 3; i++) {
      windows.refused(s);
      advance(QUIET_MS + 1);
    }
    expect(s.announced).toEqual([NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES, NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES, NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES]);
    expect(windows.narrowings).toBe(3);
  });

  it('drops a session that closed at its next check, announcing nothing more to it, and ignores a closed one', () => {
    const windows = new StreamWindows({ now });
    const s = new FakeSession();
    windows.refused(s);
    s.closed = true;
    advance(QUIET_MS + 1);
    expect(windows.narrowSessions).toBe(0);
    expect(s.announced).toEqual([NARROW_WINDOW_BYTES]);
    const gone = new FakeSession();
    gone.destroyed = true;
    windows.refused(gone);
    expect(gone.announced).toEqual([]);
    expect(windows.narrowSessions).toBe(0);
  });

  it('reports a session that refuses the settings', () => {
    const errors: unknown[] = [];
    const windows = new StreamWindows({ now, onError: (e) => errors.push(e) });
    const stuck = new FakeSession();
    stuck.refuse = true;
    windows.refused(stuck);
    expect(errors).toHaveLength(1);
  });

  it('close stops the timer: the windows stay as they were', () => {
    const windows = new StreamWindows({ now });
    const s = new FakeSession();
    windows.refused(s);
    windows.close();
    advance(5_000);
    expect(s.announced).toEqual([NARROW_WINDOW_BYTES]);
  });
});
