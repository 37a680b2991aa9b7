import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { earliestAllowed, gcra } from '../../../gateway/tenants/gcra.js';
import { LocalQuota } from '../../../gateway/tenants/local-quota.js';
import { QuotaExceededError } from '../../../gateway/tenants/quota.js';
import { NO_QUOTAS, OPEN_TENANT, type Tenant, type TenantQuotas } from '../../../gateway/tenants/tenant.js';

const tenant = (quotas: Partial<TenantQuotas>): Tenant => ({ ...OPEN_TENANT, name: 't', quotas: { ...NO_QUOTAS, ...quotas } });

function refusal(f: () => unknown): QuotaExceededError {
  try {
    f();
  } catch (error) {
    expect(error).toBeInstanceOf(QuotaExceededError);
    expect((error as QuotaExceededError).code).toBe(status.RESOURCE_EXHAUSTED);
    return error as QuotaExceededError;
  }
  throw new Error('expected a quota refusal');
}

describe('GCRA', () => {
  it('lets a burst through at once, then one per interval, and says when the next fits', () => {
    const rate = { perSecond: 10, burst: 3 };
    let tat: number | undefined;
    for (let i = 0; i < 3; i++) {
      const a = gcra(tat, 1000, rate, 1);
      expect(a.allowed).toBe(true);
      tat = a.tat;
    }
    const refused = gcra(tat, 1000, rate, 1);
    expect(refused).toEqual({ allowed: false, tat: 1300, retryAfterMs: 100 });
    expect(gcra(tat, 1100, rate, 1).allowed).toBe(true);
    expect(earliestAllowed(1300, rate, 1)).toBe(1100);
    expect(earliestAllowed(1300, rate, 2)).toBe(1200);
  });

  it('lets a request that exactly fits its burst through whatever the clock reads (no rounding refusals)', () => {
    // (99.123 + 1e6) - 1e6 > 99.123 in floating point: computed that way, the first request of a
    // tenant with a slow rate and a burst of 1 was refused, "retry after 1 ms", at some clock readings.
    const slow = { perSecond: 0.001, burst: 1 };
    for (const now of [99.123, 5.3, 777.777, 12345.678, 0.1]) {
      expect(gcra(undefined, now, slow, 1)).toEqual({ allowed: true, tat: now + 1e6, retryAfterMs: 0 });
    }
    expect(gcra(undefined, 5.3, { perSecond: 0.001, burst: 4 }, 4).allowed).toBe(true);
  });
});

describe('LocalQuota (fake clock)', () => {
  it('limits requests per second with its burst, and tells when to retry', () => {
    let now = 0;
    const q = new LocalQuota({ now: () => now });
    const t = tenant({ requestsPerSecond: 2, requestBurst: 2 });
    q.take(t, 1);
    q.take(t, 1);
    const r = refusal(() => q.take(t, 1));
    expect(r.limit).toBe('requests');
    expect(r.retryAfterMs).toBe(500);
    expect(r.message).toBe("tenant 't' is over its quota of 2 requests/s; retry after 500 ms");
    refusal(() => q.precheck(t)); // certain without taking anything
    now = 500;
    q.precheck(t);
    q.take(t, 1);
  });

  it('limits batch items per second, and a request larger than the burst can never pass', () => {
    let now = 0;
    const q = new LocalQuota({ now: () => now });
    const t = tenant({ batchItemsPerSecond: 100, batchItemBurst: 10 });
    q.take(t, 8);
    const r = refusal(() => q.take(t, 4));
    expect(r.limit).toBe('items');
    expect(r.retryAfterMs).toBeCloseTo(20);
    q.take(t, 2);
    const tooBig = refusal(() => q.take(t, 11));
    expect(tooBig.retryAfterMs).toBeUndefined();
    expect(tooBig.message).toMatch(/a request of 11 batch items exceeds its burst of 10 items/);
    now = 100;
    q.take(t, 10);
  });

  it('is all or nothing: a refusal for items takes no request token', () => {
    const q = new LocalQuota({ now: () => 0 });
    const t = tenant({ requestsPerSecond: 1, requestBurst: 2, batchItemsPerSecond: 1, batchItemBurst: 4 });
    q.take(t, 4);
    refusal(() => q.take(t, 1)); // items
    expect(() => q.take(t, 0)).not.toThrow(); // the second request token is still there
  });

  it('limits concurrent requests until they are released; releasing twice frees one slot', () => {
    const q = new LocalQuota({ now: () => 0 });
    const t = tenant({ concurrentRequests: 2 });
    const r1 = q.take(t, 1);
    q.take(t, 1);
    const r = refusal(() => q.take(t, 1));
    expect(r.limit).toBe('concurrency');
    expect(r.retryAfterMs).toBe(1000);
    expect(r.message).toBe("tenant 't' is at its quota of 2 concurrent requests; retry when one of them is answered");
    refusal(() => q.precheck(t));
    r1();
    r1();
    q.take(t, 1);
    refusal(() => q.take(t, 1));
  });

  it("enforces limit ÷ gateways as this gateway's share", () => {
    let gateways = 4;
    const q = new LocalQuota({ now: () => 0, gateways: () => gateways, scope: ' (share)' });
    const t = tenant({ requestsPerSecond: 8, requestBurst: 8, concurrentRequests: 16 });
    q.take(t, 1);
    q.take(t, 1);
    const r = refusal(() => q.take(t, 1));
    expect(r.message).toBe("tenant 't' is over its quota of 2 requests/s (share); retry after 500 ms");
    gateways = 1;
    const t2 = { ...t, name: 'u' };
    for (let i = 0; i < 8; i++) q.take(t2, 1);
    refusal(() => q.take(t2, 1));
    gateways = 8;
    const t3 = { ...tenant({ concurrentRequests: 16 }), name: 'v' };
    q.take(t3, 1);
    q.take(t3, 1); // 16 ÷ 8 concurrent
    expect(refusal(() => q.take(t3, 1)).message).toBe(
      "tenant 'v' is at its quota of 2 concurrent requests (share); retry when one of them is answered",
    );
  });

  it('costs nothing for a tenant without quotas', () => {
    const q = new LocalQuota();
    for (let i = 0; i < 1000; i++) q.take(OPEN_TENANT, 64);
  });
});
