// TLS for the public listeners (gRPC, HTTP/REST and metrics) and for the
// link between gateways and workers. Files are read and checked at startup:
// a wrong path, a file that is not PEM or a key that does not belong to its
// certificate stops the server with one line naming the flag, instead of
// failing every handshake later. A public listener's files are read and
// checked the same way again when they change (tls-reloader.ts).
import { ServerCredentials } from '@grpc/grpc-js';
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { type ServerOptions as HttpsServerOptions } from 'node:https';
import { isIP } from 'node:net';
import { type ConnectionOptions, createSecureContext, type SecureContextOptions, type TlsOptions } from 'node:tls';
import { StartupError } from './startup-error.js';

/** A file named by a flag; the flag goes into every message about the file. */
export interface FlagFile {
  readonly flag: string;
  readonly path: string;
}

/** What the flags say about one public listener (`--grpc-…` or `--http-…`). */
export interface ListenerTlsFiles {
  readonly cert: FlagFile;
  readonly key: FlagFile;
  /** CA bundle that client certificates must chain to; required when `mutual`. */
  readonly rootCert: FlagFile | undefined;
  /** Require a client certificate signed by `rootCert` (mutual TLS). */
  readonly mutual: boolean;
}

/** What was read of a certificate, for the log and the expiry metric. */
export interface LoadedCertificate {
  /** When the certificate (the chain's first) expires. */
  readonly notAfter: Date;
  /** Its serial number (hex) and subject. */
  readonly serial: string;
  readonly subject: string;
}

/** A listener's certificate chain, key and client CA, read and checked. */
export interface ListenerTls extends LoadedCertificate {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | undefined;
  readonly mutual: boolean;
}

/** The three `--worker-tls-*` files: every gateway and worker has its own cert and key, all from one CA. */
export interface WorkerTlsFiles {
  readonly cert: FlagFile;
  readonly key: FlagFile;
  readonly ca: FlagFile;
}

/**
 * Node TLS options for the gateway↔worker link, mutual in both directions.
 * Both ends are Fabriek, so TLS 1.3 only.
 */
export interface WorkerTls extends LoadedCertificate {
  /**
   * For a worker's listener, `tls.createServer(server)`: presents the
   * worker's certificate and accepts only peers with a certificate from the CA.
   */
  readonly server: TlsOptions;
  /**
   * For a gateway's connection, `tls.connect({ ...client, host, port })`:
   * presents the gateway's certificate and accepts only a worker whose
   * certificate is from the CA and names `host` (a DNS or IP SAN).
   */
  readonly client: ConnectionOptions;
}

function reason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return error instanceof Error ? error.message : String(error);
}

async function read(file: FlagFile): Promise<Buffer> {
  try {
    return await readFile(file.path);
  } catch (error) {
    throw new StartupError(`${file.flag}: cannot read '${file.path}': ${reason(error)}`);
  }
}

function certificate(pem: Buffer, file: FlagFile): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (error) {
    throw new StartupError(`${file.flag}: '${file.path}' is not a PEM certificate (${reason(error)})`);
  }
}

function privateKey(pem: Buffer, file: FlagFile): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (error) {
    throw new StartupError(`${file.flag}: '${file.path}' is not an unencrypted PEM private key (${reason(error)})`);
  }
}

/** Reads a certificate chain, its key and an optional CA bundle, and checks that they fit together. */
async function loadPem(
  certFile: FlagFile,
  keyFile: FlagFile,
  caFile: FlagFile | undefined,
): Promise<{ cert: Buffer; key: Buffer; ca: Buffer | undefined; x509: X509Certificate }> {
  const [cert, key, ca] = await Promise.all([read(certFile), read(keyFile), caFile ? read(caFile) : undefined]);
  const x509 = certificate(cert, certFile);
  if (!x509.checkPrivateKey(privateKey(key, keyFile))) {
    throw new StartupError(
      `${keyFile.flag}: the key in '${keyFile.path}' does not belong to the certificate in '${certFile.path}' (${certFile.flag})`,
    );
  }
  if (ca && caFile) certificate(ca, caFile);
  try {
    // Whatever else OpenSSL refuses, e.g. a bundle with one bad entry after a good one.
    createSecureContext({ cert, key, ...(ca ? { ca } : {}) });
  } catch (error) {
    const flags = [certFile, keyFile, ...(caFile ? [caFile] : [])].map((f) => f.flag).join(', ');
    throw new StartupError(`${flags}: OpenSSL cannot use these files: ${reason(error)}`);
  }
  return { cert, key, ca, x509 };
}

function describe(x509: X509Certificate): LoadedCertificate {
  return { notAfter: new Date(x509.validTo), serial: x509.serialNumber, subject: x509.subject.replace(/\n/g, ', ') };
}

export async function loadListenerTls(files: ListenerTlsFiles): Promise<ListenerTls> {
  const { cert, key, ca, x509 } = await loadPem(files.cert, files.key, files.rootCert);
  return { cert, key, ca, mutual: files.mutual, ...describe(x509) };
}

/** What a handshake needs of a listener's files; the rest (whether client certificates are asked for) is the server's. */
export function secureContextOptions(tls: ListenerTls): SecureContextOptions {
  return { cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}) };
}

/**
 * grpc-js credentials whose certificate, key and client CA can be replaced
 * while the server runs: handshakes from then on use the new ones, and
 * connections already open keep theirs. createSsl's credentials cannot be;
 * grpc-js applies an update to its listeners (setSecureContext) for any
 * ServerCredentials that calls updateSecureContextOptions.
 */
export class ReloadableServerCredentials extends ServerCredentials {
  constructor(tls: ListenerTls) {
    // With mutual TLS, a client certificate from the root cert is required (Node rejects one that is not).
    super({ requestCert: tls.mutual }, secureContextOptions(tls));
  }

  reload(tls: ListenerTls): void {
    this.updateSecureContextOptions(secureContextOptions(tls));
  }

  _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

/** node:https options; with mutual TLS a client without a certificate from the root cert fails the handshake. */
export function httpsServerOptions(tls: ListenerTls): HttpsServerOptions {
  return { ...secureContextOptions(tls), requestCert: tls.mutual, rejectUnauthorized: tls.mutual };
}

/**
 * The TLS server name a client sends for `host`: SNI names a DNS host, so for
 * an IP address none is sent (RFC 6066; Node 26 refuses one). The server's
 * certificate is still checked against the address (its IP SAN).
 */
export function serverNameFor(host: string): { servername?: string } {
  return isIP(host) === 0 ? { servername: host } : {};
}

/** For the ready line: '' for plain, ' (TLS)' or ' (mutual TLS)'. */
export function describeTls(tls: { readonly mutual: boolean } | undefined): string {
  if (!tls) return '';
  return tls.mutual ? ' (mutual TLS)' : ' (TLS)';
}

/**
 * The `--worker-tls-cert`, `--worker-tls-key` and `--worker-tls-ca` flags:
 * all three or none (mutual TLS needs each side's certificate and the CA).
 * `usageError` makes the caller's kind of flag error.
 */
export function workerTlsFromFlags(
  flags: { readonly cert: string | undefined; readonly key: string | undefined; readonly ca: string | undefined },
  usageError: (message: string) => Error,
): WorkerTlsFiles | undefined {
  const { cert, key, ca } = flags;
  if (cert === undefined && key === undefined && ca === undefined) return undefined;
  if (cert === undefined || key === undefined || ca === undefined) {
    const missing = [
      cert === undefined ? '--worker-tls-cert' : '',
      key === undefined ? '--worker-tls-key' : '',
      ca === undefined ? '--worker-tls-ca' : '',
    ].filter((f) => f !== '');
    throw usageError(`worker TLS is mutual and needs --worker-tls-cert, --worker-tls-key and --worker-tls-ca; missing ${missing.join(', ')}`);
  }
  return {
    cert: { flag: '--worker-tls-cert', path: cert },
    key: { flag: '--worker-tls-key', path: key },
    ca: { flag: '--worker-tls-ca', path: ca },
  };
}

/** The paths of a listener's or the worker link's files, as a TlsReloader watches them. */
export function tlsPaths(files: ListenerTlsFiles | WorkerTlsFiles): string[] {
  const ca = 'rootCert' in files ? files.rootCert : files.ca;
  return [files.cert.path, files.key.path, ...(ca ? [ca.path] : [])];
}

/** Reads and checks the worker TLS files; the same options serve a worker's listener and a gateway's connections. */
export async function loadWorkerTls(files: WorkerTlsFiles): Promise<WorkerTls> {
  const { cert, key, ca, x509 } = await loadPem(files.cert, files.key, files.ca);
  const common = { cert, key, ca, minVersion: 'TLSv1.3' } as const;
  return {
    server: { ...common, requestCert: true, rejectUnauthorized: true },
    client: { ...common, rejectUnauthorized: true },
    ...describe(x509),
  };
}
