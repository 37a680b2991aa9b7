import { copyFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { failureSummary, startLoad } from '../helpers/load-driver.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { type RegisteredWorker, startRegisteredWorker } from '../helpers/registered-worker.js';
import { waitFor } from '../helpers/processes.js';
import { makeTestPki, type TestPki } from '../helpers/test-certs.js';

// Mutual TLS between gateways and a registered worker: a gateway with a
// certificate from the CA serves through the worker; one without cannot
// reach it, and the worker never runs its batches. Both ends' files rotate
// in place.

const EXAMPLES = fileURLToPath(new URL('../../models/examples', import.meta.url));

describe('registry with mutual TLS between gateways and workers', () => {
  let redis: RedisServer;
  let pki: TestPki;
  let repository: string;
  let worker: RegisteredWorker;
  const gateways: GatewayProcess[] = [];

  beforeAll(async () => {
    [redis, pki] = await Promise.all([startRedis(), makeTestPki()]);
    repository = mkdtempSync(join(tmpdir(), 'fabriek-registry-tls-'));
    cpSync(join(EXAMPLES, 'add_sub'), join(repository, 'add_sub'), { recursive: true });
    worker = await startRegisteredWorker('tls-w', redis.url, repository, [
      '--worker-tls-cert', pki.peer.cert, '--worker-tls-key', pki.peer.key, '--worker-tls-ca', pki.ca,
    ]);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
    await worker?.stop('SIGKILL');
    await redis?.close();
    await pki?.remove();
    if (repository) rmSync(repository, { recursive: true, force: true });
  });

  it('the worker says it serves mutual TLS', () => {
    expect(worker.readyLine).toMatch(/ready: serving 1 model versions on 127\.0\.0\.1:\d+ \(mutual TLS\)/);
  });

  it('a gateway with a certificate from the CA serves through the worker', async () => {
    const gw = await startGateway([
      '--model-repository', repository, '--registry', redis.url, '--workers', '0',
      '--worker-tls-cert', pki.peer.cert, '--worker-tls-key', pki.peer.key, '--worker-tls-ca', pki.ca,
    ]);
    gateways.push(gw);
    expect(gw.readyLine).toContain('1 model versions ready (add_sub/1)');
    const load = startLoad(() => gw.client, 4);
    await new Promise((r) => setTimeout(r, 500));
    const outcomes = await load.stop();
    expect(outcomes.length).toBeGreaterThan(10);
    expect(failureSummary(outcomes)).toEqual({});
  });

  it('a gateway without a certificate cannot use the worker: UNAVAILABLE, and the worker logs the refused handshake', async () => {
    const gw = await startGateway(['--model-repository', repository, '--registry', redis.url, '--workers', '0', '--exit-timeout-secs', '1']);
    gateways.push(gw);
    // It sees the worker in the registry (so the version is ready) but every call fails the handshake.
    const error = await gw.client.modelInfer(
      {
        modelName: 'add_sub', modelVersion: '', id: '', parameters: {}, outputs: [],
        inputs: [
          { name: 'INPUT0', datatype: 'FP32', shape: [1n, 16n], parameters: {}, contents: undefined },
          { name: 'INPUT1', datatype: 'FP32', shape: [1n, 16n], parameters: {}, contents: undefined },
        ],
        rawInputContents: [Buffer.alloc(64), Buffer.alloc(64)],
      },
      { timeoutMs: 5_000 },
    ).then(() => undefined, (e: unknown) => e as { code: number; details: string });
    expect(error?.code).toBe(14); // UNAVAILABLE
    expect(error?.details).toMatch(/worker tls-w/);
    expect(worker.stderr()).toContain('TLS handshake with a gateway failed');
  });

  it('both ends read rotated files: the worker shows new connections its new certificate, the gateway takes its new one, and serving goes on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fabriek-registry-tls-rotate-'));
    const files = (who: string): string[] => ['--worker-tls-cert', join(dir, `${who}.crt`), '--worker-tls-key', join(dir, `${who}.key`), '--worker-tls-ca', pki.ca];
    const install = (who: string, from: { cert: string; key: string }): void => {
      copyFileSync(from.cert, join(dir, `${who}.crt`));
      copyFileSync(from.key, join(dir, `${who}.key`));
    };
    install('worker', pki.peer);
    install('gateway', pki.peer);
    const rotating = await startRegisteredWorker('tls-rot', redis.url, repository, [...files('worker'), '--tls-poll-secs', '1']);
    const port = Number(/on 127\.0\.0\.1:(\d+)/.exec(rotating.readyLine)?.[1]);
    const [ca, cert, key] = await Promise.all([readFile(pki.ca), readFile(pki.client.cert), readFile(pki.client.key)]);
    // The worker asks for a client certificate from the CA: this test's connection shows one.
    const served = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = tlsConnect({ host: '127.0.0.1', port, ca, cert, key, minVersion: 'TLSv1.3' }, () => {
          resolve(socket.getPeerCertificate().serialNumber);
          socket.end();
        });
        socket.on('error', reject);
      });
    try {
      const gw = await startGateway(['--model-repository', repository, '--registry', redis.url, '--workers', '0', ...files('gateway'), '--tls-poll-secs', '1']);
      gateways.push(gw);
      expect(await served()).toBe('03');
      install('worker', pki.server);
      await waitFor(async () => (await served()) === '01', 15_000, "the worker's new certificate");
      install('gateway', pki.client);
      const metrics = `http://127.0.0.1:${/metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}/metrics`;
      await waitFor(async () => /^fabriek_tls_reloads_total\{listener="worker",result="ok"\} [1-9]/m.test(await (await fetch(metrics)).text()), 15_000, "the gateway's new certificate");
      expect(rotating.stderr()).toMatch(/"msg":"TLS certificate reloaded"/);
      // A connection the gateway opens after the rotation shows its new certificate (02, where it started with 03):
      // a worker joining now sees it once the load reaches it (a gateway connects to a worker at its first call;
      // this test's own probes above connect to the other worker only).
      const joining = await startRegisteredWorker('tls-rot-2', redis.url, repository, files('worker'));
      try {
        const load = startLoad(() => gw.client, 4);
        await waitFor(() => /"serial":"02"[^\n]*"msg":"gateway connected \(mutual TLS\)"/.test(joining.stderr()), 15_000, "the gateway's new certificate on a new connection");
        // Serving goes on, across both workers.
        await new Promise((r) => setTimeout(r, 500));
        const outcomes = await load.stop();
        expect(outcomes.length).toBeGreaterThan(10);
        expect(failureSummary(outcomes)).toEqual({});
        expect(joining.stderr()).not.toMatch(/"serial":"03"[^\n]*"msg":"gateway connected/);
      } finally {
        await joining.stop('SIGKILL');
      }
    } finally {
      await rotating.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
