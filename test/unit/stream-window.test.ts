import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { NARROW_WINDOW_BYTES, QUIET_NS, REFUSALS_TO_NARROW, StreamWindows, WIDE_WINDOW_BYTES } from '../../gateway/grpc/stream-window.js';

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

/** Refuses `times` calls on `session` at once: by default as many as narrow it. */
function refuse(windows: StreamWindows, session: FakeSession, times = REFUSALS_TO_NARROW): void {
  for (let i = 0; i < times; i++) windows.refused(session);
}

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

  it('narrows a session at its REFUSALS_TO_NARROW-th refusal, once, and widens it after a quiet second', () => {
    const windows = new StreamWindows({ now });
    const s = new FakeSession();
    refuse(windows, s, REFUSALS_TO_NARROW - 1);
    expect(s.announced).toEqual([]);
    expect(windows.narrowSessions).toBe(0);
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
    refuse(windows, a);
    advance(500);
    refuse(windows, b);
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
      refuse(windows, s);
      advance(QUIET_MS + 1);
    }
    expect(s.announced).toEqual([NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES, NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES, NARROW_WINDOW_BYTES, WIDE_WINDOW_BYTES]);
    expect(windows.narrowings).toBe(3);
  });

  it('drops a session that closed at its next check, announcing nothing more to it, and ignores a closed one', () => {
    const windows = new StreamWindows({ now });
    const s = new FakeSession();
    refuse(windows, s);
    s.closed = true;
    advance(QUIET_MS + 1);
    expect(windows.narrowSessions).toBe(0);
    expect(s.announced).toEqual([NARROW_WINDOW_BYTES]);
    const gone = new FakeSession();
    gone.destroyed = true;
    refuse(windows, gone);
    expect(gone.announced).toEqual([]);
    expect(windows.narrowSessions).toBe(0);
  });

  it('reports a session that refuses the settings', () => {
    const errors: unknown[] = [];
    const windows = new StreamWindows({ now, onError: (e) => errors.push(e) });
    const stuck = new FakeSession();
    stuck.refuse = true;
    refuse(windows, stuck);
    expect(errors).toHaveLength(1);
  });

  it('close stops the timer: the windows stay as they were', () => {
    const windows = new StreamWindows({ now });
    const s = new FakeSession();
    refuse(windows, s);
    windows.close();
    advance(5_000);
    expect(s.announced).toEqual([NARROW_WINDOW_BYTES]);
  });

  it('keeps the wide window for a session refused now and then: the count starts again each QUIET_NS', () => {
    // A proxy's pooled connection on which one caller is refused a few times a second (a tenant at its quota).
    const windows = new StreamWindows({ now });
    const s = new FakeSession();
    const gap = Math.ceil(QUIET_MS / (REFUSALS_TO_NARROW - 1));
    for (let i = 0; i < 5 * REFUSALS_TO_NARROW; i++) {
      windows.refused(s);
      advance(gap);
    }
    expect(s.announced).toEqual([]);
    expect(windows.narrowings).toBe(0);
    // A burst of them within the second narrows it.
    refuse(windows, s);
    expect(s.announced).toEqual([NARROW_WINDOW_BYTES]);
  });

  it('forgets the refusals it counted, of sessions open or closed, and then arms no timer', () => {
    const windows = new StreamWindows({ now });
    const open = new FakeSession();
    const closed = new FakeSession();
    refuse(windows, open, REFUSALS_TO_NARROW - 1);
    refuse(windows, closed, REFUSALS_TO_NARROW - 1);
    closed.closed = true;
    expect(vi.getTimerCount()).toBe(1);
    advance(QUIET_MS + 1);
    expect(vi.getTimerCount()).toBe(0);
    // The count started over: one more refusal does not narrow it.
    windows.refused(open);
    expect(open.announced).toEqual([]);
    expect(closed.announced).toEqual([]);
  });
});
