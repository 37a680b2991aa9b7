import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { type GateTenant, InflightGate, isHold } from '../../gateway/inference/inflight-gate.js';
import { parseServeOptions } from '../../gateway/options.js';

function hold(gate: InflightGate, declared: number | undefined, tenant?: GateTenant) {
  const h = gate.enter(declared, tenant);
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
        h.release(true);
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
        h.release(true);
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
      keep.release(true);
      expect(gate.requests).toBe(0);
      expect(isHold(gate.enter(50_000_000))).toBe(true);
    });
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
