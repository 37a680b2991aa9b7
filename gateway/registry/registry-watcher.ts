import { type Redis } from 'ioredis';
import { type Logger } from 'pino';
import { createRedis, redisError, type RedisTarget, targetOf } from '../../core/redis-connection.js';
import { decodeEvent, decodeRecord, registryKeys, type RegistryKeys, type WorkerRecord } from '../../core/worker-record.js';

// Follows the workers registered in Redis. Events on the pub/sub channel make
// joins and leaves take effect at once; a poll (SCAN every pollMs, MGET of
// the records not known yet) catches what events cannot say, such as a lease
// that expired because its worker died. Every record is read again every
// FULL_SYNC_MS and after a reconnection, for changes whose event was missed.
// (A record names each model with its config and signature: thousands of
// models make it large, and the poll must not read it every second.)
//
// Redis being unreachable never removes a worker: the gateway keeps the ones
// it knows. Right after Redis comes back (possibly empty, after a restart),
// absent records get one lease TTL to reappear, since their workers write them
// again at their next heartbeat.

export interface RegistryListener {
  /** A worker appeared (or came back with another address). */
  join(record: WorkerRecord): void;
  /** A known worker's record changed: its models or its draining mark. */
  update(record: WorkerRecord): void;
  /** A worker deregistered or its lease expired. */
  leave(id: string, reason: string): void;
}

export interface RegistryWatcherOptions {
  /** A URL, or a target built with its secrets (core/redis-connection.ts). */
  readonly url: string | RedisTarget;
  readonly namespace?: string;
  readonly pollMs?: number;
  /** Every record is read again this often (default FULL_SYNC_MS). */
  readonly fullSyncMs?: number;
  readonly log: Logger;
  readonly listener: RegistryListener;
}

interface Known {
  record: WorkerRecord;
  json: string;
}

/** Every record is read again this often (events carry changes in between). */
const FULL_SYNC_MS = 30_000;

const redisOptions = {
  lazyConnect: true,
  maxRetriesPerRequest: 1,
  enableOfflineQueue: false,
  retryStrategy: (attempt: number): number => Math.min(1_000, 50 * attempt),
};

export class RegistryWatcher {
  readonly #options: RegistryWatcherOptions;
  readonly #keys: RegistryKeys;
  readonly #target: RedisTarget;
  readonly #redis: Redis;
  readonly #subscriber: Redis;
  readonly #known = new Map<string, Known>();
  #timer: NodeJS.Timeout | undefined;
  /** Absent records are not removed before this time (after an outage). */
  #graceUntil = 0;
  #reachable = true;
  #connectedOnce = false;
  /** Syncs and event handling run one at a time, in order. */
  #chain: Promise<void> = Promise.resolve();
  /** When every record was last read (0: read them all at the next sync). */
  #fullAt = 0;
  #stopped = false;

  constructor(options: RegistryWatcherOptions) {
    this.#options = options;
    this.#keys = registryKeys(options.namespace);
    this.#target = targetOf(options.url);
    this.#redis = createRedis(this.#target, redisOptions);
    this.#subscriber = createRedis(this.#target, { ...redisOptions, enableOfflineQueue: true });
    this.#redis.on('error', () => {
      // Reported once per outage by #sync; ioredis keeps reconnecting.
    });
    this.#subscriber.on('error', () => {});
    this.#redis.on('ready', () => {
      if (this.#connectedOnce) this.#startGrace('registry connection re-established');
      this.#connectedOnce = true;
    });
    this.#subscriber.on('message', (_channel: string, message: string) => {
      const event = decodeEvent(message);
      if (event) this.#enqueue(() => (event.type === 'leave' ? this.#leave(event.id, 'deregistered') : this.#refresh(event.id)));
    });
  }

  /** Workers known now (for diagnostics and tests). */
  workers(): WorkerRecord[] {
    return [...this.#known.values()].map((k) => k.record);
  }

  /**
   * Connects, subscribes and reads the registry once. When Redis cannot be
   * reached the gateway starts anyway and keeps trying.
   */
  async start(): Promise<void> {
    const { log } = this.#options;
    try {
      await this.#redis.connect();
      await this.#subscriber.connect();
      await this.#subscriber.subscribe(this.#keys.events);
    } catch (error) {
      log.error({ err: redisError(error, this.#target), registry: this.#target.display }, 'registry unreachable at start; retrying in the background');
      this.#reachable = false;
    }
    // ioredis resubscribes by itself after a reconnect.
    await this.#sync();
    this.#timer = setInterval(() => this.#enqueue(() => this.#sync()), this.#options.pollMs ?? 1_000);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#chain;
    this.#redis.disconnect();
    this.#subscriber.disconnect();
  }

  #enqueue(task: () => Promise<void> | void): void {
    this.#chain = this.#chain.then(async () => {
      if (this.#stopped) return;
      try {
        await task();
      } catch (error) {
        this.#options.log.warn({ err: redisError(error, this.#target) }, 'registry event handling failed');
      }
    });
  }

  #startGrace(why: string): void {
    this.#fullAt = 0;
    const ttl = Math.max(0, ...[...this.#known.values()].map((k) => k.record.ttlMs));
    this.#graceUntil = Date.now() + ttl;
    this.#options.log.info({ why, graceMs: ttl }, 'registry: keeping known workers while they re-register');
  }

  async #sync(): Promise<void> {
    let records: Map<string, string | undefined>;
    const full = Date.now() - this.#fullAt >= (this.#options.fullSyncMs ?? FULL_SYNC_MS);
    try {
      records = await this.#read(full);
      if (full) this.#fullAt = Date.now();
    } catch (error) {
      if (this.#reachable) {
        this.#options.log.warn({ err: redisError(error, this.#target), workers: this.#known.size }, 'registry unreachable; serving with the workers known');
      }
      this.#reachable = false;
      return;
    }
    if (!this.#reachable) {
      this.#reachable = true;
      this.#startGrace('registry reachable again');
    }
    for (const [id, json] of records) if (json !== undefined) this.#apply(id, json);
    if (Date.now() < this.#graceUntil) return;
    for (const id of [...this.#known.keys()]) if (!records.has(id)) this.#leave(id, 'lease expired');
  }

  /** id → record JSON of every registered worker; undefined for a known one when not `full` (not read again). */
  async #read(full: boolean): Promise<Map<string, string | undefined>> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.#redis.scan(cursor, 'MATCH', this.#keys.workerPattern, 'COUNT', 1000);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== '0');
    const out = new Map<string, string | undefined>();
    const prefix = this.#keys.worker('');
    const wanted: string[] = [];
    for (const key of keys) {
      const id = key.slice(prefix.length);
      if (full || !this.#known.has(id)) wanted.push(key);
      else out.set(id, undefined);
    }
    if (wanted.length === 0) return out;
    const values = await this.#redis.mget(...wanted);
    wanted.forEach((key, i) => {
      const value = values[i];
      if (typeof value === 'string') out.set(key.slice(prefix.length), value);
    });
    return out;
  }

  async #refresh(id: string): Promise<void> {
    const json = await this.#redis.get(this.#keys.worker(id));
    if (json !== null) this.#apply(id, json);
  }

  #apply(id: string, json: string): void {
    const known = this.#known.get(id);
    // The heartbeat rewrites the same record; only changes reach the listener.
    if (known?.json === json) return;
    let record: WorkerRecord;
    try {
      record = decodeRecord(json);
    } catch (error) {
      this.#options.log.warn({ worker: id, err: error }, 'ignoring a registry record that does not parse');
      return;
    }
    if (record.id !== id) return;
    this.#known.set(id, { record, json });
    if (!known) this.#options.listener.join(record);
    else if (known.record.address !== record.address || known.record.startedAt !== record.startedAt) {
      this.#options.listener.leave(id, 'restarted');
      this.#options.listener.join(record);
    } else this.#options.listener.update(record);
  }

  #leave(id: string, reason: string): void {
    if (!this.#known.delete(id)) return;
    this.#options.listener.leave(id, reason);
  }
}
