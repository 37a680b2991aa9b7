// `--cache-config` as tritonserver reads it: `<cache>,<key>=<value>`, a flag
// that may be repeated (`--cache-config redis,host=h --cache-config
// redis,port=6379`); Fabriek also takes several keys in one flag
// (`redis,host=h,port=6379`). Pure: parsed here, checked here, unit-tested.

/** The in-process LRU, bounded by bytes (Triton's `local` cache). */
export interface LocalCacheConfig {
  readonly kind: 'local';
  /** Bytes the cache may hold in all (tensor bytes and bookkeeping). */
  readonly sizeBytes: number;
  /** Answers larger than this are not cached (default: sizeBytes). */
  readonly maxEntryBytes: number;
}

/** Redis shared by every gateway (Triton's `redis` cache options, plus a TTL and an entry bound). */
export interface RedisCacheConfig {
  readonly kind: 'redis';
  readonly host: string;
  readonly port: number;
  readonly user: string | undefined;
  readonly password: string | undefined;
  readonly db: number;
  /** ms to wait for a connection; 0 = ioredis's default. */
  readonly connectTimeoutMs: number;
  /** ms a command may take before the cache counts as failed for that request (0 = 500 ms). */
  readonly socketTimeoutMs: number;
  /** Entries expire this long after they are written. */
  readonly ttlSeconds: number;
  readonly maxEntryBytes: number;
  /** Key prefix (`<namespace>:cache:<hash>`). */
  readonly namespace: string;
}

export type CacheConfig = LocalCacheConfig | RedisCacheConfig;

export class CacheConfigError extends Error {
  override name = 'CacheConfigError';
}

const LOCAL_KEYS = ['size', 'max_entry_bytes'] as const;
const REDIS_KEYS = ['host', 'port', 'user', 'password', 'db', 'connect_timeout', 'socket_timeout', 'ttl', 'max_entry_bytes', 'namespace'] as const;
/** An in-process cache larger than this is a typo, not a plan. */
const MAX_LOCAL_BYTES = 2 ** 40;
const DEFAULT_REDIS_ENTRY_BYTES = 1 << 20;
const DEFAULT_TTL_SECONDS = 3600;

function integer(where: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new CacheConfigError(`--cache-config ${where}: expected an integer from ${min} to ${max}, got '${raw}'`);
  }
  return n;
}

/** Every `--cache-config` value given (in order) → the cache; undefined when none was given. */
export function parseCacheConfig(flags: readonly string[]): CacheConfig | undefined {
  if (flags.length === 0) return undefined;
  let cache: string | undefined;
  const values = new Map<string, string>();
  for (const flag of flags) {
    const parts = flag.split(',');
    const name = parts[0] ?? '';
    if (name !== 'local' && name !== 'redis') {
      throw new CacheConfigError(`--cache-config: expected <cache>,<key>=<value> with cache local or redis (e.g. local,size=1048576), got '${flag}'`);
    }
    if (cache !== undefined && cache !== name) throw new CacheConfigError(`--cache-config: one cache at a time, got both ${cache} and ${name}`);
    cache = name;
    const known: readonly string[] = name === 'local' ? LOCAL_KEYS : REDIS_KEYS;
    if (parts.length < 2) throw new CacheConfigError(`--cache-config: expected ${name},<key>=<value>, got '${flag}'`);
    for (const pair of parts.slice(1)) {
      const eq = pair.indexOf('=');
      const key = eq < 0 ? pair : pair.slice(0, eq);
      if (eq <= 0) throw new CacheConfigError(`--cache-config ${name}: expected <key>=<value>, got '${pair}'`);
      if (!known.includes(key)) throw new CacheConfigError(`--cache-config ${name}: unknown option '${key}'; expected one of ${known.join(', ')}`);
      values.set(key, pair.slice(eq + 1));
    }
  }
  return cache === 'local' ? localConfig(values) : redisConfig(values);
}

function localConfig(values: ReadonlyMap<string, string>): LocalCacheConfig {
  const size = values.get('size');
  if (size === undefined) throw new CacheConfigError('--cache-config local: needs size=<bytes> (e.g. local,size=1048576)');
  const sizeBytes = integer('local,size', size, 1, MAX_LOCAL_BYTES);
  const entry = values.get('max_entry_bytes');
  return { kind: 'local', sizeBytes, maxEntryBytes: entry === undefined ? sizeBytes : integer('local,max_entry_bytes', entry, 1, sizeBytes) };
}

function redisConfig(values: ReadonlyMap<string, string>): RedisCacheConfig {
  const host = values.get('host');
  const port = values.get('port');
  if (host === undefined || host === '' || port === undefined) {
    throw new CacheConfigError(`--cache-config redis: needs host=<host> and port=<port> (e.g. redis,host=127.0.0.1,port=6379)`);
  }
  const namespace = values.get('namespace') ?? 'fabriek';
  if (!/^[\w.-]+$/.test(namespace)) throw new CacheConfigError(`--cache-config redis,namespace: only letters, digits, _ . - are allowed, got '${namespace}'`);
  const optional = (key: string, fallback: number, min: number, max: number): number => {
    const raw = values.get(key);
    return raw === undefined ? fallback : integer(`redis,${key}`, raw, min, max);
  };
  return {
    kind: 'redis',
    host,
    port: integer('redis,port', port, 1, 65535),
    user: values.get('user'),
    password: values.get('password'),
    db: optional('db', 0, 0, 1 << 16),
    connectTimeoutMs: optional('connect_timeout', 0, 0, 600_000),
    socketTimeoutMs: optional('socket_timeout', 0, 0, 600_000),
    ttlSeconds: optional('ttl', DEFAULT_TTL_SECONDS, 1, 365 * 24 * 3600),
    maxEntryBytes: optional('max_entry_bytes', DEFAULT_REDIS_ENTRY_BYTES, 1, 512 * 1024 * 1024),
    namespace,
  };
}

/** For the start-up log: the cache without its password. */
export function describeCache(c: CacheConfig): Record<string, unknown> {
  if (c.kind === 'local') return { cache: 'local', sizeBytes: c.sizeBytes, maxEntryBytes: c.maxEntryBytes };
  return { cache: 'redis', host: c.host, port: c.port, db: c.db, ttlSeconds: c.ttlSeconds, maxEntryBytes: c.maxEntryBytes, namespace: c.namespace };
}
