import { readFile } from 'node:fs/promises';
import { Cluster, type ClusterNode, Redis, type RedisOptions } from 'ioredis';
import { serverNameFor } from './tls.js';

/** ioredis's options; its constructors refuse an explicit undefined replyMapping, which RedisOptions allows. */
export type Options = Omit<RedisOptions, 'replyMapping'>;

// The one place that turns what an operator gave (a URL, flags, a password
// file, an environment variable, TLS files, Sentinel addresses) into ioredis
// options, for the gateway's registry watcher and quotas and the worker's
// lease. Secrets never travel on the command line (`ps` shows it) and never
// appear in what this module lets out for logs: `display` is rebuilt from the
// parsed parts without the password, and errors go through `redisError`.
//
//   redis://[user[:password]@]host:port[/db]      one Redis
//   rediss://…                                    the same over TLS
//   redis-sentinel://[user[:password]@]h:p[,h:p…]/master[/db]
//                                                 the master that Sentinel names, followed across failovers
//   redis-cluster://[user[:password]@]h:p[,h:p…]  Redis Cluster (the tenant quotas only)

/** The environment variable read for the password when no file is given. */
export const PASSWORD_ENV = 'FABRIEK_REGISTRY_PASSWORD';

export type RedisMode = 'standalone' | 'sentinel' | 'cluster';

/** Where Redis is and how to log in, without the secrets' values (those come from files or the environment). */
export interface RedisSecretFlags {
  /** `--registry-password-file`: the password is this file's content, less one trailing newline. */
  readonly passwordFile?: string | undefined;
  /** `--registry-tls-ca`: CA bundle the server certificate must chain to (rediss:// only; default: the system CAs). */
  readonly tlsCa?: string | undefined;
  /** `--registry-tls-cert` / `--registry-tls-key`: client certificate, for servers with tls-auth-clients yes. */
  readonly tlsCert?: string | undefined;
  readonly tlsKey?: string | undefined;
}

/** Secrets as read, to be merged into the options. */
export interface RedisSecrets {
  readonly password?: string | undefined;
  readonly ca?: Buffer | undefined;
  readonly cert?: Buffer | undefined;
  readonly key?: Buffer | undefined;
}

/** A Redis to connect to: ioredis options and a printable name that holds no secret. */
export interface RedisTarget {
  readonly mode: RedisMode;
  /** For logs and errors: the URL without its password. */
  readonly display: string;
  /** Options for `new Redis(options)` (standalone and Sentinel). */
  readonly options: Options;
  /** Seed nodes (cluster only). */
  readonly nodes: readonly ClusterNode[];
  /** Strings that must never be printed (the password), for scrubbing error texts. */
  readonly secrets: readonly string[];
  /** The URL itself carried a password (shown by `ps`): worth a warning. */
  readonly passwordInUrl: boolean;
}

export class RedisConfigError extends Error {
  override name = 'RedisConfigError';
}

const SCHEMES = ['redis', 'rediss', 'redis-sentinel', 'redis-cluster'] as const;
type Scheme = (typeof SCHEMES)[number];

interface ParsedUrl {
  scheme: Scheme;
  username: string | undefined;
  password: string | undefined;
  hosts: { host: string; port: number }[];
  /** Sentinel master name. */
  name: string | undefined;
  db: number | undefined;
}

/** The URL with any password replaced by ***, for messages about a URL that did not parse. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, (_m, auth: string) => {
    const colon = auth.indexOf(':');
    return colon < 0 ? `//${auth}@` : `//${auth.slice(0, colon)}:***@`;
  });
}

function hostPort(raw: string, url: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+)(?::(\d{1,5}))?$/.exec(raw);
  const port = Number(m?.[2] ?? 6379);
  if (!m?.[1] || port < 1 || port > 65535) throw new RedisConfigError(`expected host:port in ${redactUrl(url)}, got '${raw}'`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

function dbNumber(raw: string | undefined, url: string): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,2}$/.test(raw)) throw new RedisConfigError(`expected a database number after the last / of ${redactUrl(url)}, got '${raw}'`);
  return Number(raw);
}

/** Parses one of the four URL forms above; pure. */
export function parseRedisUrl(url: string): ParsedUrl {
  const m = /^([a-z-]+):\/\/(?:([^@/]*)@)?([^/?#@]*)(?:\/([^?#]*))?$/.exec(url);
  const scheme = m?.[1] as Scheme | undefined;
  if (!m || scheme === undefined || !SCHEMES.includes(scheme)) {
    throw new RedisConfigError(`expected a redis://, rediss://, redis-sentinel:// or redis-cluster:// URL, got '${redactUrl(url)}'`);
  }
  let username: string | undefined;
  let password: string | undefined;
  if (m[2] !== undefined) {
    const colon = m[2].indexOf(':');
    const user = decodeURIComponent(colon < 0 ? m[2] : m[2].slice(0, colon));
    username = user === '' ? undefined : user;
    password = colon < 0 ? undefined : decodeURIComponent(m[2].slice(colon + 1));
    if (password === '') password = undefined;
  }
  const hostList = (m[3] ?? '').split(',').filter((h) => h !== '');
  if (hostList.length === 0) throw new RedisConfigError(`expected at least one host:port in ${redactUrl(url)}`);
  const hosts = hostList.map((h) => hostPort(h, url));
  const path = (m[4] ?? '').split('/').filter((p) => p !== '');
  let name: string | undefined;
  let db: number | undefined;
  if (scheme === 'redis-sentinel') {
    name = path[0];
    if (name === undefined) throw new RedisConfigError(`expected redis-sentinel://host:port[,host:port…]/MASTER-NAME, got '${redactUrl(url)}': no master name`);
    db = dbNumber(path[1], url);
    if (path.length > 2) throw new RedisConfigError(`expected redis-sentinel://hosts/MASTER-NAME[/db], got '${redactUrl(url)}'`);
  } else {
    if (path.length > 1) throw new RedisConfigError(`expected ${scheme}://host:port[/db], got '${redactUrl(url)}'`);
    db = dbNumber(path[0], url);
    if (scheme !== 'redis-cluster' && hosts.length > 1) {
      throw new RedisConfigError(`expected one host:port in ${scheme}:// (several are for redis-sentinel:// or redis-cluster://), got '${redactUrl(url)}'`);
    }
    if (scheme === 'redis-cluster' && db !== undefined && db !== 0) throw new RedisConfigError('Redis Cluster has only database 0');
  }
  return { scheme, username, password, hosts, name, db };
}

/** The URL for `--registry-sentinels h:p,h:p --registry-sentinel-name NAME`. */
export function sentinelUrl(sentinels: string, name: string): string {
  if (!/^[\w.-]+$/.test(name)) throw new RedisConfigError(`--registry-sentinel-name: expected letters, digits, _ . -, got '${name}'`);
  if (sentinels.trim() === '') throw new RedisConfigError('--registry-sentinels: expected host:port[,host:port…], got nothing');
  const url = `redis-sentinel://${sentinels.replace(/\s+/g, '')}/${name}`;
  parseRedisUrl(url);
  return url;
}

function hostsText(hosts: readonly { host: string; port: number }[]): string {
  return hosts.map((h) => `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`).join(',');
}

/**
 * ioredis options for `url` with `secrets` merged in; pure. A password may
 * come from one place only: the URL, or the file / environment.
 */
export function redisTarget(url: string, secrets: RedisSecrets = {}): RedisTarget {
  const p = parseRedisUrl(url);
  if (p.password !== undefined && secrets.password !== undefined) {
    throw new RedisConfigError(`a registry password came both in the URL and from --registry-password-file or ${PASSWORD_ENV}: give it one way (not in the URL, which ps shows)`);
  }
  const password = secrets.password ?? p.password;
  const tlsFiles = secrets.ca !== undefined || secrets.cert !== undefined || secrets.key !== undefined;
  if (tlsFiles && p.scheme !== 'rediss') throw new RedisConfigError(`--registry-tls-* need a rediss:// URL, got ${p.scheme}://`);
  if ((secrets.cert === undefined) !== (secrets.key === undefined)) throw new RedisConfigError('--registry-tls-cert and --registry-tls-key go together');
  const auth = p.username !== undefined ? `${encodeURIComponent(p.username)}${password !== undefined ? ':***' : ''}@` : password !== undefined ? ':***@' : '';
  const path = p.scheme === 'redis-sentinel' ? `/${p.name}${p.db !== undefined ? `/${p.db}` : ''}` : p.db !== undefined ? `/${p.db}` : '';
  const display = `${p.scheme}://${auth}${hostsText(p.hosts)}${path}`;
  const login: Options = {
    ...(p.username !== undefined ? { username: p.username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(p.db !== undefined ? { db: p.db } : {}),
  };
  const first = p.hosts[0] as { host: string; port: number };
  let options: Options;
  if (p.scheme === 'redis-sentinel') {
    // The sentinels are asked for the master at every (re)connect; the
    // failover detector follows +switch-master at once instead of waiting
    // for the old master's connection to fail. Sentinels themselves are
    // reached without a password (their own auth is not supported yet).
    options = { ...login, sentinels: p.hosts.map((h) => ({ host: h.host, port: h.port })), name: p.name, failoverDetector: true };
  } else {
    options = {
      ...login,
      host: first.host,
      port: first.port,
      ...(p.scheme === 'rediss'
        ? {
            tls: {
              ...serverNameFor(first.host),
              ...(secrets.ca ? { ca: secrets.ca } : {}),
              ...(secrets.cert ? { cert: secrets.cert } : {}),
              ...(secrets.key ? { key: secrets.key } : {}),
            },
          }
        : {}),
    };
  }
  return {
    mode: p.scheme === 'redis-sentinel' ? 'sentinel' : p.scheme === 'redis-cluster' ? 'cluster' : 'standalone',
    display,
    options,
    nodes: p.hosts.map((h) => ({ host: h.host, port: h.port })),
    secrets: password !== undefined && password.length >= 1 ? [password] : [],
    passwordInUrl: p.password !== undefined,
  };
}

async function readFlagFile(flag: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new RedisConfigError(`${flag} ${path}: cannot read the file (${code})`);
  }
}

/**
 * Reads the password (from `--registry-password-file`, else the environment
 * variable) and the TLS files. The variable is then removed from this
 * process's environment, so child processes do not inherit it.
 */
export async function loadRedisSecrets(flags: RedisSecretFlags, env: NodeJS.ProcessEnv = process.env): Promise<RedisSecrets> {
  const fromEnv = env[PASSWORD_ENV];
  if (flags.passwordFile !== undefined && fromEnv !== undefined) {
    throw new RedisConfigError(`both --registry-password-file and ${PASSWORD_ENV} are set: give the password one way`);
  }
  let password: string | undefined;
  if (flags.passwordFile !== undefined) {
    password = (await readFlagFile('--registry-password-file', flags.passwordFile)).toString('utf8').replace(/\r?\n$/, '');
    if (password === '') throw new RedisConfigError(`--registry-password-file ${flags.passwordFile}: the file is empty`);
  } else if (fromEnv !== undefined) {
    if (fromEnv === '') throw new RedisConfigError(`${PASSWORD_ENV} is set but empty`);
    password = fromEnv;
  }
  delete env[PASSWORD_ENV];
  const [ca, cert, key] = await Promise.all([
    flags.tlsCa === undefined ? undefined : readFlagFile('--registry-tls-ca', flags.tlsCa),
    flags.tlsCert === undefined ? undefined : readFlagFile('--registry-tls-cert', flags.tlsCert),
    flags.tlsKey === undefined ? undefined : readFlagFile('--registry-tls-key', flags.tlsKey),
  ]);
  return { password, ca, cert, key };
}

/** Reads the secrets and builds the target: what a process does once at startup. */
export async function resolveRedisTarget(url: string, flags: RedisSecretFlags = {}, env: NodeJS.ProcessEnv = process.env): Promise<RedisTarget> {
  return redisTarget(url, await loadRedisSecrets(flags, env));
}

/** A target from a URL alone (tests, and callers handed a plain URL). */
export function targetOf(target: string | RedisTarget): RedisTarget {
  return typeof target === 'string' ? redisTarget(target) : target;
}

/**
 * A client for a standalone or Sentinel target. A replica that became
 * read-only (a failover demoted the node this client is on) makes it
 * reconnect, so it asks the sentinels for the new master.
 */
export function createRedis(target: RedisTarget, extra: Options): Redis {
  if (target.mode === 'cluster') throw new RedisConfigError(`${target.display}: Redis Cluster is supported for the tenant quotas only, not for the worker registry`);
  const options: Options = { ...target.options, reconnectOnError: (error: Error) => error.message.startsWith('READONLY'), ...extra };
  return new Redis(options);
}

/** A Redis Cluster client for a cluster target (the tenant quotas), failing fast like the other clients. */
export function createCluster(target: RedisTarget, commandTimeoutMs: number): Cluster {
  const { username, password } = target.options;
  return new Cluster([...target.nodes], {
    lazyConnect: true,
    enableOfflineQueue: false,
    clusterRetryStrategy: (attempt: number) => Math.min(1_000, 50 * attempt),
    redisOptions: {
      maxRetriesPerRequest: 1,
      commandTimeout: commandTimeoutMs,
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
    },
  });
}

/**
 * An Error safe to log or throw on: its message with every secret replaced,
 * and nothing else. ioredis attaches the failed command and its arguments to
 * reply errors, and a refused AUTH's arguments are the password.
 */
export function redisError(error: unknown, target: Pick<RedisTarget, 'secrets'>): Error {
  let message = error instanceof Error ? error.message : String(error);
  for (const secret of target.secrets) message = message.split(secret).join('***');
  const safe = new Error(message);
  safe.name = error instanceof Error ? error.name : 'Error';
  safe.stack = `${safe.name}: ${message}`;
  return safe;
}
