// TLS and mutual TLS on the real `fabriek serve` CLI: gRPC with tritonserver's
// flags, HTTP/REST and /metrics with Fabriek's, certificates made with
// openssl in a temp dir for this run.
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClientTlsOptions, InferenceGrpcClient } from '../../client/grpc-client.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { type GatewayProcess, runCli, startGateway } from '../helpers/gateway-process.js';
import { waitFor } from '../helpers/processes.js';
import { makeTestPki, type TestPki } from '../helpers/test-certs.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

const VALUES = Float32Array.from({ length: 16 }, (_, i) => i / 2);

function inferRequest(): ModelInferRequest {
  return {
    modelName: 'identity_fp32',
    modelVersion: '',
    id: 'tls',
    parameters: {},
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1n, 16n], parameters: {} }],
    outputs: [],
    rawInputContents: [Buffer.from(VALUES.buffer)],
  };
}

const INFER_JSON = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: [...VALUES] }] });

interface Pem {
  readonly ca: Buffer;
  readonly clientCert: Buffer;
  readonly clientKey: Buffer;
  readonly otherCert: Buffer;
  readonly otherKey: Buffer;
}

/**
 * A gRPC call with `tls` (undefined: plaintext); resolves with the status name.
 * By the certificate's host name, localhost: grpc-js (1.14.7) sends the target's
 * host as the TLS server name even when it is an IP address, which Node 26
 * refuses (RFC 6066), so it cannot reach a TLS server by address there.
 */
async function grpcInfer(address: string, tls: ClientTlsOptions | undefined): Promise<string> {
  const client = new InferenceGrpcClient(address.replace(/^127\.0\.0\.1:/, 'localhost:'), tls ? { tls } : {});
  try {
    const res = await client.modelInfer(inferRequest(), { timeoutMs: 20_000 });
    expect(Buffer.from(res.rawOutputContents[0] ?? [])).toEqual(Buffer.from(VALUES.buffer));
    return 'OK';
  } catch (error) {
    return GrpcStatus[(error as ServiceError).code] ?? 'UNKNOWN';
  } finally {
    client.close();
  }
}

interface HttpAnswer {
  readonly status: number;
  readonly body: string;
}

/** One request over HTTPS (with `tls`) or plain HTTP; rejects when the connection fails. */
function call(
  url: string,
  method: 'GET' | 'POST',
  body: string | undefined,
  tls: { ca?: Buffer; cert?: Buffer; key?: Buffer } | undefined,
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const onResponse = (res: import('node:http').IncomingMessage): void => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    };
    const options = { method, agent: false as const, timeout: 20_000, headers: { 'content-type': 'application/json' } };
    const req = tls ? httpsRequest(url, { ...options, ...tls }, onResponse) : httpRequest(url, options, onResponse);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** 'OK <status>' or the connection error's code or message. */
async function httpOutcome(url: string, tls: { ca?: Buffer; cert?: Buffer; key?: Buffer } | undefined): Promise<string> {
  try {
    const res = await call(url, 'POST', INFER_JSON, tls);
    if (res.status === 200) {
      const outputs = (JSON.parse(res.body) as { outputs: { data: number[] }[] }).outputs;
      expect(outputs[0]?.data).toEqual([...VALUES]);
    }
    return `OK ${res.status}`;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  }
}

/** The serial number of the certificate a new TLS connection to `port` is shown (by the name the certificates carry). */
function servedSerial(port: number, ca: Buffer, alpn: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: [alpn] }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.on('error', reject);
  });
}

function portOf(line: string, what: 'HTTP' | 'metrics'): number {
  const port = new RegExp(`${what} on [^ ;]+:(\\d+)`).exec(line)?.[1];
  if (port === undefined) throw new Error(`no ${what} port in: ${line}`);
  return Number(port);
}

describe('TLS on gRPC, HTTP and metrics', () => {
  let pki: TestPki;
  let pem: Pem;
  let repo: string;

  beforeAll(async () => {
    pki = await makeTestPki();
    pem = {
      ca: await pki.read(pki.ca),
      clientCert: await pki.read(pki.client.cert),
      clientKey: await pki.read(pki.client.key),
      otherCert: await pki.read(pki.otherClient.cert),
      otherKey: await pki.read(pki.otherClient.key),
    };
    // One small model keeps the two gateway starts quick.
    repo = await mkdtemp(join(tmpdir(), 'fabriek-tls-repo-'));
    await mkdir(join(repo, 'identity_fp32', '1'), { recursive: true });
    await copyFile(join(TEST_REPOSITORY, 'identity_fp32', '1', 'model.onnx'), join(repo, 'identity_fp32', '1', 'model.onnx'));
  });

  afterAll(async () => {
    await pki?.remove();
    if (repo) await rm(repo, { recursive: true, force: true });
  });

  describe('gRPC with TLS, HTTP and metrics with mutual TLS', () => {
    let gw: GatewayProcess;
    let https: string;
    let metrics: string;

    beforeAll(async () => {
      gw = await startGateway([
        '--model-repository', repo, '--log-level', 'warn',
        '--grpc-use-ssl', 'true', '--grpc-server-cert', pki.server.cert, '--grpc-server-key', pki.server.key,
        '--http-use-ssl-mutual', 'true', '--http-server-cert', pki.server.cert, '--http-server-key', pki.server.key,
        '--http-root-cert', pki.ca,
      ]);
      https = `https://127.0.0.1:${portOf(gw.readyLine, 'HTTP')}`;
      metrics = `https://127.0.0.1:${portOf(gw.readyLine, 'metrics')}/metrics`;
    });

    afterAll(async () => {
      expect(await gw?.stop()).toBe(0);
    });

    it('says TLS in the ready line, for each port', () => {
      expect(gw.readyLine).toMatch(/gRPC on 127\.0\.0\.1:\d+ \(TLS\); HTTP on 127\.0\.0\.1:\d+ \(mutual TLS\); metrics on 127\.0\.0\.1:\d+ \(mutual TLS\);/);
    });

    it('infers over gRPC with TLS for a client that trusts the CA', async () => {
      expect(await grpcInfer(gw.address, { rootCert: pem.ca })).toBe('OK');
    });

    it('fails a plaintext gRPC client, and one that does not trust the CA', async () => {
      expect(await grpcInfer(gw.address, undefined)).toBe('UNAVAILABLE');
      expect(await grpcInfer(gw.address, { rootCert: await pki.read(pki.otherCa) })).toBe('UNAVAILABLE');
    });

    it('infers over HTTPS with a client certificate from the CA', async () => {
      const tls = { ca: pem.ca, cert: pem.clientCert, key: pem.clientKey };
      expect(await httpOutcome(`${https}/v2/models/identity_fp32/infer`, tls)).toBe('OK 200');
      expect((await call(`${https}/v2/health/live`, 'GET', undefined, tls)).status).toBe(200);
    });

    it('refuses HTTPS clients without a client certificate or with one from another CA, and plain HTTP', async () => {
      const url = `${https}/v2/models/identity_fp32/infer`;
      expect(await httpOutcome(url, { ca: pem.ca })).toBe('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
      // TLS 1.3: the client has finished its handshake when the server refuses the certificate; it sees an alert or a reset.
      expect(await httpOutcome(url, { ca: pem.ca, cert: pem.otherCert, key: pem.otherKey })).toMatch(/^(ECONNRESET|ERR_SSL_\w+)$/);
      expect(await httpOutcome(url.replace('https:', 'http:'), undefined)).toMatch(/^(ECONNRESET|socket hang up)$/);
    });

    it('serves /metrics with the same TLS as HTTP', async () => {
      const res = await call(metrics, 'GET', undefined, { ca: pem.ca, cert: pem.clientCert, key: pem.clientKey });
      expect(res.status).toBe(200);
      expect(res.body).toMatch(/^nv_inference_request_success\{model="identity_fp32",version="1"\} [1-9]\d*$/m);
      expect(await call(metrics, 'GET', undefined, { ca: pem.ca }).then(() => 'answered', () => 'refused')).toBe('refused');
    });
  });

  describe('gRPC with mutual TLS, HTTP with TLS', () => {
    let gw: GatewayProcess;
    let https: string;

    beforeAll(async () => {
      gw = await startGateway([
        '--model-repository', repo, '--log-level', 'warn', '--allow-metrics', 'false',
        '--grpc-use-ssl-mutual', 'true', '--grpc-server-cert', pki.server.cert, '--grpc-server-key', pki.server.key,
        '--grpc-root-cert', pki.ca,
        '--http-use-ssl', 'true', '--http-server-cert', pki.server.cert, '--http-server-key', pki.server.key,
      ]);
      https = `https://127.0.0.1:${portOf(gw.readyLine, 'HTTP')}`;
    });

    afterAll(async () => {
      expect(await gw?.stop()).toBe(0);
    });

    it('says which port needs client certificates', () => {
      expect(gw.readyLine).toMatch(/gRPC on 127\.0\.0\.1:\d+ \(mutual TLS\); HTTP on 127\.0\.0\.1:\d+ \(TLS\); \d+ model versions/);
    });

    it('infers over gRPC with a client certificate from the CA', async () => {
      expect(await grpcInfer(gw.address, { rootCert: pem.ca, certChain: pem.clientCert, privateKey: pem.clientKey })).toBe('OK');
    });

    it('fails gRPC clients without a client certificate, with one from another CA, or in plaintext', async () => {
      expect(await grpcInfer(gw.address, { rootCert: pem.ca })).toBe('UNAVAILABLE');
      expect(await grpcInfer(gw.address, { rootCert: pem.ca, certChain: pem.otherCert, privateKey: pem.otherKey })).toBe('UNAVAILABLE');
      expect(await grpcInfer(gw.address, undefined)).toBe('UNAVAILABLE');
    });

    it('infers over HTTPS without a client certificate', async () => {
      expect(await httpOutcome(`${https}/v2/models/identity_fp32/infer`, { ca: pem.ca })).toBe('OK 200');
    });

    it('keeps serving after the refused handshakes', async () => {
      expect(await grpcInfer(gw.address, { rootCert: pem.ca, certChain: pem.clientCert, privateKey: pem.clientKey })).toBe('OK');
    });
  });

  describe('certificates rotated while serving', () => {
    let dir: string;
    const crt = (): string => join(dir, 'tls.crt');
    const key = (): string => join(dir, 'tls.key');
    const install = async (files: { cert: string; key: string }): Promise<void> => {
      // As a copy would: the certificate first, then its key (a check between them finds a key that does not fit).
      await copyFile(files.cert, crt());
      await copyFile(files.key, key());
    };
    const serve = (pollSecs: number): Promise<GatewayProcess> =>
      startGateway([
        ...['--model-repository', repo, '--workers', '1', '--log-level', 'warn', '--tls-poll-secs', String(pollSecs)],
        ...['--grpc-use-ssl', 'true', '--grpc-server-cert', crt(), '--grpc-server-key', key()],
        ...['--http-use-ssl', 'true', '--http-server-cert', crt(), '--http-server-key', key()],
      ]);
    const metricsText = async (gw: GatewayProcess): Promise<string> =>
      (await call(`https://localhost:${portOf(gw.readyLine, 'metrics')}/metrics`, 'GET', undefined, { ca: pem.ca })).body;
    const counter = (text: string, listener: string, result: string): number =>
      Number(new RegExp(`^fabriek_tls_reloads_total\\{listener="${listener}",result="${result}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fabriek-tls-rotate-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('new connections get the new certificate within --tls-poll-secs, open ones keep serving, and bad files change nothing', async () => {
      await install(pki.server);
      const gw = await serve(1);
      const client = new InferenceGrpcClient(`localhost:${gw.grpcPort}`, { tls: { rootCert: pem.ca } });
      try {
        const grpcPort = gw.grpcPort;
        const httpPort = portOf(gw.readyLine, 'HTTP');
        expect(await servedSerial(grpcPort, pem.ca, 'h2')).toBe('01');
        expect(await servedSerial(httpPort, pem.ca, 'http/1.1')).toBe('01');
        await client.modelInfer(inferRequest(), { timeoutMs: 20_000 });
        const before = await metricsText(gw);
        expect(before).toMatch(/^fabriek_tls_certificate_expiry_timestamp_seconds\{listener="grpc"\} \d+/m);
        expect(before).toMatch(/^fabriek_tls_certificate_expiry_timestamp_seconds\{listener="http"\} \d+/m);

        await install(pki.peer);
        await waitFor(
          async () => (await servedSerial(grpcPort, pem.ca, 'h2')) === '03' && (await servedSerial(httpPort, pem.ca, 'http/1.1')) === '03',
          15_000,
          'the new certificate on new connections',
        );
        expect(await servedSerial(portOf(gw.readyLine, 'metrics'), pem.ca, 'http/1.1')).toBe('03');
        // The connection opened before the rotation serves on.
        expect(Buffer.from((await client.modelInfer(inferRequest(), { timeoutMs: 20_000 })).rawOutputContents[0] ?? [])).toEqual(Buffer.from(VALUES.buffer));
        const rotated = await metricsText(gw);
        expect(counter(rotated, 'grpc', 'ok')).toBeGreaterThanOrEqual(1);
        expect(counter(rotated, 'http', 'ok')).toBeGreaterThanOrEqual(1);

        // A file that is not a certificate: refused by the startup checks, the certificate in force stays.
        const failed = counter(rotated, 'grpc', 'failed');
        await writeFile(crt(), 'not a certificate\n');
        await waitFor(async () => counter(await metricsText(gw), 'grpc', 'failed') > failed, 15_000, 'the bad file refused');
        expect(await servedSerial(grpcPort, pem.ca, 'h2')).toBe('03');
        expect(await grpcInfer(gw.address, { rootCert: pem.ca })).toBe('OK');
        expect(await httpOutcome(`https://localhost:${httpPort}/v2/models/identity_fp32/infer`, { ca: pem.ca })).toBe('OK 200');
      } finally {
        client.close();
        await gw.stop();
      }
    });

    it('with --tls-poll-secs 0 only SIGHUP reads them again', async () => {
      await install(pki.server);
      const gw = await serve(0);
      try {
        await install(pki.peer);
        await new Promise((r) => setTimeout(r, 1500));
        expect(await servedSerial(gw.grpcPort, pem.ca, 'h2')).toBe('01');
        gw.child.kill('SIGHUP');
        await waitFor(async () => (await servedSerial(gw.grpcPort, pem.ca, 'h2')) === '03', 15_000, 'the new certificate after SIGHUP');
        expect(await servedSerial(portOf(gw.readyLine, 'HTTP'), pem.ca, 'http/1.1')).toBe('03');
      } finally {
        await gw.stop();
      }
    });
  });

  describe('startup errors', () => {
    const serve = (...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
      runCli(['serve', '--model-repository', repo, '--grpc-port', '0', '--http-port', '0', '--metrics-port', '0', ...args]);

    it('exits 1 naming the flag and the file when a certificate cannot be read', async () => {
      const missing = join(pki.dir, 'missing.pem');
      const r = await serve('--grpc-use-ssl', 'true', '--grpc-server-cert', missing, '--grpc-server-key', pki.server.key);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`fabriek: --grpc-server-cert: cannot read '${missing}': no such file\n`);
      expect(r.stdout).toBe('');
    });

    it('exits 1 when the key does not belong to the certificate', async () => {
      const r = await serve('--http-use-ssl', 'true', '--http-server-cert', pki.server.cert, '--http-server-key', pki.client.key);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(
        `fabriek: --http-server-key: the key in '${pki.client.key}' does not belong to the certificate in '${pki.server.cert}' (--http-server-cert)\n`,
      );
    });

    it('exits 2 with the usage for mutual TLS without a root cert', async () => {
      const r = await serve('--grpc-use-ssl-mutual', 'true', '--grpc-server-cert', pki.server.cert, '--grpc-server-key', pki.server.key);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^fabriek: --grpc-use-ssl-mutual needs --grpc-root-cert: the CA that client certificates must chain to\n\nfabriek /);
    });
  });
});
