// Triton's logging extension on a running gateway: GET/POST /v2/logging and
// gRPC LogSettings read and change the log level without a restart (request
// lines appear at log_verbose_level 1 and stop at 0), refuse settings that
// are not a threshold with INVALID_ARGUMENT / 400, and with tenants are for
// admin tenants only (as the trace settings are, tracing.test.ts).
import { Metadata, type ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { type LogSettingsRequest, type LogSettingsResponse } from '../../proto/gen/inference.js';
import { zerosRequest } from '../helpers/call-outcome.js';
import { type GatewayProcess, httpUrlOf, startGateway } from '../helpers/gateway-process.js';
import { waitFor, workerPids } from '../helpers/processes.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

const ADMIN = 'log-settings-admin-key-0123456789';
const USER = 'log-settings-user-key-0123456789';

interface Answer {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

async function logging(gw: GatewayProcess, body?: unknown, key?: string): Promise<Answer> {
  const headers: Record<string, string> = key === undefined ? {} : { authorization: `Bearer ${key}` };
  const response = await fetch(`${httpUrlOf(gw)}/v2/logging`, body === undefined ? { headers } : { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function grpcLogSettings(gw: GatewayProcess, settings: LogSettingsRequest['settings']): Promise<LogSettingsResponse> {
  return new Promise((resolve, reject) =>
    gw.client.raw.logSettings({ settings }, new Metadata(), (error: ServiceError | null, value?: LogSettingsResponse) => (error ? reject(error) : resolve(value as LogSettingsResponse))),
  );
}

const requestLines = (gw: GatewayProcess): number => gw.stderr().split('\n').filter((l) => l.includes('"msg":"request"')).length;

describe('log settings on an open gateway', () => {
  let gw: GatewayProcess;

  beforeAll(async () => {
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--workers', '1', '--log-level', 'info']);
  });
  afterAll(async () => {
    await gw.stop();
  });

  it('GET /v2/logging: the settings in force, in Triton\'s names; the server lists the extension', async () => {
    expect(await logging(gw)).toEqual({
      status: 200,
      body: { log_file: '', log_info: true, log_warning: true, log_error: true, log_verbose_level: 0, log_format: 'json' },
    });
    expect(((await (await fetch(`${httpUrlOf(gw)}/v2`)).json()) as { extensions: string[] }).extensions).toContain('logging');
  });

  it('POST log_verbose_level 1 turns the request lines on, 0 off again, without a restart', async () => {
    const infer = (): Promise<unknown> => gw.client.modelInfer(zerosRequest('identity_fp32', ['INPUT0'], 16));
    await infer();
    expect(requestLines(gw)).toBe(0);
    expect(await logging(gw, { log_verbose_level: 1 })).toMatchObject({ status: 200, body: { log_verbose_level: 1, log_info: true } });
    await infer();
    await waitFor(async () => requestLines(gw) === 1, 10_000, 'one request line at debug');
    expect(gw.stderr()).toMatch(/"from":"info","to":"debug","msg":"log level changed \(LogSettings\)"/);
    expect((await logging(gw, { log_verbose_level: 0 })).body).toMatchObject({ log_verbose_level: 0 });
    await infer();
    await new Promise((r) => setTimeout(r, 200));
    expect(requestLines(gw)).toBe(1);
  });

  it("reaches the local worker, and a worker restarted after starts at it", async () => {
    // The worker's own debug line for each model it loads (the gateway's 'model loaded' is at info, without a modelKey).
    const workerLoads = (): number => gw.stderr().split('\n').filter((l) => l.includes('"workerId":"cpu0"') && l.includes('"modelKey":"identity_fp32/1"') && l.includes('"msg":"model loaded"')).length;
    const load = async (): Promise<void> => {
      const res = await fetch(`${httpUrlOf(gw)}/v2/repository/models/identity_fp32/load`, { method: 'POST', body: '{}' });
      expect(res.status).toBe(200);
    };
    const before = workerLoads();
    await load();
    expect(workerLoads()).toBe(before);
    expect((await logging(gw, { log_verbose_level: 1 })).status).toBe(200);
    await waitFor(() => /"workerId":"cpu0".*"from":"info","to":"debug","msg":"log level changed \(the gateway's LogSettings\)"/.test(gw.stderr()), 10_000, "the worker's level change");
    await load();
    await waitFor(() => workerLoads() === before + 1, 10_000, "the worker's debug line for the load");
    // Killed, the worker is restarted at debug: its reloads log at debug from the start.
    const [pid] = workerPids(gw.child.pid as number);
    process.kill(pid as number, 'SIGKILL');
    await waitFor(() => workerLoads() > before + 1, 30_000, 'the restarted worker logs its loads at debug');
    expect((await logging(gw, { log_verbose_level: 0 })).status).toBe(200);
    await waitFor(() => /"workerId":"cpu0".*"from":"debug","to":"info","msg":"log level changed \(the gateway's LogSettings\)"/.test(gw.stderr()), 10_000, 'the worker back at info');
    await waitFor(async () => (await gw.client.isModelReady('identity_fp32')) === true, 30_000, 'identity_fp32 ready again');
    const quiet = workerLoads();
    await load();
    expect(workerLoads()).toBe(quiet);
  });

  it('over gRPC: an empty request reads them, a request with settings changes them', async () => {
    const read = await grpcLogSettings(gw, {});
    expect(read.settings.log_info?.parameterChoice).toEqual({ $case: 'boolParam', value: true });
    expect(read.settings.log_verbose_level?.parameterChoice).toEqual({ $case: 'uint32Param', value: 0 });
    expect(read.settings.log_format?.parameterChoice).toEqual({ $case: 'stringParam', value: 'json' });
    const changed = await grpcLogSettings(gw, { log_info: { parameterChoice: { $case: 'boolParam', value: false } } });
    expect(changed.settings.log_info?.parameterChoice).toEqual({ $case: 'boolParam', value: false });
    expect((await logging(gw)).body).toMatchObject({ log_info: false, log_warning: true });
    await grpcLogSettings(gw, { log_info: { parameterChoice: { $case: 'boolParam', value: true } } });
  });

  it('refuses what it cannot do, with the reason (400 / INVALID_ARGUMENT), and keeps the level', async () => {
    expect(await logging(gw, { log_warning: false })).toEqual({
      status: 400,
      body: { error: "log settings: log_info true needs log_warning true: Fabriek's log level is a threshold, each level including those above it" },
    });
    expect((await logging(gw, { log_file: '/tmp/x.log' })).status).toBe(400);
    // Another method: 405, naming both it takes.
    const put = await fetch(`${httpUrlOf(gw)}/v2/logging`, { method: 'PUT', body: '{}' });
    expect([put.status, put.headers.get('allow'), ((await put.json()) as { error: string }).error]).toEqual([405, 'GET, POST', '/v2/logging accepts GET, POST, not PUT']);
    expect(await logging(gw, [1, 2])).toEqual({ status: 400, body: { error: 'log settings: expected a JSON object of settings, e.g. {"log_verbose_level": 1}' } });
    const error = (await grpcLogSettings(gw, { log_verbose_level: { parameterChoice: { $case: 'stringParam', value: 'high' } } }).catch((e: unknown) => e)) as ServiceError;
    expect(error.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(error.details).toBe('log setting \'log_verbose_level\': expected an unsigned integer, got "high"');
    expect((await logging(gw)).body).toMatchObject({ log_info: true, log_verbose_level: 0 });
  });
});

describe('log settings with tenants', () => {
  let dir: string;
  let gw: GatewayProcess;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fabriek-log-settings-'));
    const tenants = join(dir, 'tenants.yaml');
    await writeFile(
      tenants,
      ['tenants:', '  ops:', `    keys: [ "${hashKey(ADMIN)}" ]`, '    models: [ "*" ]', '    admin: true', '  app:', `    keys: [ "${hashKey(USER)}" ]`, '    models: [ "*" ]', ''].join('\n'),
    );
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--workers', '1', '--log-level', 'info', '--tenants', tenants]);
  });
  afterAll(async () => {
    await gw.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('admin tenants only: 401 without a key, 403 for another tenant, 200 for an admin', async () => {
    expect((await logging(gw)).status).toBe(401);
    expect(await logging(gw, { log_verbose_level: 1 }, USER)).toEqual({ status: 403, body: { error: "tenant 'app' may not read or change the log settings" } });
    expect((await logging(gw, undefined, USER)).status).toBe(403);
    expect((await logging(gw, { log_verbose_level: 1 }, ADMIN)).body).toMatchObject({ log_verbose_level: 1 });
    expect((await logging(gw, { log_verbose_level: 0 }, ADMIN)).status).toBe(200);
  });

  it('the trace settings too', async () => {
    const trace = async (key: string): Promise<number> => (await fetch(`${httpUrlOf(gw)}/v2/trace/setting`, { headers: { authorization: `Bearer ${key}` } })).status;
    expect(await trace(USER)).toBe(403);
    expect(await trace(ADMIN)).toBe(200);
  });
});
