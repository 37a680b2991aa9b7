import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InferenceGrpcClient } from '../../client/grpc-client.js';
import { decodeRecord } from '../../core/worker-record.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { expectEachAnsweredOnce, failureSummary, type ServedCounts, servedCounts, startLoad } from '../helpers/load-driver.js';
import { waitFor } from '../helpers/processes.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { type RegisteredWorker, startRegisteredWorker } from '../helpers/registered-worker.js';

// Two gateways and three (later four) `fabriek worker --registry` processes on
// one real redis-server, all as real processes talking real gRPC. The phases
// run in order on the same cluster, as an operator would live through them:
// a worker killed, one joining, one drained, Redis restarted, a gateway drained.

const EXAMPLES = fileURLToPath(new URL('../../models/examples', import.meta.url));
const TTL_SECS = 2;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('registry: two gateways, registered workers, failures under load', () => {
  let redis: RedisServer;
  let repository: string;
  const workers = new Map<string, RegisteredWorker>();
  let gateways: GatewayProcess[] = [];

  const startWorker = async (id: string): Promise<RegisteredWorker> => {
    const w = await startRegisteredWorker(id, redis.url, repository, ['--registry-ttl-secs', String(TTL_SECS), '--drain-grace-secs', '1']);
    workers.set(id, w);
    return w;
  };
  /** Registered workers a gateway uses now, from its own log. */
  const workersSeenBy = (gw: GatewayProcess): Set<string> => {
    const seen = new Set<string>();
    for (const line of gw.stderr().split('\n')) {
      const m = /"worker":"([^"]+)".*"msg":"registered worker (joined|left)"/.exec(line);
      if (m?.[1]) {
        if (m[2] === 'joined') seen.add(m[1]);
        else seen.delete(m[1]);
      }
    }
    return seen;
  };
  const allSee = (ids: readonly string[]) => (): boolean =>
    gateways.every((gw) => {
      const seen = workersSeenBy(gw);
      return seen.size === ids.length && ids.every((id) => seen.has(id));
    });
  const roundRobin = (): (() => InferenceGrpcClient) => {
    let i = 0;
    return () => (gateways[i++ % gateways.length] as GatewayProcess).client;
  };
  const served = (gws: readonly GatewayProcess[] = gateways): Promise<ServedCounts> => servedCounts(gws);

  beforeAll(async () => {
    redis = await startRedis();
    repository = mkdtempSync(join(tmpdir(), 'fabriek-registry-repo-'));
    cpSync(join(EXAMPLES, 'add_sub'), join(repository, 'add_sub'), { recursive: true });
    await Promise.all(['w1', 'w2', 'w3'].map(startWorker));
    gateways = await Promise.all(
      [0, 1].map(() => startGateway(['--model-repository', repository, '--registry', redis.url, '--workers', '0', '--drain-grace-secs', '1'])),
    );
    await waitFor(allSee(['w1', 'w2', 'w3']), 10_000, 'both gateways to see three workers');
  }, 120_000);

  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
    await Promise.all([...workers.values()].map((w) => w.stop('SIGKILL')));
    await redis?.close();
    if (repository) rmSync(repository, { recursive: true, force: true });
  });

  it('registers each worker with its address, models and lease; gateways are ready on them', async () => {
    const client = redis.client();
    const keys = (await client.keys('fabriek:worker:*')).sort();
    expect(keys).toEqual(['fabriek:worker:w1', 'fabriek:worker:w2', 'fabriek:worker:w3']);
    const record = decodeRecord((await client.get('fabriek:worker:w1')) ?? '');
    expect(record).toMatchObject({ id: 'w1', deviceKind: 'cpu', draining: false, ttlMs: TTL_SECS * 1000 });
    expect(record.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(record.models.map((m) => m.key)).toEqual(['add_sub/1']);
    expect(record.models[0]?.inputs.map((i) => i.name)).toEqual(['INPUT0', 'INPUT1']);
    const ttl = await client.pttl('fabriek:worker:w1');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(TTL_SECS * 1000);
    for (const gw of gateways) {
      expect(await gw.client.serverReady()).toBe(true);
      expect(await gw.client.modelReady('add_sub')).toBe(true);
    }
  });

  it('serves load through both gateways with correct answers', async () => {
    const before = await served();
    const load = startLoad(roundRobin(), 8);
    await sleep(1_500);
    const outcomes = await load.stop();
    expect(outcomes.length).toBeGreaterThan(50);
    expect(failureSummary(outcomes)).toEqual({});
    expectEachAnsweredOnce(outcomes, before, await served());
  });

  it('kill -9 of a worker under load: every request answered once, ≥ 99 % succeed, the worker leaves the registry within its TTL', async () => {
    const before = await served();
    const load = startLoad(roundRobin(), 16);
    await sleep(1_000);
    const killedAt = Date.now();
    await workers.get('w1')?.stop('SIGKILL');
    workers.delete('w1');
    await sleep(1_500);
    const outcomes = await load.stop();
    const ok = outcomes.filter((o) => o.ok).length;
    expect(outcomes.some((o) => o.code === 'WRONG_ANSWER')).toBe(false);
    expect(ok / outcomes.length, JSON.stringify(failureSummary(outcomes))).toBeGreaterThanOrEqual(0.99);
    expectEachAnsweredOnce(outcomes, before, await served());
    const client = redis.client();
    await waitFor(async () => (await client.exists('fabriek:worker:w1')) === 0, TTL_SECS * 1000 + 2_000, 'the dead worker to leave the registry');
    expect(Date.now() - killedAt).toBeLessThanOrEqual(TTL_SECS * 1000 + 2_000);
    await waitFor(allSee(['w2', 'w3']), 5_000, 'gateways to forget the dead worker');
  });

  it('a worker that joins is seen by every gateway within a few seconds (the last test shows it serving alone)', async () => {
    const joined = Date.now();
    await startWorker('w4');
    await waitFor(allSee(['w2', 'w3', 'w4']), 5_000, 'gateways to see the new worker');
    expect(Date.now() - joined).toBeLessThan(5_000);
  });

  it('drain of a worker under load: no failed requests; it deregisters and exits 0', async () => {
    const before = await served();
    const load = startLoad(roundRobin(), 16);
    await sleep(800);
    const w2 = workers.get('w2') as RegisteredWorker;
    workers.delete('w2');
    const code = await w2.stop('SIGTERM');
    await sleep(500);
    const outcomes = await load.stop();
    expect(code).toBe(0);
    expect(failureSummary(outcomes)).toEqual({});
    expectEachAnsweredOnce(outcomes, before, await served());
    expect(await redis.client().exists('fabriek:worker:w2')).toBe(0);
    await waitFor(allSee(['w3', 'w4']), 5_000, 'gateways to drop the drained worker');
  });

  it('Redis stopped and restarted under load: no failed requests; workers re-register', async () => {
    const before = await served();
    const load = startLoad(roundRobin(), 8);
    await sleep(500);
    await redis.stop();
    // Longer than the lease TTL: nobody may drop a worker because Redis is gone.
    await sleep(TTL_SECS * 1000 + 1_000);
    await redis.restart();
    await sleep(TTL_SECS * 1000 + 500);
    const outcomes = await load.stop();
    expect(failureSummary(outcomes)).toEqual({});
    expectEachAnsweredOnce(outcomes, before, await served());
    const client = redis.client();
    await waitFor(async () => (await client.keys('fabriek:worker:*')).length === 2, 5_000, 'workers to re-register');
    expect(allSee(['w3', 'w4'])()).toBe(true);
  });

  it('after draining w3, the worker that joined later carries all the load alone', async () => {
    const w3 = workers.get('w3') as RegisteredWorker;
    workers.delete('w3');
    expect(await w3.stop('SIGTERM')).toBe(0);
    await waitFor(allSee(['w4']), 5_000, 'gateways to keep only w4');
    const load = startLoad(roundRobin(), 4);
    await sleep(800);
    const outcomes = await load.stop();
    expect(outcomes.length).toBeGreaterThan(10);
    expect(failureSummary(outcomes)).toEqual({});
  });

  it('when the last worker hosting a model leaves, it is not ready and requests fail fast; a new worker makes it ready again', async () => {
    const w4 = workers.get('w4') as RegisteredWorker;
    workers.delete('w4');
    expect(await w4.stop('SIGTERM')).toBe(0);
    await waitFor(allSee([]), 5_000, 'gateways to see no worker');
    for (const gw of gateways) {
      expect(await gw.client.modelReady('add_sub')).toBe(false);
      expect(await gw.client.serverReady()).toBe(false);
    }
    const started = Date.now();
    const refused = startLoad(roundRobin(), 2);
    await sleep(100);
    const outcomes = await refused.stop();
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(outcomes.length).toBeGreaterThan(2);
    expect(outcomes.every((o) => o.code === 'UNAVAILABLE' && /no worker is available to host it/.test(o.message ?? ''))).toBe(true);
    await startWorker('w5');
    await waitFor(allSee(['w5']), 5_000, 'gateways to see w5');
    await waitFor(async () => (await Promise.all(gateways.map((g) => g.client.modelReady('add_sub')))).every(Boolean), 5_000, 'ready again');
    const load = startLoad(roundRobin(), 4);
    await sleep(500);
    const after = await load.stop();
    expect(after.length).toBeGreaterThan(5);
    expect(failureSummary(after)).toEqual({});
  });

  it('drain of a gateway under load: readiness drops at once, no failed requests, exit 0', async () => {
    // A client-side balancer, as a load balancer would be: it sends only to
    // gateways whose ServerReady it last saw true.
    const ready = new Map(gateways.map((g) => [g, true]));
    let polling = true;
    const poll = (async () => {
      while (polling) {
        await Promise.all(
          gateways.map(async (g) => ready.set(g, await g.client.serverReady({ timeoutMs: 500 }).catch(() => false))),
        );
        await sleep(50);
      }
    })();
    let i = 0;
    const pick = (): InferenceGrpcClient => {
      const up = gateways.filter((g) => ready.get(g));
      return ((up.length > 0 ? up : gateways)[i++ % Math.max(1, up.length)] as GatewayProcess).client;
    };
    const [g1, g2] = gateways as [GatewayProcess, GatewayProcess];
    const load = startLoad(pick, 8);
    await sleep(800);
    g1.child.kill('SIGTERM');
    await waitFor(() => ready.get(g1) === false, 2_000, 'the draining gateway to report not ready');
    const code = await new Promise<number | null>((resolve) => g1.child.once('exit', (c) => resolve(c)));
    await sleep(300);
    const outcomes = await load.stop();
    polling = false;
    await poll;
    expect(code).toBe(0);
    expect(failureSummary(outcomes)).toEqual({});
    expect(outcomes.length).toBeGreaterThan(20);
    expect(g1.stderr()).toContain('still accepting requests during the drain grace');
    gateways = [g2];
  });
});
