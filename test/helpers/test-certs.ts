// Throwaway PKI for TLS tests, made with the openssl CLI in a temp dir per
// run (never committed): a CA, certificates it signs, and a second CA that
// nothing trusts. P-256 keys: quick to generate on a loaded machine.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function openssl(dir: string, args: readonly string[]): Promise<void> {
  await run('openssl', [...args], { cwd: dir });
}

/** Paths of a PEM certificate and its key. */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

export interface TestPki {
  readonly dir: string;
  /** The trusted CA certificate. */
  readonly ca: string;
  /** Signed by `ca`; SANs IP:127.0.0.1 and DNS:localhost; serverAuth. */
  readonly server: CertFiles;
  /** Signed by `ca`; clientAuth. */
  readonly client: CertFiles;
  /** Signed by `ca`; both server and client use, SAN IP:127.0.0.1 (for gateway↔worker mTLS). */
  readonly peer: CertFiles;
  /** Like `peer`, but its only SAN is DNS:elsewhere.example. */
  readonly elsewhere: CertFiles;
  /** A second CA, trusted by no one, and a client certificate it signs. */
  readonly otherCa: string;
  readonly otherClient: CertFiles;
  read(path: string): Promise<Buffer>;
  remove(): Promise<void>;
}

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(dir, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=fabriek test ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

async function issue(dir: string, ca: string, name: string, serial: number, extensions: string): Promise<CertFiles> {
  await writeFile(join(dir, `${name}.ext`), `${extensions}\n`);
  await openssl(dir, [
    'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=fabriek test ${name}`,
  ]);
  await openssl(dir, [
    'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-set_serial', String(serial),
    '-days', '2', '-out', `${name}.pem`, '-extfile', `${name}.ext`,
  ]);
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

/** Generates the whole PKI in a fresh temp dir. */
export async function makeTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), 'fabriek-tls-'));
  await Promise.all([makeCa(dir, 'ca'), makeCa(dir, 'other-ca')]);
  const [server, client, peer, elsewhere, otherClient] = await Promise.all([
    issue(dir, 'ca', 'server', 1, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'),
    issue(dir, 'ca', 'client', 2, 'extendedKeyUsage=clientAuth'),
    issue(dir, 'ca', 'peer', 3, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth'),
    issue(dir, 'ca', 'elsewhere', 4, 'subjectAltName=DNS:elsewhere.example\nextendedKeyUsage=serverAuth,clientAuth'),
    issue(dir, 'other-ca', 'other-client', 5, 'extendedKeyUsage=clientAuth'),
  ]);
  return {
    dir,
    ca: join(dir, 'ca.pem'),
    server,
    client,
    peer,
    elsewhere,
    otherCa: join(dir, 'other-ca.pem'),
    otherClient,
    read: (path) => readFile(path),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
