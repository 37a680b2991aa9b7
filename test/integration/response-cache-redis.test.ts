import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { type GatewayProcess, startGateway, TEST_GATEWAY_PROCESSES } from '../helpers/gateway-process.js';
import { sampleValue } from '../helpers/metrics-text.js';
import { waitFor } from '../helpers/processes.js';
import { freePort } from '../../bench/fault/redis-process.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { cacheCounts, cacheRepository, mlpRequest } from '../helpers/cache-repository.js';

// Two real gateways with --cache-config redis on one real redis-server and
// a tenants file: they share cached answers, but one tenant's answer is
// never served to another unless the model says it may be; when Redis
// stops they serve on uncached, say so once and count it, and cache again
// once it is back.

const KEYS = { alice: 'alice-key-0123456789', bob: 'bob-key-0123456789' } as const;
const TTL = 60;

describe('response cache in Redis, shared by two gateways, per tenant', () => {
  let redis: RedisServer;
  let repo: string;
  let dir: string;
  let gw1: GatewayProcess;
  let gw2: GatewayProcess;
  let assertions: ReturnType<RedisServer['client']> | undefined;
  const client = (): ReturnType<RedisServer['client']> => (assertions ??= redis.client());
  const as = (tenant: keyof typeof KEYS) => ({ metadata: { authorization: `Bearer ${KEYS[tenant]}` } });
  const stats = async (gw: GatewayProcess, model: string) => cacheCounts((await gw.client.modelStatistics(model, '', as('alice'))).modelStats[0]);
  const metricsOf = async (gw: GatewayProcess): Promise<string> =>
    (await fetch(`http://127.0.0.1:${/metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}/metrics`)).text();

  beforeAll(async () => {
    redis = await startRedis();
    repo = await cacheRepository();
    dir = await mkdtemp(join(tmpdir(), 'fabriek-cache-tenants-'));
    const tenants = join(dir, 'tenants.yaml');
    await writeFile(
      tenants,
      ['tenants:', ...Object.entries(KEYS).flatMap(([name, key]) => [`  ${name}:`, `    keys: [ "${hashKey(key)}" ]`, '    models: [ "*" ]'])].join('\n'),
    );
    const args = ['--model-repository', repo, '--workers', '1', '--log-level', 'info', '--tenants', tenants];
    const cache = ['--cache-config', `redis,host=127.0.0.1`, '--cache-config', `redis,port=${redis.port},ttl=${TTL},socket_timeout=300`];
    [gw1, gw2] = await Promise.all([startGateway([...args, ...cache]), startGateway([...args, ...cache])]);
  });

  afterAll(async () => {
    expect(await gw1?.stop()).toBe(0);
    expect(await gw2?.stop()).toBe(0);
    await redis?.close();
    await rm(repo, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  });

  it("a tenant's answer cached by one gateway is a hit on the other, with the same bytes and no execution there", async () => {
    const first = await gw1.client.modelInfer(mlpRequest('mlp_cached', 1), as('alice'));
    expect(await stats(gw1, 'mlp_cached')).toMatchObject({ misses: 1, executions: 1 });
    // The put is not awaited by the request: wait until Redis holds it.
    await waitFor(async () => (await client().keys('fabriek:cache:*')).length === 1, 5_000, 'the entry in Redis');
    const again = await gw2.client.modelInfer(mlpRequest('mlp_cached', 1), as('alice'));
    expect(again.rawOutputContents).toEqual(first.rawOutputContents);
    expect(await stats(gw2, 'mlp_cached')).toMatchObject({ success: 1, hits: 1, misses: 0, executions: 0, inferences: 0 });
    const [key] = await client().keys('fabriek:cache:*');
    const ttl = await client().ttl(key as string);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(TTL);
  });

  it("tenant A's cached answer is not served to tenant B", async () => {
    const before = await stats(gw2, 'mlp_cached');
    await gw2.client.modelInfer(mlpRequest('mlp_cached', 1), as('bob'));
    const after = await stats(gw2, 'mlp_cached');
    expect(after.hits - before.hits).toBe(0);
    expect(after.misses - before.misses).toBe(1);
    expect(after.executions - before.executions).toBe(1);
    await waitFor(async () => (await client().keys('fabriek:cache:*')).length === 2, 5_000, "bob's own entry");
    // Bob's repeat hits his own entry, on the other gateway.
    const before1 = await stats(gw1, 'mlp_cached');
    await gw1.client.modelInfer(mlpRequest('mlp_cached', 1), as('bob'));
    expect((await stats(gw1, 'mlp_cached')).hits - before1.hits).toBe(1);
  });

  it('a model with cache_shared_across_tenants shares one entry between tenants', async () => {
    await gw1.client.modelInfer(mlpRequest('mlp_shared', 5), as('alice'));
    await waitFor(async () => (await client().keys('fabriek:cache:*')).length === 3, 5_000, 'the shared entry');
    await gw2.client.modelInfer(mlpRequest('mlp_shared', 5), as('bob'));
    expect(await stats(gw2, 'mlp_shared')).toMatchObject({ hits: 1, misses: 0, executions: 0 });
  });

  it('when Redis stops, requests are served uncached, said once and counted; when it is back, caching resumes', async () => {
    await redis.stop();
    const before = await stats(gw1, 'mlp_cached');
    for (let i = 0; i < 3; i++) await gw1.client.modelInfer(mlpRequest('mlp_cached', 9), as('alice'));
    const during = await stats(gw1, 'mlp_cached');
    expect(during.success - before.success).toBe(3);
    expect(during.executions - before.executions).toBe(3);
    expect(during.hits - before.hits).toBe(0);
    expect(gw1.stderr().split('response cache: Redis failed').length - 1).toBe(1);
    expect(sampleValue(await metricsOf(gw1), 'fabriek_response_cache_errors_total{cache="redis",op="get"}')).toBeGreaterThanOrEqual(3);

    await redis.restart();
    // ioredis reconnects within about a second; then a miss is put and its repeat hits.
    await waitFor(
      async () => {
        const s0 = await stats(gw1, 'mlp_cached');
        await gw1.client.modelInfer(mlpRequest('mlp_cached', 9), as('alice'));
        await new Promise((r) => setTimeout(r, 50));
        await gw1.client.modelInfer(mlpRequest('mlp_cached', 9), as('alice'));
        return (await stats(gw1, 'mlp_cached')).hits > s0.hits;
      },
      15_000,
      'caching to resume after Redis restarted',
    );
    expect(gw1.stderr()).toContain('response cache: Redis answers again; caching resumed');
  });

  it('a gateway whose Redis is not there at start serves uncached, says so once and counts it', async () => {
    const port = await freePort();
    const gw = await startGateway(['--model-repository', repo, '--workers', '1', '--log-level', 'warn', '--cache-config', `redis,host=127.0.0.1,port=${port}`]);
    try {
      for (let i = 0; i < 2; i++) await gw.client.modelInfer(mlpRequest('mlp_cached', 1));
      const s = cacheCounts((await gw.client.modelStatistics('mlp_cached')).modelStats[0]);
      expect(s).toMatchObject({ success: 2, hits: 0, executions: 2 });
      // Once per gateway process (each has its own client).
      const said = gw.stderr().split('response cache: Redis failed').length - 1;
      expect(said).toBeGreaterThanOrEqual(1);
      expect(said).toBeLessThanOrEqual(TEST_GATEWAY_PROCESSES);
      expect(sampleValue(await metricsOf(gw), 'fabriek_response_cache_errors_total{cache="redis",op="get"}')).toBe(2);
    } finally {
      expect(await gw.stop()).toBe(0);
    }
  });
});
