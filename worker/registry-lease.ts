import { type Redis } from 'ioredis';
import { type Logger } from 'pino';
import { createRedis, PASSWORD_ENV, redisError, type RedisSecretFlags, type RedisTarget, resolveRedisTarget, targetOf } from '../core/redis-connection.js';
import { encodeRecord, type RegistryEvent, registryKeys, type WorkerRecord } from '../core/worker-record.js';

// A worker's entry in the Redis registry: a key holding its record with a TTL,
// refreshed every ttl/3 (PEXPIRE: the record, which names every model with
// its config and signature, is written again only when it changed or Redis
// lost it). A worker that dies stops refreshing and its key
// expires; one that stops cleanly deletes it. Each change is announced on the
// events channel so gateways follow at once rather than at their next poll.
// While Redis is unreachable the worker keeps serving and keeps trying; when
// Redis returns (even empty, after a restart) the next heartbeat puts the
// record back.

export interface LeaseOptions {
  /** A URL, or a target built with its secrets (core/redis-connection.ts). */
  readonly url: string | RedisTarget;
  /** Password file and TLS files, read at `connect` (with a plain URL). */
  readonly secrets?: RedisSecretFlags;
  readonly namespace?: string;
  readonly logger: Logger;
}

export class RegistryLease {
  readonly #options: LeaseOptions;
  #redis: Redis | undefined;
  #target: RedisTarget | undefined;
  readonly #keys;
  readonly #logger: Logger;
  #record: WorkerRecord;
  #timer: NodeJS.Timeout | undefined;
  #reachable = true;
  #lastError: string | undefined;

  constructor(record: WorkerRecord, options: LeaseOptions) {
    this.#record = record;
    this.#options = options;
    this.#keys = registryKeys(options.namespace);
    this.#logger = options.logger;
  }

  /** The client, once `connect` made it. */
  get #client(): Redis {
    if (!this.#redis) throw new Error('the registry lease is not connected');
    return this.#redis;
  }

  /** Reads the secrets (once) and makes the client; a file that cannot be read rejects. */
  async #open(): Promise<{ redis: Redis; target: RedisTarget }> {
    if (this.#redis && this.#target) return { redis: this.#redis, target: this.#target };
    const { url, secrets } = this.#options;
    const target = typeof url === 'string' && secrets ? await resolveRedisTarget(url, secrets) : targetOf(url);
    if (target.passwordInUrl) {
      this.#logger.warn({ registry: target.display }, `a Redis password is in a URL on the command line, which ps shows to every user of this machine: use --registry-password-file or ${PASSWORD_ENV}`);
    }
    const redis = createRedis(target, {
      lazyConnect: true,
      // Commands fail fast while Redis is down; the heartbeat retries them.
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      retryStrategy: (attempt) => Math.min(1_000, 50 * attempt),
    });
    redis.on('error', (error: Error) => {
      // Reported once per outage by #heartbeat; ioredis keeps reconnecting.
      this.#lastError = redisError(error, target).message;
    });
    this.#redis = redis;
    this.#target = target;
    return { redis, target };
  }

  /** Connects; rejects with a clear message when Redis cannot be reached. */
  async connect(): Promise<void> {
    const { redis, target } = await this.#open();
    if (redis.status === 'ready') return;
    try {
      await redis.connect();
      await redis.ping();
    } catch (error) {
      redis.disconnect();
      // No `cause`: ioredis puts a refused AUTH's arguments (the password) on its errors.
      const why = this.#lastError ?? redisError(error, target).message;
      throw new Error(`cannot reach the registry at ${target.display}: ${why}`);
    }
  }

  #safe(error: unknown): Error {
    return redisError(error, this.#target ?? { secrets: [] });
  }

  /**
   * Registers the worker (connecting first if needed) and starts the
   * heartbeat. `address` replaces the record's when the port was only known
   * once the worker listened (after its models loaded).
   */
  async start(models: WorkerRecord['models'] = this.#record.models, address: string = this.#record.address): Promise<void> {
    this.#record = { ...this.#record, models, address };
    await this.connect();
    await this.#write('join');
    this.#timer = setInterval(() => void this.#heartbeat(), Math.max(100, Math.floor(this.#record.ttlMs / 3)));
  }

  /** Marks the worker draining so gateways stop sending it new batches. */
  async drain(): Promise<void> {
    this.#record = { ...this.#record, draining: true };
    await this.#write('update').catch((error: unknown) =>
      this.#logger.warn({ err: this.#safe(error) }, 'could not mark this worker draining in the registry; gateways learn when it leaves'),
    );
  }

  /** Removes the record and announces the leave; the connection closes. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (!this.#redis) return;
    try {
      await this.#redis.del(this.#keys.worker(this.#record.id));
      await this.#publish('leave');
    } catch (error) {
      this.#logger.warn({ err: this.#safe(error) }, 'could not deregister; the record expires with its TTL');
    }
    this.#redis.disconnect();
  }

  async #heartbeat(): Promise<void> {
    try {
      // The key is gone after a Redis restart or an outage past the TTL: write it again, as a join.
      const kept = this.#reachable && (await this.#client.pexpire(this.#keys.worker(this.#record.id), this.#record.ttlMs)) === 1;
      if (!kept) await this.#write('join');
      if (!this.#reachable) this.#logger.info('registry reachable again; registration renewed');
      this.#reachable = true;
    } catch (error) {
      if (this.#reachable) this.#logger.warn({ err: this.#safe(error) }, 'registry unreachable; serving on and retrying');
      this.#reachable = false;
    }
  }

  async #write(event: RegistryEvent['type'] | undefined): Promise<void> {
    await this.#client.set(this.#keys.worker(this.#record.id), encodeRecord(this.#record), 'PX', this.#record.ttlMs);
    if (event) await this.#publish(event);
  }

  async #publish(type: RegistryEvent['type']): Promise<void> {
    const event: RegistryEvent = { type, id: this.#record.id };
    await this.#client.publish(this.#keys.events, JSON.stringify(event));
  }
}
