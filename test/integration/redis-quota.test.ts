import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { QuotaExceededError, type QuotaRelease } from '../../gateway/tenants/quota.js';
import { RedisQuota } from '../../gateway/tenants/redis-quota.js';
import { quotaKeys } from '../../gateway/tenants/redis-scripts.js';
import { NO_QUOTAS, OPEN_TENANT, type Tenant, type TenantQuotas } from '../../gateway/tenants/tenant.js';
import { waitFor } from '../helpers/processes.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';

// The shared quota scripts against a real redis-server: two limiters stand
// for two gateways. Rates are so slow (one token per 1000 s) that no token
// comes back during a test, so every count below is exact.

const SLOW = 0.001;
let tenants = 0;
const tenant = (quotas: Partial<TenantQuotas>): Tenant => ({ ...OPEN_TENANT, name: `t${++tenants}`, quotas: { ...NO_QUOTAS, ...quotas } });
/** Each test's own key prefix. */
let ns = '';
let namespaces = 0;

function captureLog() {
  const lines: { level: number; msg: string; gateways?: number }[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as (typeof lines)[number]) });
  return { log, lines };
}

async function outcome(p: Promise<QuotaRelease>): Promise<'granted' | QuotaExceededError> {
  try {
    await p;
    return 'granted';
  } catch (error) {
    if (error instanceof QuotaExceededError) return error;
    throw error;
  }
}

describe('RedisQuota: limits shared by gateways through Redis', () => {
  let redis: RedisServer;
  const open: RedisQuota[] = [];
  const gateway = async (heartbeatMs = 100): Promise<{ quota: RedisQuota; lines: ReturnType<typeof captureLog>['lines'] }> => {
    const { log, lines } = captureLog();
    const quota = new RedisQuota({ url: redis.url, namespace: ns, log, heartbeatMs, gatewayCountHint: 1 });
    open.push(quota);
    await quota.start();
    return { quota, lines };
  };

  beforeAll(async () => {
    redis = await startRedis();
  });
  beforeEach(() => {
    ns = `quota-test-${++namespaces}`;
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((q) => q.close()));
  });
  afterAll(async () => {
    await redis.close();
  });

  it('the sum over two gateways holds: request rate and items rate', async () => {
    const { quota: g1 } = await gateway();
    const { quota: g2 } = await gateway();
    expect(g1.mode).toBe('redis');
    const t = tenant({ requestsPerSecond: SLOW, requestBurst: 5 });
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => outcome((i % 2 === 0 ? g1 : g2).acquire(t, 1))));
    expect(results.filter((r) => r === 'granted')).toHaveLength(5);
    const refused = results.find((r): r is QuotaExceededError => r !== 'granted');
    expect(refused?.limit).toBe('requests');
    expect(refused?.retryAfterMs).toBeGreaterThan(900_000);

    const u = tenant({ batchItemsPerSecond: SLOW, batchItemBurst: 10 });
    expect(await outcome(g1.acquire(u, 6))).toBe('granted');
    expect(await outcome(g2.acquire(u, 4))).toBe('granted');
    expect(((await outcome(g2.acquire(u, 1))) as QuotaExceededError).limit).toBe('items');
  });

  it('concurrency is counted over both gateways until released; a dead gateway’s count is dropped', async () => {
    const { quota: g1 } = await gateway();
    const { quota: g2 } = await gateway();
    const t = tenant({ concurrentRequests: 3 });
    const r1 = await g1.acquire(t, 1);
    await g2.acquire(t, 1);
    await g1.acquire(t, 1);
    const refused = (await outcome(g2.acquire(t, 1))) as QuotaExceededError;
    expect(refused.limit).toBe('concurrency');
    expect(refused.retryAfterMs).toBe(1000);
    r1(); // the release reaches Redis on g1's connection: g2 sees it soon, not at once
    await waitFor(async () => (await outcome(g2.acquire(t, 1))) === 'granted', 10_000, 'the released slot');
    expect(await outcome(g1.acquire(t, 1))).not.toBe('granted');

    // A gateway that died holding two requests: its lease has ended, so they no longer count.
    const client = redis.client();
    const u = tenant({ concurrentRequests: 2 });
    await client.hset(quotaKeys(ns).tenant(u.name, 'inflight'), 'ghost', 2);
    await client.zadd(quotaKeys(ns).gateways, 1, 'ghost');
    expect(await outcome(g1.acquire(u, 1))).toBe('granted');
    expect(await client.hget(quotaKeys(ns).tenant(u.name, 'inflight'), 'ghost')).toBeNull();
  });

  it('answers a refusal that is already certain without asking Redis', async () => {
    const { quota: g1 } = await gateway();
    const t = tenant({ requestsPerSecond: SLOW, requestBurst: 1 });
    const client = redis.client();
    const calls = async (): Promise<number> => {
      const info = await client.info('commandstats');
      return Number(/cmdstat_evalsha:calls=(\d+)/.exec(info)?.[1] ?? 0) + Number(/cmdstat_eval:calls=(\d+)/.exec(info)?.[1] ?? 0);
    };
    await g1.acquire(t, 1);
    expect(await outcome(g1.acquire(t, 1))).not.toBe('granted'); // Redis says no, and when
    const before = await calls();
    for (let i = 0; i < 20; i++) expect(await outcome(g1.acquire(t, 1))).not.toBe('granted');
    expect(() => g1.precheck(t)).toThrow(QuotaExceededError);
    expect(await calls()).toBe(before);
  });

  it('counts how many gateways share the limits, from their leases', async () => {
    const { quota: g1 } = await gateway();
    await gateway();
    await gateway();
    await waitFor(() => g1.gateways === 3, 10_000, 'three live gateways');
  });

  it('falls back to limit ÷ gateways on each gateway when Redis stops, says so once, and counts in Redis again when it is back', async () => {
    const { quota: g1, lines } = await gateway();
    const { quota: g2 } = await gateway();
    await waitFor(() => g1.gateways === 2, 10_000, 'two live gateways');
    const t = tenant({ requestsPerSecond: SLOW, requestBurst: 6, concurrentRequests: 4 });
    const held = await g1.acquire(t, 1);

    await redis.stop(true);
    const local: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await outcome(g1.acquire(t, 1));
      local.push(r === 'granted' ? 'granted' : r.limit);
    }
    // This gateway's share while Redis is away: burst 6 ÷ 2 = 3 requests, 4 ÷ 2 = 2 concurrent (one held already).
    expect(g1.mode).toBe('local');
    expect(local).toEqual(['granted', 'concurrency', 'concurrency', 'concurrency', 'concurrency', 'concurrency']);
    held();
    expect(await outcome(g1.acquire(t, 1))).toBe('granted');
    expect(((await outcome(g1.acquire(t, 1))) as QuotaExceededError).message).toMatch(
      /at its quota of 2 concurrent requests \(this gateway enforces its share while the shared quota store is unreachable\)/,
    );
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toMatch(/enforces each tenant's limits ÷ 2 gateway\(s\)/);

    await redis.restart();
    await waitFor(() => g1.mode === 'redis' && g2.mode === 'redis', 20_000, 'both gateways counting in Redis again');
    expect(lines.filter((l) => l.msg === 'shared quotas available again: counting in Redis')).toHaveLength(1);
    // The restarted Redis was empty; g1 wrote back the two requests it holds.
    const client = redis.client();
    await waitFor(async () => (await client.hget(quotaKeys(ns).tenant(t.name, 'inflight'), g1.gatewayId)) === '2', 10_000, 'in-flight count rewritten');
  });
});

describe('RedisQuota without a reachable Redis at start', () => {
  it('starts on local shares (limit ÷ --gateway-count-hint) and says so once', async () => {
    const { log, lines } = captureLog();
    // A port nobody listens on: 1 is reserved and closed on any sane test machine.
    const quota = new RedisQuota({ url: 'redis://127.0.0.1:1', log, gatewayCountHint: 2, heartbeatMs: 50 });
    await quota.start();
    try {
      expect(quota.mode).toBe('local');
      const t = tenant({ requestsPerSecond: SLOW, requestBurst: 4 });
      const results = [];
      for (let i = 0; i < 4; i++) results.push(await outcome(quota.acquire(t, 1)));
      expect(results.filter((r) => r === 'granted')).toHaveLength(2);
      await new Promise((r) => setTimeout(r, 200)); // a few failed heartbeats: still one warning
      expect(lines.filter((l) => l.level === 40)).toHaveLength(1);
    } finally {
      await quota.close();
    }
  });
});
