// gateway/tls.ts: loading and checking certificate files, the TLS flags, and
// the node TLS options for gateway↔worker mutual TLS over real sockets.
import { writeFile } from 'node:fs/promises';
import { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { connect, type ConnectionOptions, createServer, type TlsOptions } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseServeOptions, UsageError } from '../../gateway/options.js';
import { StartupError } from '../../core/startup-error.js';
import { describeTls, type ListenerTlsFiles, loadListenerTls, loadWorkerTls, serverNameFor, workerTlsFromFlags } from '../../core/tls.js';
import { makeTestPki, type TestPki } from '../helpers/test-certs.js';

let pki: TestPki;

beforeAll(async () => {
  pki = await makeTestPki();
});

afterAll(async () => {
  await pki?.remove();
});

const grpcFiles = (cert: string, key: string, root?: string, mutual = false): ListenerTlsFiles => ({
  cert: { flag: '--grpc-server-cert', path: cert },
  key: { flag: '--grpc-server-key', path: key },
  rootCert: root === undefined ? undefined : { flag: '--grpc-root-cert', path: root },
  mutual,
});

async function startupError(p: Promise<unknown>): Promise<string> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StartupError);
  return (error as Error).message;
}

describe('serverNameFor', () => {
  it('names a DNS host, and no address (SNI carries host names only: RFC 6066)', () => {
    expect(serverNameFor('worker-1.internal')).toEqual({ servername: 'worker-1.internal' });
    expect(serverNameFor('localhost')).toEqual({ servername: 'localhost' });
    expect(serverNameFor('10.0.0.7')).toEqual({});
    expect(serverNameFor('::1')).toEqual({});
  });
});

describe('loadListenerTls', () => {
  it('reads a certificate, its key and a root cert', async () => {
    const tls = await loadListenerTls(grpcFiles(pki.server.cert, pki.server.key, pki.ca, true));
    expect(tls.cert.toString()).toContain('BEGIN CERTIFICATE');
    expect(tls.key.toString()).toContain('PRIVATE KEY');
    expect(tls.ca?.toString()).toContain('BEGIN CERTIFICATE');
    expect(tls.mutual).toBe(true);
  });

  it('names the flag and the path of a file that is not there', async () => {
    const missing = join(pki.dir, 'nope.pem');
    expect(await startupError(loadListenerTls(grpcFiles(missing, pki.server.key)))).toBe(
      `--grpc-server-cert: cannot read '${missing}': no such file`,
    );
    expect(await startupError(loadListenerTls(grpcFiles(pki.server.cert, pki.server.key, missing, true)))).toBe(
      `--grpc-root-cert: cannot read '${missing}': no such file`,
    );
  });

  it('refuses a directory, a key given as certificate and a certificate given as key', async () => {
    expect(await startupError(loadListenerTls(grpcFiles(pki.dir, pki.server.key)))).toBe(
      `--grpc-server-cert: cannot read '${pki.dir}': it is a directory`,
    );
    expect(await startupError(loadListenerTls(grpcFiles(pki.server.key, pki.server.key)))).toMatch(
      /^--grpc-server-cert: '.*server\.key' is not a PEM certificate \(/,
    );
    expect(await startupError(loadListenerTls(grpcFiles(pki.server.cert, pki.server.cert)))).toMatch(
      /^--grpc-server-key: '.*server\.pem' is not an unencrypted PEM private key \(/,
    );
  });

  it('refuses a key that belongs to another certificate', async () => {
    expect(await startupError(loadListenerTls(grpcFiles(pki.server.cert, pki.client.key)))).toBe(
      `--grpc-server-key: the key in '${pki.client.key}' does not belong to the certificate in '${pki.server.cert}' (--grpc-server-cert)`,
    );
  });

  it('refuses a root cert that is not PEM', async () => {
    const junk = join(pki.dir, 'junk.pem');
    await writeFile(junk, 'not a certificate\n');
    expect(await startupError(loadListenerTls(grpcFiles(pki.server.cert, pki.server.key, junk, true)))).toMatch(
      /^--grpc-root-cert: '.*junk\.pem' is not a PEM certificate \(/,
    );
  });

  it('describes the mode for the ready line', () => {
    expect(describeTls(undefined)).toBe('');
    expect(describeTls({ mutual: false })).toBe(' (TLS)');
    expect(describeTls({ mutual: true })).toBe(' (mutual TLS)');
  });
});

describe('TLS flags of fabriek serve', () => {
  const base = ['--model-repository', '/models'];
  const usage = (args: string[]): string => {
    try {
      parseServeOptions([...base, ...args]);
    } catch (error) {
      expect(error).toBeInstanceOf(UsageError);
      return (error as Error).message;
    }
    throw new Error('expected a usage error');
  };

  it('is plaintext by default', () => {
    const o = parseServeOptions(base);
    expect(o.grpcTls).toBeUndefined();
    expect(o.httpTls).toBeUndefined();
    expect(o.workerTls).toBeUndefined();
  });

  it("reads tritonserver's gRPC flags; mutual implies TLS", () => {
    const o = parseServeOptions([...base, '--grpc-use-ssl=true', '--grpc-server-cert', 'c.pem', '--grpc-server-key', 'k.pem']);
    expect(o.grpcTls).toEqual({
      cert: { flag: '--grpc-server-cert', path: 'c.pem' },
      key: { flag: '--grpc-server-key', path: 'k.pem' },
      rootCert: undefined,
      mutual: false,
    });
    const m = parseServeOptions([
      ...base, '--grpc-use-ssl-mutual', 'true', '--grpc-server-cert', 'c.pem', '--grpc-server-key', 'k.pem', '--grpc-root-cert', 'ca.pem',
    ]);
    expect(m.grpcTls?.mutual).toBe(true);
    expect(m.grpcTls?.rootCert?.path).toBe('ca.pem');
    expect(m.httpTls).toBeUndefined();
  });

  it('reads the HTTP flags separately', () => {
    const o = parseServeOptions([...base, '--http-use-ssl', '1', '--http-server-cert', 'c.pem', '--http-server-key', 'k.pem']);
    expect(o.httpTls?.cert).toEqual({ flag: '--http-server-cert', path: 'c.pem' });
    expect(o.grpcTls).toBeUndefined();
  });

  it('refuses incomplete or contradictory TLS flags', () => {
    expect(usage(['--grpc-use-ssl', 'true'])).toBe('--grpc-use-ssl needs --grpc-server-cert and --grpc-server-key');
    expect(usage(['--http-use-ssl', 'true', '--http-server-cert', 'c.pem'])).toBe(
      '--http-use-ssl needs --http-server-cert and --http-server-key',
    );
    expect(usage(['--grpc-use-ssl-mutual', 'true', '--grpc-server-cert', 'c.pem', '--grpc-server-key', 'k.pem'])).toBe(
      '--grpc-use-ssl-mutual needs --grpc-root-cert: the CA that client certificates must chain to',
    );
    expect(usage(['--grpc-server-cert', 'c.pem', '--grpc-server-key', 'k.pem'])).toBe(
      '--grpc-server-cert, --grpc-server-key given without --grpc-use-ssl true',
    );
    expect(usage(['--http-use-ssl', 'yes'])).toBe("--http-use-ssl: expected true or false, got 'yes'");
    expect(usage(['--grpc-use-ssl', 'true', '--grpc-server-cert', '', '--grpc-server-key', 'k.pem'])).toBe(
      "--grpc-server-cert: expected a file path, got ''",
    );
    expect(usage(['--worker-tls-cert', 'c.pem'])).toBe(
      'worker TLS is mutual and needs --worker-tls-cert, --worker-tls-key and --worker-tls-ca; missing --worker-tls-key, --worker-tls-ca',
    );
  });
});

describe('worker TLS (gateway ↔ worker, mutual)', () => {
  const flags = (): { cert: string; key: string; ca: string } => ({ cert: pki.peer.cert, key: pki.peer.key, ca: pki.ca });

  it('takes all three flags or none', () => {
    const err = (m: string): Error => new RangeError(m);
    expect(workerTlsFromFlags({ cert: undefined, key: undefined, ca: undefined }, err)).toBeUndefined();
    expect(workerTlsFromFlags(flags(), err)?.ca).toEqual({ flag: '--worker-tls-ca', path: pki.ca });
    expect(() => workerTlsFromFlags({ cert: 'c', key: 'k', ca: undefined }, err)).toThrow(RangeError);
  });

  it('gives server and client options with CA, certificate and key, TLS 1.3, client certificates required', async () => {
    const files = workerTlsFromFlags(flags(), (m) => new Error(m));
    if (!files) throw new Error('no files');
    const tls = await loadWorkerTls(files);
    const pem = await pki.read(pki.peer.cert);
    expect(tls.server).toMatchObject({ cert: pem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' });
    expect(tls.client).toMatchObject({ cert: pem, rejectUnauthorized: true, minVersion: 'TLSv1.3' });
    expect(tls.server.ca).toEqual(await pki.read(pki.ca));
    expect(tls.client.key).toEqual(await pki.read(pki.peer.key));
  });

  it('names the worker flag of a bad file', async () => {
    const files = workerTlsFromFlags({ ...flags(), ca: join(pki.dir, 'missing-ca.pem') }, (m) => new Error(m));
    if (!files) throw new Error('no files');
    expect(await startupError(loadWorkerTls(files))).toMatch(/^--worker-tls-ca: cannot read '.*missing-ca\.pem': no such file$/);
  });

  /** One connection to a TLS server with `server` options; what the client saw. */
  async function exchange(server: TlsOptions, client: ConnectionOptions): Promise<string> {
    const srv = createServer(server, (socket) => {
      socket.end(`hello ${socket.getPeerCertificate().subject?.CN ?? 'anonymous'}`);
    });
    srv.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const { port } = srv.address() as AddressInfo;
    try {
      return await new Promise<string>((resolve) => {
        let data = '';
        const socket = connect({ ...client, host: '127.0.0.1', port });
        socket.on('data', (d: Buffer) => (data += d.toString()));
        socket.on('error', (e: Error) => resolve(`error: ${e.message}`));
        socket.on('close', () => resolve(data === '' ? 'closed' : data));
      });
    } finally {
      srv.close();
    }
  }

  it('connects when both sides have certificates from the CA, and each sees the other', async () => {
    const files = workerTlsFromFlags(flags(), (m) => new Error(m));
    if (!files) throw new Error('no files');
    const tls = await loadWorkerTls(files);
    expect(await exchange(tls.server, tls.client)).toBe('hello fabriek test peer');
  });

  it('refuses a gateway without a client certificate, or with one from another CA', async () => {
    const files = workerTlsFromFlags(flags(), (m) => new Error(m));
    if (!files) throw new Error('no files');
    const tls = await loadWorkerTls(files);
    const ca = await pki.read(pki.ca);
    expect(await exchange(tls.server, { ca, minVersion: 'TLSv1.3' })).toMatch(/^error: .*certificate required/);
    const other = { ca, cert: await pki.read(pki.otherClient.cert), key: await pki.read(pki.otherClient.key) };
    // TLS 1.3: the client's handshake is done before the server checks its certificate; it sees an alert or a close, never data.
    expect(await exchange(tls.server, other)).toMatch(/^(error: .*alert|closed$)/);
  });

  it('refuses a worker whose certificate is not from the CA', async () => {
    const files = workerTlsFromFlags({ ...flags(), ca: pki.otherCa }, (m) => new Error(m));
    if (!files) throw new Error('no files');
    const gateway = await loadWorkerTls(files);
    const workerFiles = workerTlsFromFlags(flags(), (m) => new Error(m));
    if (!workerFiles) throw new Error('no files');
    const worker = await loadWorkerTls(workerFiles);
    expect(await exchange(worker.server, gateway.client)).toBe('error: self-signed certificate in certificate chain');
  });

  it('refuses a worker whose certificate does not name the host the gateway dialled', async () => {
    const files = workerTlsFromFlags(flags(), (m) => new Error(m));
    if (!files) throw new Error('no files');
    const gateway = await loadWorkerTls(files);
    const noSan = await loadWorkerTls({ ...files, cert: { flag: 'cert', path: pki.elsewhere.cert }, key: { flag: 'key', path: pki.elsewhere.key } });
    expect(await exchange(noSan.server, gateway.client)).toMatch(/^error: Hostname\/IP does not match certificate's altnames/);
  });
});
