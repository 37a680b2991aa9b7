import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { quotaKeys } from '../../gateway/tenants/redis-scripts.js';
import { zerosRequest } from '../helpers/call-outcome.js';
import { type GatewayProcess, spawnReadyCli, startGateway } from '../helpers/gateway-process.js';
import { expectEachAnsweredOnce, failureSummary, servedCounts, startLoad } from '../helpers/load-driver.js';
import { sampleValue } from '../helpers/metrics-text.js';
import { waitFor } from '../helpers/processes.js';
import { type SentinelGroup, startSentinelGroup } from '../helpers/redis-sentinel.js';

// Redis failover under load, with Debian's real redis-sentinel: a master, a
// replica and three sentinels; a worker registered and a gateway following
// the registry and counting tenant quotas through the Sentinel URL. The
// master is killed while requests flow: the sentinels promote the replica,
// no request fails, the worker's record and the gateway's quotas move to the
// new master, and a tenant's quota holds there afterwards.

const EXAMPLES = fileURLToPath(new URL('../../models/examples', import.meta.url));
const LOAD_KEY = 'sentinel-load-key-0123456789';
const TIGHT_KEY = 'sentinel-tight-key-0123456789';
const TIGHT_BURST = 5;

describe('registry and quotas on Redis Sentinel: the master dies under load', () => {
  let group: SentinelGroup;
  let dir: string;
  let worker: ChildProcess | undefined;
  let gateway: GatewayProcess | undefined;

  const metrics = async (gw: GatewayProcess): Promise<string> =>
    (await fetch(`http://127.0.0.1:${/metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}/metrics`)).text();
  const storeIsRedis = (gw: GatewayProcess) => async (): Promise<boolean> => sampleValue(await metrics(gw), 'fabriek_quota_store{store="redis"}') === 1;

  beforeAll(async () => {
    group = await startSentinelGroup();
    dir = mkdtempSync(join(tmpdir(), 'fabriek-sentinel-test-'));
    cpSync(join(EXAMPLES, 'add_sub'), join(dir, 'models', 'add_sub'), { recursive: true });
    writeFileSync(
      join(dir, 'tenants.yaml'),
      [
        'tenants:',
        '  load:',
        `    keys: ["${hashKey(LOAD_KEY)}"]`,
        '    models: ["*"]',
        '    quotas: { requests_per_second: 100000, request_burst: 100000, concurrent_requests: 64 }',
        '  tight:',
        `    keys: ["${hashKey(TIGHT_KEY)}"]`,
        '    models: ["*"]',
        `    quotas: { requests_per_second: 0.001, request_burst: ${TIGHT_BURST} }`,
        '',
      ].join('\n'),
    );
    const sentinels = group.sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',');
    // The worker by flags, the gateway by URL: both spellings are in use.
    const started = await spawnReadyCli(
      ['worker', '--registry-sentinels', sentinels, '--registry-sentinel-name', 'fabriek', '--model-repository', join(dir, 'models'), '--listen', '127.0.0.1:0', '--worker-id', 'w-sentinel'],
      'worker w-sentinel',
      60_000,
    );
    worker = started.child;
    gateway = await startGateway(['--model-repository', join(dir, 'models'), '--workers', '0', '--registry', group.url, '--tenants', join(dir, 'tenants.yaml')]);
    await waitFor(storeIsRedis(gateway), 10_000, 'the gateway to count quotas in Redis');
  }, 120_000);

  afterAll(async () => {
    await gateway?.stop('SIGKILL');
    worker?.kill('SIGKILL');
    await group?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('kill -9 of the master under load: the replica is promoted, 0 requests fail, registry and quotas move to it', async () => {
    const gw = gateway as GatewayProcess;
    const [oldMaster, replica] = group.dataPorts as [number, number];
    expect(await group.masterPort()).toBe(oldMaster);
    expect(await group.client(oldMaster).exists('fabriek:worker:w-sentinel')).toBe(1);
    const client = new InferenceGrpcClient(gw.address, { metadata: { authorization: `Bearer ${LOAD_KEY}` } });
    const counted = [{ ...gw, client }];
    const before = await servedCounts(counted);
    const load = startLoad(() => client, 8);
    await waitFor(() => load.answered > 100, 20_000, 'load to flow');
    await group.data[0]?.stop('SIGKILL');
    const killedAt = Date.now();
    await waitFor(async () => (await group.masterPort()) === replica, 30_000, 'the sentinels to promote the replica');
    const promotedMs = Date.now() - killedAt;
    const newMaster = group.client(replica);
    // The worker's heartbeat and the gateway's quota heartbeat reach the new master.
    await waitFor(async () => (await newMaster.exists('fabriek:worker:w-sentinel')) === 1 && /role:master/.test(await newMaster.info('replication')), 20_000, 'the worker record on the new master');
    await waitFor(async () => (await newMaster.zcard(quotaKeys().gateways)) === 1, 20_000, 'the gateway lease on the new master');
    // The quota store's probe backs off while no master answers: on a busy machine it came back after more than 20 s once.
    await waitFor(storeIsRedis(gw), 45_000, 'quotas counted in Redis again');
    const answeredAtSwitch = load.answered;
    await waitFor(() => load.answered > answeredAtSwitch + 100, 20_000, 'load to go on after the failover');
    const outcomes = await load.stop();
    expect(failureSummary(outcomes)).toEqual({});
    expectEachAnsweredOnce(outcomes, before, await servedCounts(counted));
    client.close();
    const during = outcomes.filter((o) => o.start >= killedAt && o.start <= killedAt + promotedMs).length;
    expect(during, `requests sent during the ${promotedMs} ms failover`).toBeGreaterThan(0);
  }, 120_000);

  it('after the failover a tenant quota holds, counted on the new master', async () => {
    const gw = gateway as GatewayProcess;
    const request = zerosRequest('add_sub', ['INPUT0', 'INPUT1'], 16);
    const results: string[] = [];
    for (let i = 0; i < TIGHT_BURST + 3; i++) {
      try {
        await gw.client.modelInfer(request, { metadata: { authorization: `Bearer ${TIGHT_KEY}` } });
        results.push('OK');
      } catch (error) {
        results.push(GrpcStatus[(error as ServiceError).code] ?? 'UNKNOWN');
      }
    }
    expect(results).toEqual([...Array<string>(TIGHT_BURST).fill('OK'), 'RESOURCE_EXHAUSTED', 'RESOURCE_EXHAUSTED', 'RESOURCE_EXHAUSTED']);
    const [, replica] = group.dataPorts as [number, number];
    expect(await group.client(replica).exists(quotaKeys().tenant('tight', 'requests'))).toBe(1);
    expect(sampleValue(await metrics(gw), 'fabriek_quota_store{store="redis"}')).toBe(1);
  });
});
