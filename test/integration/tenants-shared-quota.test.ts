import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { waitFor } from '../helpers/processes.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';
import { sampleValue } from '../helpers/metrics-text.js';

// Two real gateways on one real redis-server share a tenant's quota: the sum
// over both holds. When Redis stops, each enforces half; when it is back,
// they count in Redis again. The rate is one token per 1000 s, so no token
// comes back during the test and every count is exact.

const KEY = 'shared-quota-key-0123456789';
const BURST = 6;

const request: ModelInferRequest = {
  modelName: 'identity_fp32',
  modelVersion: '',
  id: '',
  parameters: {},
  inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1n, 16n], parameters: {}, contents: undefined }],
  outputs: [],
  rawInputContents: [Buffer.alloc(64)],
};

describe('tenant quotas shared by two gateways through Redis', () => {
  let redis: RedisServer;
  let dir: string;
  let gateways: GatewayProcess[] = [];

  /** Sends `n` requests, alternating gateways; the status names in order. */
  const send = async (n: number): Promise<string[]> => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const gw = gateways[i % gateways.length] as GatewayProcess;
      try {
        await gw.client.modelInfer(request, { metadata: { authorization: `Bearer ${KEY}` } });
        out.push('OK');
      } catch (error) {
        out.push(GrpcStatus[(error as ServiceError).code] ?? 'UNKNOWN');
      }
    }
    return out;
  };
  const metricsOf = async (gw: GatewayProcess): Promise<string> =>
    (await fetch(`http://127.0.0.1:${/metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}/metrics`)).text();
  const allAt = (store: 'redis' | 'local', count: number) => async (): Promise<boolean> => {
    for (const gw of gateways) {
      const text = await metricsOf(gw);
      if (sampleValue(text, `fabriek_quota_store{store="${store}"}`) !== 1 || sampleValue(text, 'fabriek_quota_gateways') !== count) return false;
    }
    return true;
  };
  const ok = (results: string[]): number => results.filter((r) => r === 'OK').length;

  beforeAll(async () => {
    redis = await startRedis();
    dir = mkdtempSync(join(tmpdir(), 'fabriek-shared-quota-'));
    cpSync(join(TEST_REPOSITORY, 'identity_fp32'), join(dir, 'models', 'identity_fp32'), { recursive: true });
    writeFileSync(
      join(dir, 'tenants.yaml'),
      `tenants:\n  shared:\n    keys: ["${hashKey(KEY)}"]\n    models: ["*"]\n    quotas: { requests_per_second: 0.001, request_burst: ${BURST} }\n`,
    );
    const args = ['--model-repository', join(dir, 'models'), '--workers', '1', '--log-level', 'info', '--tenants', join(dir, 'tenants.yaml')];
    gateways = await Promise.all([0, 1].map(() => startGateway([...args, '--registry', redis.url, '--registry-namespace', 'sharedquota'])));
    // Each gateway process holds its own lease in Redis.
    await waitFor(allAt('redis', 2), 20_000, 'both gateways counting in Redis, seeing each other');
  });

  afterAll(async () => {
    await Promise.all(gateways.map((gw) => gw.stop()));
    await redis?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('admits exactly the burst over both gateways together', async () => {
    const results = await send(2 * BURST);
    expect(ok(results)).toBe(BURST);
    expect(results.slice(BURST)).toEqual(Array(BURST).fill('RESOURCE_EXHAUSTED'));
  });

  it('while Redis is down each gateway enforces half, and says so once; then counts in Redis again', async () => {
    await redis.stop(true);
    await waitFor(allAt('local', 2), 20_000, 'both gateways on their local share');
    const results = await send(2 * BURST);
    expect(ok(results)).toBe(BURST); // BURST ÷ 2 on each
    for (const gw of gateways) {
      expect(gw.stderr().match(/shared quotas unavailable: this gateway enforces each tenant's limits ÷ 2 gateway\(s\)/g)).toHaveLength(1);
    }

    await redis.restart();
    await waitFor(allAt('redis', 2), 20_000, 'both gateways counting in Redis again');
    for (const gw of gateways) expect(gw.stderr().match(/shared quotas available again: counting in Redis/g)).toHaveLength(1);
    // The restarted Redis is empty: the tenant has its whole burst again, shared by both.
    expect(ok(await send(2 * BURST))).toBe(BURST);
  });
});
