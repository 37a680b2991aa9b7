import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { InflightGate, isHold } from '../../gateway/inference/inflight-gate.js';

function hold(gate: InflightGate, declared: number | undefined) {
  const h = gate.enter(declared);
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
});
