// gRPC's standard health service on a real gateway, called with
// grpc-health-check's own definitions (the reference implementation's
// messages): Check by readiness, NOT_FOUND for other names, List, and Watch
// through a drain: NOT_SERVING as SIGTERM comes, while requests are still
// served, then the stream ends OK and the gateway exits without waiting for
// --exit-timeout-secs.
import { type Client, credentials, makeGenericClientConstructor, Metadata, type ServiceError, status as GrpcStatus, type ClientReadableStream } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

interface CheckResponse {
  readonly status: string;
}
interface ListResponse {
  readonly statuses: Record<string, CheckResponse>;
}
type Callback<T> = (error: ServiceError | null, value?: T) => void;
interface HealthClient extends Client {
  Check(request: { service: string }, metadata: Metadata, callback: Callback<CheckResponse>): void;
  List(request: Record<string, never>, metadata: Metadata, callback: Callback<ListResponse>): void;
  Watch(request: { service: string }): ClientReadableStream<CheckResponse>;
}

const HealthClientConstructor = makeGenericClientConstructor(healthService as Parameters<typeof makeGenericClientConstructor>[0], 'Health');
const healthClient = (gw: GatewayProcess): HealthClient => new HealthClientConstructor(gw.address, credentials.createInsecure()) as unknown as HealthClient;

const check = (client: HealthClient, service: string): Promise<CheckResponse> =>
  new Promise((resolve, reject) => client.Check({ service }, new Metadata(), (e, v) => (e ? reject(e) : resolve(v as CheckResponse))));

/** A Watch stream's messages as they come, and its status when it ends. */
function watch(client: HealthClient, service: string): { statuses: string[]; next: () => Promise<string>; ended: Promise<number> } {
  const call = client.Watch({ service });
  const statuses: string[] = [];
  const waiting: ((s: string) => void)[] = [];
  call.on('data', (r: CheckResponse) => {
    statuses.push(r.status);
    waiting.shift()?.(r.status);
  });
  const ended = new Promise<number>((resolve) => {
    call.on('status', (s: { code: number }) => resolve(s.code));
    call.on('error', () => undefined);
  });
  let read = 0;
  const next = (): Promise<string> => {
    const i = read++;
    const have = statuses[i];
    return have !== undefined ? Promise.resolve(have) : new Promise((resolve) => waiting.push(resolve));
  };
  return { statuses, next, ended };
}

describe('grpc.health.v1.Health', () => {
  let gw: GatewayProcess;
  let client: HealthClient;

  beforeAll(async () => {
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--workers', '1', '--log-level', 'warn']);
    client = healthClient(gw);
  });
  afterAll(async () => {
    client.close();
    await gw.stop();
  });

  it('Check: SERVING for the server and the inference service; NOT_FOUND, saying so, for other names', async () => {
    expect(await check(client, '')).toEqual({ status: 'SERVING' });
    expect(await check(client, 'inference.GRPCInferenceService')).toEqual({ status: 'SERVING' });
    const error = (await check(client, 'identity_fp32').catch((e: unknown) => e)) as ServiceError;
    expect(error.code).toBe(GrpcStatus.NOT_FOUND);
    expect(error.details).toMatch(/^unknown service 'identity_fp32': the health service answers for '', 'inference\.GRPCInferenceService' and 'readiness'/);
  });

  it('List: every name it answers for', async () => {
    const listed = await new Promise<ListResponse>((resolve, reject) => client.List({}, new Metadata(), (e, v) => (e ? reject(e) : resolve(v as ListResponse))));
    expect(listed.statuses).toEqual({
      '': { status: 'SERVING' },
      'inference.GRPCInferenceService': { status: 'SERVING' },
      readiness: { status: 'SERVING' },
      liveness: { status: 'SERVING' },
    });
  });
});

describe('grpc.health.v1.Health and readiness', () => {
  let repo: string;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-health-'));
    await mkdir(join(repo, 'good', '1'), { recursive: true });
    await copyFile(join(TEST_REPOSITORY, 'identity_fp32', '1', 'model.onnx'), join(repo, 'good', '1', 'model.onnx'));
    await mkdir(join(repo, 'broken', '1'), { recursive: true });
    await copyFile(join(TEST_REPOSITORY, 'identity_fp32', '1', 'model.onnx'), join(repo, 'broken', '1', 'model.onnx'));
    await writeFile(join(repo, 'broken', 'config.pbtxt'), 'max_batch_size: "many"\n');
  });
  afterAll(async () => {
    await rm(repo, { recursive: true, force: true });
  });

  it('needs no key with --tenants, as ServerReady does', async () => {
    // A file beside the models: the repository scan takes only folders.
    const tenants = join(repo, 'tenants.yaml');
    await writeFile(tenants, ['tenants:', '  app:', `    keys: [ "${hashKey('health-test-key-0123456789')}" ]`, '    models: [ "*" ]', ''].join('\n'));
    const gw = await startGateway(['--model-repository', repo, '--workers', '1', '--log-level', 'silent', '--strict-readiness', 'false', '--tenants', tenants]);
    const client = healthClient(gw);
    try {
      expect(await check(client, '')).toEqual({ status: 'SERVING' });
      expect(await check(client, 'liveness')).toEqual({ status: 'SERVING' });
    } finally {
      client.close();
      await gw.stop();
      await rm(tenants, { force: true });
    }
  });

  it('a model that failed to load: NOT_SERVING under strict readiness (as ServerReady), SERVING without it; liveness SERVING either way', async () => {
    for (const [strict, expected] of [
      ['true', 'NOT_SERVING'],
      ['false', 'SERVING'],
    ] as const) {
      const gw = await startGateway(['--model-repository', repo, '--workers', '1', '--log-level', 'silent', '--strict-readiness', strict]);
      const client = healthClient(gw);
      try {
        expect(await check(client, '')).toEqual({ status: expected });
        expect(await check(client, 'readiness')).toEqual({ status: expected });
        expect(await check(client, 'liveness')).toEqual({ status: 'SERVING' });
        expect(await gw.client.serverReady()).toBe(expected === 'SERVING');
      } finally {
        client.close();
        await gw.stop();
      }
    }
  });

  it('Watch through a drain: NOT_SERVING as SIGTERM comes, Check still answered in the drain grace, then the stream ends OK and the gateway exits at once', async () => {
    const gw = await startGateway(['--model-repository', repo, '--workers', '1', '--log-level', 'silent', '--strict-readiness', 'false', '--drain-grace-secs', '2', '--exit-timeout-secs', '20']);
    const client = healthClient(gw);
    try {
      const server = watch(client, '');
      const unknown = watch(client, 'nope');
      expect(await server.next()).toBe('SERVING');
      expect(await unknown.next()).toBe('SERVICE_UNKNOWN');
      const t0 = performance.now();
      const exited = gw.stop();
      expect(await server.next()).toBe('NOT_SERVING');
      // Still in the drain grace: answered, not ready, and live (a liveness probe does not restart a draining gateway).
      expect(await check(client, '')).toEqual({ status: 'NOT_SERVING' });
      expect(await check(client, 'liveness')).toEqual({ status: 'SERVING' });
      expect(await Promise.all([server.ended, unknown.ended])).toEqual([GrpcStatus.OK, GrpcStatus.OK]);
      expect(await exited).toBe(0);
      expect(performance.now() - t0).toBeLessThan(10_000);
      expect(server.statuses).toEqual(['SERVING', 'NOT_SERVING']);
      expect(unknown.statuses).toEqual(['SERVICE_UNKNOWN']);
    } finally {
      client.close();
      await gw.stop();
    }
  });
});
