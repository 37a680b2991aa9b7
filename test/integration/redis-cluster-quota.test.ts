import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuotaExceededError, type QuotaRelease } from '../../gateway/tenants/quota.js';
import { RedisQuota } from '../../gateway/tenants/redis-quota.js';
import { ACQUIRE, quotaKeys } from '../../gateway/tenants/redis-scripts.js';
import { NO_QUOTAS, OPEN_TENANT, type Tenant, type TenantQuotas } from '../../gateway/tenants/tenant.js';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { zerosRequest } from '../helpers/call-outcome.js';
import { startGateway } from '../helpers/gateway-process.js';
import { waitFor } from '../helpers/processes.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';
import { type RedisClusterProcesses, startRedisCluster } from '../helpers/redis-cluster.js';

// The quota scripts on a real 3-master Redis Cluster (redis-server
// --cluster-enabled, joined by redis-cli --cluster create). A script may
// only touch keys of one slot there: the quota keys share a hash tag, so two
// limiters standing for two gateways share a tenant's burst and concurrency
// through the cluster exactly as through one Redis. The same script on keys
// without the tag is refused CROSSSLOT, which is what the tag is for.

const SLOW = 0.001;
const KEY = 'cluster-cli-key-0123456789';
let n = 0;
const tenant = (quotas: Partial<TenantQuotas>): Tenant => ({ ...OPEN_TENANT, name: `cluster-t${++n}`, quotas: { ...NO_QUOTAS, ...quotas } });

async function outcome(p: Promise<QuotaRelease>): Promise<string> {
  try {
    await p;
    return 'granted';
  } catch (error) {
    if (error instanceof QuotaExceededError) return error.limit;
    throw error;
  }
}

describe('RedisQuota on a 3-master Redis Cluster', () => {
  let cluster: RedisClusterProcesses;
  const open: RedisQuota[] = [];
  const gateway = async (): Promise<RedisQuota> => {
    const quota = new RedisQuota({ url: cluster.url, namespace: 'cl', log: pino({ level: 'silent' }), heartbeatMs: 100, gatewayCountHint: 1 });
    open.push(quota);
    await quota.start();
    return quota;
  };

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(open.map((q) => q.close()));
    await cluster?.close();
  });

  it('the keys of one script hash to one slot, and the tenants of different namespaces spread over the masters', async () => {
    const client = cluster.client();
    const k = quotaKeys('cl');
    const slots = await Promise.all([k.tenant('a', 'requests'), k.tenant('b', 'inflight'), k.gateways].map((key) => client.cluster('KEYSLOT', key)));
    expect(new Set(slots).size).toBe(1);
    const spread = new Set(await Promise.all(['ns1', 'ns2', 'ns3', 'ns4', 'ns5', 'ns6'].map((ns) => client.cluster('KEYSLOT', quotaKeys(ns).gateways))));
    expect(spread.size).toBeGreaterThan(1);
  });

  it('two gateways share a request burst and a concurrency limit through the cluster', async () => {
    const [g1, g2] = [await gateway(), await gateway()];
    expect(g1.mode).toBe('redis');
    // g1 learns of g2 at its next heartbeat (100 ms).
    await waitFor(() => g1.gateways === 2, 5_000, 'g1 to see two gateways');
    const t = tenant({ requestsPerSecond: SLOW, requestBurst: 4 });
    const results = [];
    for (let i = 0; i < 6; i++) results.push(await outcome((i % 2 === 0 ? g1 : g2).acquire(t, 1)));
    expect(results).toEqual(['granted', 'granted', 'granted', 'granted', 'requests', 'requests']);

    const c = tenant({ concurrentRequests: 3 });
    const held = [await g1.acquire(c, 1), await g2.acquire(c, 1), await g1.acquire(c, 1)];
    expect(await outcome(g2.acquire(c, 1))).toBe('concurrency');
    held[0]?.();
    // The release is one script call, not awaited by the caller: wait until the cluster has it.
    const client = cluster.client();
    await waitFor(async () => (await client.hget(quotaKeys('cl').tenant(c.name, 'inflight'), g1.gatewayId)) === '1', 5_000, 'the release in the cluster');
    expect(await outcome(g2.acquire(c, 1))).toBe('granted');
  });

  it('fabriek serve --quota-redis redis-cluster://… counts a tenant\'s quota in the cluster', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fabriek-cluster-cli-'));
    cpSync(join(TEST_REPOSITORY, 'identity_fp32'), join(dir, 'models', 'identity_fp32'), { recursive: true });
    writeFileSync(join(dir, 'tenants.yaml'), `tenants:\n  tight:\n    keys: ["${hashKey(KEY)}"]\n    models: ["*"]\n    quotas: { requests_per_second: 0.001, request_burst: 3 }\n`);
    const gw = await startGateway(['--model-repository', join(dir, 'models'), '--workers', '1', '--tenants', join(dir, 'tenants.yaml'), '--quota-redis', cluster.url]);
    try {
      await waitFor(() => gw.stderr().includes('shared quotas: counting in Redis'), 10_000, 'the gateway to count quotas in the cluster');
      const request = zerosRequest('identity_fp32', ['INPUT0'], 16);
      const results: string[] = [];
      for (let i = 0; i < 5; i++) {
        results.push(await gw.client.modelInfer(request, { metadata: { authorization: `Bearer ${KEY}` } }).then(() => 'OK', (e: ServiceError) => GrpcStatus[e.code] ?? '?'));
      }
      expect(results).toEqual(['OK', 'OK', 'OK', 'RESOURCE_EXHAUSTED', 'RESOURCE_EXHAUSTED']);
      expect(await cluster.client().exists(quotaKeys().tenant('tight', 'requests'))).toBe(1);
    } finally {
      await gw.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it('without the shared hash tag the acquire script is refused CROSSSLOT', async () => {
    const client = cluster.client();
    const keys = ['untagged:a:requests', 'untagged:a:items', 'untagged:a:inflight', 'untagged:gateways'];
    expect(new Set(await Promise.all(keys.map((key) => client.cluster('KEYSLOT', key)))).size).toBeGreaterThan(1);
    await expect(ACQUIRE.run(client, keys, ['gw', 1, 1, 0, 0, 1, 1])).rejects.toThrow(/CROSSSLOT/);
  });
});
