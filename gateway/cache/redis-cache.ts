import { Redis } from 'ioredis';
import { type Logger } from 'pino';
import { type Tensor } from '../../core/tensor.js';
import { type RedisCacheConfig } from './cache-config.js';
import { cachedSize, decodeCachedResponse, encodeCachedResponse } from './cached-response.js';
import { type ResponseStore } from './response-store.js';

/** A command slower than this counts as Redis failing for that request (socket_timeout=0). */
const DEFAULT_COMMAND_TIMEOUT_MS = 500;

export interface RedisCacheOptions {
  readonly log: Logger;
  /** Told of every failed get or put (the metric). */
  readonly onError?: (op: 'get' | 'put') => void;
}

/**
 * Triton's `redis` cache: answers kept in Redis, shared by every gateway
 * that points at it, each entry expiring `ttl` seconds after it was written
 * and none larger than `max_entry_bytes` (bound Redis's memory as a whole
 * with its own maxmemory and an allkeys-lru policy). When Redis fails, a
 * get is a miss and a put is dropped: serving goes on uncached, with one
 * log line when Redis goes and one when it is back.
 */
export class RedisCache implements ResponseStore {
  readonly kind = 'redis';
  readonly bytes = undefined;
  readonly #redis: Redis;
  readonly #config: RedisCacheConfig;
  readonly #log: Logger;
  readonly #onError: ((op: 'get' | 'put') => void) | undefined;
  readonly #prefix: string;
  #failing = false;

  constructor(config: RedisCacheConfig, options: RedisCacheOptions) {
    this.#config = config;
    this.#log = options.log;
    this.#onError = options.onError;
    this.#prefix = `${config.namespace}:cache:`;
    this.#redis = new Redis({
      host: config.host,
      port: config.port,
      ...(config.user !== undefined ? { username: config.user } : {}),
      ...(config.password !== undefined ? { password: config.password } : {}),
      db: config.db,
      ...(config.connectTimeoutMs > 0 ? { connectTimeout: config.connectTimeoutMs } : {}),
      commandTimeout: config.socketTimeoutMs > 0 ? config.socketTimeoutMs : DEFAULT_COMMAND_TIMEOUT_MS,
      lazyConnect: true,
      // Fail at once while disconnected: the request then runs uncached instead of waiting.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      retryStrategy: (attempt: number) => Math.min(1_000, 50 * attempt),
    });
    // Reported once per outage by #failed; ioredis keeps reconnecting.
    this.#redis.on('error', () => {});
  }

  /** Connects; a Redis that cannot be reached now is logged and retried, it does not stop the start. */
  async start(): Promise<void> {
    try {
      await this.#redis.connect();
    } catch (error) {
      this.#failed('connect', error);
    }
  }

  async get(key: string): Promise<readonly Tensor[] | undefined> {
    let value: Buffer | null;
    try {
      value = await this.#redis.getBuffer(this.#prefix + key);
    } catch (error) {
      this.#failed('get', error);
      return undefined;
    }
    this.#answered();
    if (value === null) return undefined;
    try {
      return decodeCachedResponse(value);
    } catch (error) {
      // Not an entry this code wrote (another writer under the same prefix): a miss, counted.
      this.#onError?.('get');
      this.#log.debug({ reason: error instanceof Error ? error.message : String(error) }, 'response cache: unreadable Redis entry; treated as a miss');
      return undefined;
    }
  }

  put(key: string, outputs: readonly Tensor[]): boolean {
    if (cachedSize(key, outputs) > this.#config.maxEntryBytes) return false;
    this.#redis.set(this.#prefix + key, encodeCachedResponse(outputs), 'EX', this.#config.ttlSeconds).then(
      () => this.#answered(),
      (error: unknown) => this.#failed('put', error),
    );
    return true;
  }

  #failed(op: 'connect' | 'get' | 'put', error: unknown): void {
    if (op !== 'connect') this.#onError?.(op);
    if (this.#failing) return;
    this.#failing = true;
    this.#log.warn(
      { host: this.#config.host, port: this.#config.port, op, reason: error instanceof Error ? error.message : String(error) },
      'response cache: Redis failed; serving goes on uncached until it answers again',
    );
  }

  #answered(): void {
    if (!this.#failing) return;
    this.#failing = false;
    this.#log.info({ host: this.#config.host, port: this.#config.port }, 'response cache: Redis answers again; caching resumed');
  }

  async close(): Promise<void> {
    this.#redis.disconnect();
    return Promise.resolve();
  }
}
