import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../bench/fault/redis-process.js';
import { addSubRequest, isExpectedSum } from '../../bench/fault/add-sub.js';
import { PASSWORD_ENV } from '../../core/redis-connection.js';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { type GatewayProcess, runCli, startGateway } from '../helpers/gateway-process.js';
import { waitFor } from '../helpers/processes.js';
import { ephemeralArgs, type RedisProcess, spawnRedisProcess } from '../helpers/redis-processes.js';
import { type RegisteredWorker, startRegisteredWorker } from '../helpers/registered-worker.js';
import { makeTestPki, type TestPki } from '../helpers/test-certs.js';

// A real redis-server that takes only TLS with client certificates and a
// password; a real `fabriek worker` gets the password from a file, a real
// `fabriek serve` from the environment. Both serve, with shared quotas, and
// the password shows nowhere: not in /proc/PID/cmdline (what ps prints), not
// in anything either process wrote, at debug level, in good runs or bad.

const EXAMPLES = fileURLToPath(new URL('../../models/examples', import.meta.url));
const API_KEY = 'secrets-test-key-0123456789';

describe('registry secrets: password file, environment, rediss:// with client certificates', () => {
  const password = `pw-${randomBytes(12).toString('hex')}`;
  let pki: TestPki;
  let dir: string;
  let redis: RedisProcess;
  let url: string;
  let worker: RegisteredWorker | undefined;
  let gateway: GatewayProcess | undefined;
  let tlsFlags: string[];

  const cmdline = (pid: number | undefined): string => readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');

  beforeAll(async () => {
    pki = await makeTestPki();
    dir = mkdtempSync(join(tmpdir(), 'fabriek-secrets-'));
    cpSync(join(EXAMPLES, 'add_sub'), join(dir, 'models', 'add_sub'), { recursive: true });
    writeFileSync(join(dir, 'password'), `${password}\n`, { mode: 0o600 });
    writeFileSync(join(dir, 'wrong'), 'not-the-password\n');
    writeFileSync(
      join(dir, 'tenants.yaml'),
      `tenants:\n  team:\n    keys: ["${hashKey(API_KEY)}"]\n    models: ["*"]\n    quotas: { requests_per_second: 1000, concurrent_requests: 8 }\n`,
    );
    const port = await freePort();
    redis = await spawnRedisProcess(
      'redis-server',
      [
        ...['--port', '0', '--tls-port', String(port), '--requirepass', password],
        ...['--tls-cert-file', pki.server.cert, '--tls-key-file', pki.server.key, '--tls-ca-cert-file', pki.ca, '--tls-auth-clients', 'yes'],
        ...ephemeralArgs(dir),
      ],
      /Ready to accept connections/,
    );
    url = `rediss://127.0.0.1:${port}`;
    tlsFlags = ['--registry-tls-ca', pki.ca, '--registry-tls-cert', pki.client.cert, '--registry-tls-key', pki.client.key];
  }, 60_000);

  afterAll(async () => {
    await gateway?.stop('SIGKILL');
    await worker?.stop('SIGKILL');
    await redis?.stop();
    await pki?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a worker (password file) and a gateway (environment) serve through rediss://, with quotas counted in Redis', async () => {
    worker = await startRegisteredWorker('w-secret', url, join(dir, 'models'), ['--registry-password-file', join(dir, 'password'), ...tlsFlags, '--log-level', 'debug']);
    process.env[PASSWORD_ENV] = password;
    // The child inherits the variable at spawn, which happens before the first await inside.
    const starting = startGateway([
      ...['--model-repository', join(dir, 'models'), '--workers', '0', '--registry', url, ...tlsFlags],
      ...['--tenants', join(dir, 'tenants.yaml'), '--log-level', 'debug'],
    ]);
    delete process.env[PASSWORD_ENV];
    gateway = await starting;
    const gw = gateway;
    await waitFor(() => gw.stderr().includes('shared quotas: counting in Redis'), 10_000, 'quotas counted in Redis');
    const auth = { metadata: { authorization: `Bearer ${API_KEY}` } };
    await waitFor(async () => gw.client.modelReady('add_sub', '', auth).catch(() => false), 10_000, 'add_sub ready through the registered worker');
    for (let i = 0; i < 5; i++) {
      const { request, expected } = addSubRequest(i);
      const response = await gw.client.modelInfer(request, { metadata: { authorization: `Bearer ${API_KEY}` } });
      expect(isExpectedSum(response.rawOutputContents[0], expected)).toBe(true);
    }
    expect(worker.readyLine).toContain('ready: serving 1 model versions');
  }, 120_000);

  it('the password is in neither process command line nor anything they logged', () => {
    for (const p of [worker, gateway]) {
      expect(cmdline(p?.child.pid)).not.toContain(password);
      expect(p?.stderr()).not.toContain(password);
    }
    expect(cmdline(worker?.child.pid)).toContain('--registry-password-file');
    expect(gateway?.stderr()).toContain('"registry":"rediss://:***@127.0.0.1:');
  });

  it('a wrong password: the worker stops with WRONGPASS and the Redis address, and neither password appears', async () => {
    const run = await runCli(['worker', '--registry', url, '--model-repository', join(dir, 'models'), '--listen', '127.0.0.1:0', '--registry-password-file', join(dir, 'wrong'), ...tlsFlags, '--log-level', 'trace']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`fabriek worker: cannot reach the registry at rediss://:***@127.0.0.1:${url.split(':').at(-1)}: WRONGPASS`);
    for (const text of [run.stdout, run.stderr]) {
      expect(text).not.toContain('not-the-password');
      expect(text).not.toContain(password);
    }
  }, 60_000);

  it('a password in the URL still works, with a warning that ps shows it, and is never printed', async () => {
    const inUrl = url.replace('rediss://', `rediss://:${password}@`);
    const live = await startRegisteredWorker('w-url', inUrl, join(dir, 'models'), [...tlsFlags, '--registry-namespace', 'other']);
    try {
      expect(live.stderr()).toContain('a Redis password is in a URL on the command line, which ps shows');
      expect(live.stderr()).not.toContain(password);
    } finally {
      await live.stop();
    }
  }, 60_000);

  it('bad secrets stop the start with the flag and the file named', async () => {
    const missing = await runCli(['serve', '--model-repository', join(dir, 'models'), '--workers', '0', '--registry', url, '--registry-password-file', join(dir, 'nope'), '--grpc-port', '0', '--http-port', '0', '--metrics-port', '0']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain(`--registry-password-file ${join(dir, 'nope')}: cannot read the file (ENOENT)`);
    const noCa = await runCli(['worker', '--registry', url, '--model-repository', join(dir, 'models'), '--listen', '127.0.0.1:0', '--registry-password-file', join(dir, 'password')]);
    expect(noCa.code).toBe(1);
    expect(noCa.stderr).toMatch(/fabriek worker: cannot reach the registry at rediss:\/\/:\*\*\*@127\.0\.0\.1:\d+: .*(certificate|handshake|alert)/i);
    expect(noCa.stderr + noCa.stdout).not.toContain(password);
  }, 60_000);
});
