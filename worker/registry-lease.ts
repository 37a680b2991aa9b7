import { Redis } from 'ioredis';
import { type Logger } from 'pino';
import { encodeRecord, type RegistryEvent, registryKeys, type WorkerRecord } from '../core/worker-record.js';

// A worker's entry in the Redis registry: a key holding its record with a TTL,
// refreshed every ttl/3. A worker that dies stops refreshing and its key
// expires; one that stops cleanly deletes it. Each change is announced on the
// events channel so gateways follow at once rather than at their next poll.
// While Redis is unreachable the worker keeps serving and keeps trying; when
// Redis returns (even empty, after a restart) the next heartbeat puts the
// record back.

export interface LeaseOptions {
  readonly url: string;
  readonly namespace?: string;
  readonly logger: Logger;
}

export class RegistryLease {
  readonly #redis: Redis;
  readonly #keys;
  readonly #logger: Logger;
  #record: WorkerRecord;
  #timer: NodeJS.Timeout | undefined;
  #reachable = true;
  readonly #url: string;
  #lastError: string | undefined;

  constructor(record: WorkerRecord, options: LeaseOptions) {
    this.#record = record;
    this.#url = options.url.replace(/\/\/[^@/]*@/, '//***@');
    this.#keys = registryKeys(options.namespace);
    this.#logger = options.logger;
    this.#redis = new Redis(options.url, {
      lazyConnect: true,
      // Commands fail fast while Redis is down; the heartbeat retries them.
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      retryStrategy: (attempt) => Math.min(1_000, 50 * attempt),
    });
    this.#redis.on('error', (error: Error) => {
      // Reported once per outage by #heartbeat; ioredis keeps reconnecting.
      this.#lastError = error.message;
    });
  }

  /** Connects; rejects with a clear message when Redis cannot be reached. */
  async connect(): Promise<void> {
    if (this.#redis.status === 'ready') return;
    try {
      await this.#redis.connect();
      await this.#redis.ping();
    } catch (error) {
      this.#redis.disconnect();
      const why = this.#lastError ?? (error instanceof Error ? error.message : String(error));
      throw new Error(`cannot reach the registry at ${this.#url}: ${why}`, { cause: error });
    }
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
      this.#logger.warn({ err: error }, 'could not mark this worker draining in the registry; gateways learn when it leaves'),
    );
  }

  /** Removes the record and announces the leave; the connection closes. */
  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    try {
      await this.#redis.del(this.#keys.worker(this.#record.id));
      await this.#publish('leave');
    } catch (error) {
      this.#logger.warn({ err: error }, 'could not deregister; the record expires with its TTL');
    }
    this.#redis.disconnect();
  }

  async #heartbeat(): Promise<void> {
    try {
      await this.#write(this.#reachable ? undefined : 'join');
      if (!this.#reachable) this.#logger.info('registry reachable again; registration renewed');
      this.#reachable = true;
    } catch (error) {
      if (this.#reachable) this.#logger.warn({ err: error }, 'registry unreachable; serving on and retrying');
      this.#reachable = false;
    }
  }

  async #write(event: RegistryEvent['type'] | undefined): Promise<void> {
    await this.#redis.set(this.#keys.worker(this.#record.id), encodeRecord(this.#record), 'PX', this.#record.ttlMs);
    if (event) await this.#publish(event);
  }

  async #publish(type: RegistryEvent['type']): Promise<void> {
    const event: RegistryEvent = { type, id: this.#record.id };
    await this.#redis.publish(this.#keys.events, JSON.stringify(event));
  }
}
