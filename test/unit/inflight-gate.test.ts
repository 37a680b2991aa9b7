import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { failedLate, type GateTenant, InflightGate, isHold } from '../../gateway/inference/inflight-gate.js';
import { parseServeOptions } from '../../gateway/options.js';

function hold(gate: InflightGate, declared: number | undefined, tenant?: GateTenant, patienceMs?: number) {
  const h = gate.enter(declared, tenant, patienceMs);
  if (!isHold(h)) throw new Error(`refused: ${h.message}`);
  return h;
}

describe('InflightGate', () => {
  it('admits declared sizes up to the bound and refuses past it with RESOURCE_EXHAUSTED', () => {
    const gate = new InflightGate(1000);
    hold(gate, 600);
    hold(gate, 400);
    const refused = gate.enter(1);
    expect(isHold(refused)).toBe(false);
    if (isHold(refused)) return;
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused.message).toMatch(/2 requests hold 1000 bytes in flight; admitting 1 more would pass --max-inflight-bytes 1000/);
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    expect(gate.bytes).toBe(1000);
  });

  it('always admits one request on an empty gate, even one larger than the bound', () => {
    const gate = new InflightGate(100);
    const h = hold(gate, 5000);
    expect(isHold(gate.enter(1))).toBe(false);
    h.release();
    expect(gate.requests).toBe(0);
    expect(gate.bytes).toBe(0);
  });

  it('counts an unknown size as 1 MiB, then as the running mean of the sizes settled', () => {
    const gate = new InflightGate(3 << 20);
    const a = hold(gate, undefined);
    expect(gate.bytes).toBe(1 << 20);
    a.settle(1000);
    expect(gate.bytes).toBe(1000);
    a.release();
    hold(gate, undefined);
    expect(gate.bytes).toBe(1000);
  });

  it('releases once: a second release or a settle after it changes nothing', () => {
    const gate = new InflightGate(1000);
    const h = hold(gate, 300);
    h.release();
    h.release();
    h.settle(900);
    expect(gate.bytes).toBe(0);
    expect(gate.requests).toBe(0);
  });

  describe('with --max-inflight-wait-ms', () => {
    /** A gate bounded at 100 ms that has answered 1 MB every 10 ms while busy: 100 MB/s. */
    function warmed(maxWaitMs = 100) {
      let ns = 0n;
      const gate = new InflightGate(1 << 30, { maxWaitMs, now: () => ns });
      const keep = hold(gate, 1_000_000);
      for (let i = 0; i < 17; i++) {
        const h = hold(gate, 1_000_000);
        ns += 10_000_000n;
        h.release('answered');
      }
      return { gate, keep, advance: (ms: number) => (ns += BigInt(ms) * 1_000_000n) };
    }

    it('admits while the bytes held drain within the bound, and refuses past it with RESOURCE_EXHAUSTED and a pushback', () => {
      const { gate } = warmed();
      for (let i = 0; i < 9; i++) hold(gate, 1_000_000); // 10 MB held: 100 ms at 100 MB/s
      const refused = gate.enter(1_000_000);
      expect(isHold(refused)).toBe(false);
      if (isHold(refused)) return;
      expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(refused.message).toMatch(
        /^server overloaded: 10 requests hold 10000000 bytes in flight, about 110 ms of work at the 100\.0 MB\/s the gateway answers; admitting 1000000 more bytes would pass --max-inflight-wait-ms 100$/,
      );
      expect(refused.retryAfterMs).toBe(10);
      expect(gate.requests).toBe(10);
    });

    it('admits by the byte bound alone until it has measured the rate, and once the rate is stale', () => {
      const gate = new InflightGate(1 << 30, { maxWaitMs: 1, now: () => 0n });
      for (let i = 0; i < 50; i++) hold(gate, 1_000_000);
      const { gate: g, advance } = warmed(1);
      expect(isHold(g.enter(1_000_000))).toBe(false);
      advance(1_001);
      expect(isHold(g.enter(1_000_000))).toBe(true);
    });

    it('past the bound, refuses only tenants over their weighted share of it: a flood does not crowd out the others', () => {
      const { gate } = warmed(); // 100 ms at 100 MB/s: 10 MB; the open tenant holds 1 MB
      const a = { name: 'a', weight: 1 };
      const b = { name: 'b', weight: 3 };
      for (let i = 0; i < 9; i++) hold(gate, 1_000_000, a); // 9 MB of a's: 100 ms held
      // a is over its share (1 of 2 active weights: 5 MB) …
      const refused = gate.enter(1_000_000, a);
      expect(isHold(refused)).toBe(false);
      if (!isHold(refused)) expect(refused.message).toMatch(/; tenant 'a' holds 9000000 bytes of its share of 5000000; admitting 1000000 more bytes/);
      // … b holds nothing, and its share with a and the open tenant (3 of 5 weights) is 6 MB of the bound, and
      // more of what is held as it grows: admitted past the bound up to 3/5 of the bytes held.
      for (let i = 0; i < 13; i++) hold(gate, 1_000_000, b); // at 13 MB of 23: its share is 13.8 MB
      const full = gate.enter(1_000_000, b);
      expect(isHold(full)).toBe(false);
      if (!isHold(full)) expect(full.message).toMatch(/; tenant 'b' holds 13000000 bytes of its share of 13800000; /);
      expect(gate.requests).toBe(23);
    });

    it('a tenant below its share of the bytes held is admitted when a flood admitted earlier holds more than the bound', () => {
      let ns = 0n;
      const gate = new InflightGate(1 << 30, { maxWaitMs: 100, now: () => ns });
      const a = { name: 'a', weight: 1 };
      const b = { name: 'b', weight: 1 };
      // a's flood is admitted while the rate is still unknown: 20 MB.
      for (let i = 0; i < 20; i++) hold(gate, 1_000_000, a);
      // Then the gateway answers 1 MB every 50 ms: 20 MB/s, so a holds 1 s of work, ten times the bound,
      // and b's share of the bound is 1 MB.
      for (let i = 0; i < 17; i++) {
        const h = hold(gate, 1_000_000);
        ns += 50_000_000n;
        h.release('answered');
      }
      for (let i = 0; i < 4; i++) hold(gate, 1_000_000, b);
      // b holds 4 MB, over its share of the bound but under half of the 24 MB held: admitted. a is refused.
      expect(isHold(gate.enter(1_000_000, b))).toBe(true);
      const refused = gate.enter(1_000_000, a);
      expect(isHold(refused)).toBe(false);
      if (!isHold(refused)) expect(refused.message).toMatch(/; tenant 'a' holds 20000000 bytes of its share of 12500000; /);
    });

    it('always admits one request on an empty gate', () => {
      const { gate, keep } = warmed(1);
      keep.release('answered');
      expect(gate.requests).toBe(0);
      expect(isHold(gate.enter(50_000_000))).toBe(true);
    });
  });
});

describe('InflightGate: the bytes it admits, learned from late releases', () => {
  const MB = 1_000_000;
  /** The deadline every request of these floods carries (ms left at admission). */
  const P = 300;
  function clocked(maxBytes = 100 * MB) {
    let ns = 1n;
    const gate = new InflightGate(maxBytes, { now: () => ns });
    return { gate, advance: (ms: number) => (ns += BigInt(Math.round(ms * 1e6))) };
  }

  it('admits up to --max-inflight-bytes while nothing it admitted ends late: answers and other failures teach nothing', () => {
    const { gate } = clocked();
    const held = Array.from({ length: 60 }, () => hold(gate, MB, undefined, P));
    for (const h of held.slice(0, 30)) h.release('answered');
    for (const h of held.slice(30, 50)) h.release('failed');
    expect(gate.admitBytes).toBe(100 * MB);
    for (let i = 0; i < 90; i++) hold(gate, MB, undefined, P);
    expect(gate.bytes).toBe(100 * MB);
  });

  it('requests shed or timed out after they were admitted cut the bytes admitted to 3/4 of those held, once per 100 ms, and it refuses past that', () => {
    const { gate, advance } = clocked();
    const held = Array.from({ length: 43 }, () => hold(gate, MB, undefined, P));
    // A tenth of the recent releases must be late: the fourth in a row is (40 MB held then).
    for (const h of held.slice(0, 3)) h.release('late');
    expect(gate.admitBytes).toBe(100 * MB);
    held[3]?.release('late');
    expect(gate.admitBytes).toBe(30 * MB);
    held[4]?.release('late'); // the same burst: no second cut
    expect(gate.admitBytes).toBe(30 * MB);
    for (const h of held.slice(5, 15)) h.release('answered'); // 28 MB held
    // One typical request (1 MiB until sizes are settled) more per limit's worth of answers.
    expect(gate.admitBytes).toBeGreaterThan(30.3 * MB);
    expect(gate.admitBytes).toBeLessThan(30.4 * MB);
    hold(gate, MB, undefined, P);
    hold(gate, MB, undefined, P);
    const refused = gate.enter(MB, undefined, P);
    expect(isHold(refused)).toBe(false);
    if (isHold(refused)) return;
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused.message).toMatch(
      /^server overloaded: 30 requests hold 30000000 bytes in flight; requests it admitted lately were shed or timed out before they ran, so the gateway admits about 30\d{6} bytes now for requests with deadlines up to 600 ms \(of --max-inflight-bytes 100000000\); admitting 1000000 more bytes would pass that$/,
    );
    expect(refused.retryAfterMs).toBeGreaterThan(0);
    advance(101);
    held[15]?.release('late'); // 30 MB held: a new event, cut again
    expect(gate.admitBytes).toBeCloseTo(0.75 * 30 * MB, -3);
  });

  it('a few late releases among many answers, as tight deadlines at light load give, cut nothing', () => {
    const { gate, advance } = clocked();
    for (let i = 0; i < 500; i++) {
      const a = hold(gate, MB, undefined, P);
      const b = hold(gate, MB, undefined, P);
      a.release(i % 20 === 0 ? 'late' : 'answered');
      b.release('answered');
      advance(200);
    }
    expect(gate.admitBytes).toBe(100 * MB);
  });

  it('grows back after the overload: by half after 2 s without a late release, up to the bound', () => {
    const { gate, advance } = clocked();
    const held = Array.from({ length: 43 }, () => hold(gate, MB, undefined, P));
    for (const h of held.slice(0, 4)) h.release('late');
    for (const h of held.slice(4)) h.release('answered');
    const cut = gate.admitBytes;
    expect(cut).toBeLessThan(32 * MB);
    advance(2_001);
    hold(gate, MB, undefined, P).release('answered');
    expect(gate.admitBytes).toBeGreaterThan(1.5 * cut);
    for (let i = 0; i < 5; i++) {
      advance(2_001);
      hold(gate, MB, undefined, P).release('answered');
    }
    expect(gate.admitBytes).toBe(100 * MB);
  });

  it('never admits less than 16 typical requests, and always admits one on an empty gate', () => {
    const { gate, advance } = clocked(1000 * MB);
    for (let i = 0; i < 20; i++) {
      const h = hold(gate, 10 * MB, undefined, P);
      h.settle(10 * MB);
      h.release('late');
      advance(101);
    }
    expect(gate.admitBytes).toBeGreaterThanOrEqual(160 * MB - 1);
    expect(gate.admitBytes).toBeLessThan(161 * MB);
    expect(isHold(gate.enter(500 * MB))).toBe(true);
  });

  it('past the learned bound, refuses only tenants over their weighted share of it', () => {
    const { gate } = clocked();
    const a = { name: 'a', weight: 1 };
    const b = { name: 'b', weight: 1 };
    const flood = Array.from({ length: 43 }, () => hold(gate, MB, a, P));
    for (const h of flood.slice(0, 4)) h.release('late'); // 30 MB admitted; a holds 39
    const alone = gate.enter(MB, a, P);
    expect(isHold(alone)).toBe(false);
    if (!isHold(alone)) expect(alone.message).toMatch(/admits about 30000000 bytes now for requests with deadlines up to 600 ms \(of --max-inflight-bytes 100000000\); admitting 1000000 more bytes would pass that$/);
    // b holds nothing: its share is half of what is held.
    for (let i = 0; i < 5; i++) hold(gate, MB, b, P);
    expect(gate.requests).toBe(44);
    const refused = gate.enter(MB, a, P);
    expect(isHold(refused)).toBe(false);
    if (!isHold(refused)) expect(refused.message).toMatch(/; tenant 'a' holds 39000000 bytes of its share of 22000000; admitting 1000000 more bytes would pass that$/);
  });

  it('holds only callers up to twice as patient as those that failed late: a caller with 20 s to spare, or none, is admitted past it', () => {
    const { gate } = clocked();
    const held = Array.from({ length: 43 }, () => hold(gate, MB, undefined, P));
    for (const h of held.slice(0, 4)) h.release('late');
    expect(isHold(gate.enter(MB, undefined, 2 * P))).toBe(false);
    expect(isHold(gate.enter(MB, undefined, 20_000))).toBe(true);
    expect(isHold(gate.enter(MB))).toBe(true);
  });

  it('after a full queue refused requests without deadlines, holds every caller', () => {
    const { gate } = clocked();
    const held = Array.from({ length: 43 }, () => hold(gate, MB));
    for (const h of held.slice(0, 4)) h.release('late');
    const refused = gate.enter(MB);
    expect(isHold(refused)).toBe(false);
    if (!isHold(refused)) expect(refused.message).toMatch(/admits about 30000000 bytes now \(of --max-inflight-bytes 100000000\); admitting 1000000 more bytes would pass that$/);
  });
});

describe('failedLate', () => {
  it('names the failures of requests admitted for nothing: past the deadline, a full queue, shed or timed out by a deadline of their own', () => {
    const shed = "Request timeout expired: model 'm/1' shed the request before it ran: …";
    expect(failedLate(status.UNAVAILABLE, shed, true)).toBe(true);
    expect(failedLate(status.UNAVAILABLE, "Request timeout expired: model 'm/1', after 5000 µs in the queue", true)).toBe(true);
    expect(failedLate(status.DEADLINE_EXCEEDED, 'Deadline exceeded', true)).toBe(true);
    for (const own of [true, false]) expect(failedLate(status.UNAVAILABLE, "Exceeds maximum queue size: model 'm/1' priority level 1 holds 4 of 4 requests", own)).toBe(true);
    // Due only at the model's SLO: shed by the batcher's estimate, which the gate does not learn from.
    expect(failedLate(status.UNAVAILABLE, shed, false)).toBe(false);
    expect(failedLate(status.UNAVAILABLE, "Request for unknown model: 'x' is not found", true)).toBe(false);
    expect(failedLate(status.INVALID_ARGUMENT, 'Request timeout expired', true)).toBe(false);
    expect(failedLate(status.CANCELLED, 'Cancelled', true)).toBe(false);
  });
});

describe('--max-inflight-wait-ms', () => {
  it('is off by default, takes whole ms, and says what was wrong otherwise', () => {
    const repo = ['--model-repository', '/models'];
    expect(parseServeOptions(repo).maxInflightWaitMs).toBe(0);
    expect(parseServeOptions([...repo, '--max-inflight-wait-ms', '150']).maxInflightWaitMs).toBe(150);
    for (const bad of ['-1', '1.5', 'soon', '3600001']) {
      expect(() => parseServeOptions([...repo, `--max-inflight-wait-ms=${bad}`])).toThrow(`--max-inflight-wait-ms: expected an integer from 0 to 3600000, got '${bad}'`);
    }
  });
});
