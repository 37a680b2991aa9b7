import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { type Cluster, type Redis } from 'ioredis';
import { type Logger } from 'pino';
import { createCluster, createRedis, redisError, type RedisTarget, targetOf } from '../../core/redis-connection.js';
import { earliestAllowed, type Rate } from './gcra.js';
import { LocalQuota } from './local-quota.js';
import {
  concurrencyExceeded,
  CONCURRENCY_RETRY_MS,
  InFlight,
  itemRate,
  itemsAboveBurst,
  NO_RELEASE,
  QuotaExceededError,
  type QuotaHolder,
  type QuotaLimiter,
  type QuotaRelease,
  rateExceeded,
  requestRate,
} from './quota.js';
import { ACQUIRE, HEARTBEAT, quotaKeys, type QuotaKeys, RELEASE } from './redis-scripts.js';
import { hasQuotas } from './tenant.js';

// Quotas shared by every gateway on one Redis. Each admitted request costs
// one script call that checks and takes all of the tenant's limits at once.
// Refusals that are already certain are answered without Redis: a TAT only
// moves forward, so the last one seen bounds the next answer, and this
// gateway's own in-flight count bounds the sum over all gateways. A flood
// over quota is therefore turned away mostly in process.
//
// When Redis cannot be reached, each gateway enforces its share (limit ÷
// the gateways it last saw live, or --gateway-count-hint) in process, and
// says so once; the heartbeat notices when Redis is back, writes this
// gateway's exact in-flight counts again, and says so once.

export interface RedisQuotaOptions {
  /** A URL, or a target built with its secrets (core/redis-connection.ts); standalone, Sentinel or Cluster. */
  readonly url: string | RedisTarget;
  /** Key prefix, shared with the worker registry (default fabriek). */
  readonly namespace?: string;
  readonly log: Logger;
  /** Gateways assumed to share the limits before any was seen in Redis. */
  readonly gatewayCountHint?: number;
  /** How often the gateway renews its lease and checks Redis (default 1000 ms). */
  readonly heartbeatMs?: number;
  /** A Redis call slower than this counts as Redis unreachable (default 500 ms). */
  readonly commandTimeoutMs?: number;
  /** Monotonic ms (tests). */
  readonly now?: () => number;
  /** Called when the store in use or the live gateway count changes (the primary of several processes tells its children). */
  readonly onState?: (store: 'redis' | 'local', gateways: number) => void;
}

interface Bounds {
  /** Local ms the TATs are at least (undefined = unknown). */
  requests: number | undefined;
  items: number | undefined;
}

type Reply = [number, string, string, string, string, number];

function isReply(x: unknown): x is Reply {
  return Array.isArray(x) && x.length === 6;
}

export class RedisQuota implements QuotaLimiter {
  readonly gatewayId = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  readonly #redis: Redis | Cluster;
  readonly #target: RedisTarget;
  readonly #keys: QuotaKeys;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #heartbeatMs: number;
  readonly #inFlight = new InFlight();
  readonly #local: LocalQuota;
  readonly #bounds = new Map<string, Bounds>();
  /** Tenants whose in-flight field this gateway may have written. */
  readonly #counted = new Set<string>();
  #mode: 'redis' | 'local' = 'local';
  /** Gateways live at the last heartbeat; the hint until one succeeded. */
  #gateways: number;
  /** Some in-flight write failed: rewrite the exact counts at the next heartbeat. */
  #dirty = false;
  #timer: NodeJS.Timeout | undefined;
  #beating: Promise<void> | undefined;
  #closed = false;
  readonly #onState: ((store: 'redis' | 'local', gateways: number) => void) | undefined;
  #told: string | undefined;

  constructor(options: RedisQuotaOptions) {
    this.#onState = options.onState;
    this.#keys = quotaKeys(options.namespace ?? 'fabriek');
    this.#log = options.log;
    this.#now = options.now ?? (() => performance.now());
    this.#heartbeatMs = options.heartbeatMs ?? 1000;
    this.#gateways = Math.max(1, options.gatewayCountHint ?? 1);
    this.#local = new LocalQuota({
      gateways: () => this.#gateways,
      inFlight: this.#inFlight,
      scope: ' (this gateway enforces its share while the shared quota store is unreachable)',
      now: this.#now,
    });
    this.#target = targetOf(options.url);
    const redisOptions = {
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      // Fail at once while disconnected: the request is then admitted against the local share.
      enableOfflineQueue: false,
      commandTimeout: options.commandTimeoutMs ?? 500,
      retryStrategy: (attempt: number) => Math.min(1_000, 50 * attempt),
    };
    // Every key one script touches shares the hash tag {<namespace>:quota}, so the scripts run on a Cluster too.
    this.#redis =
      this.#target.mode === 'cluster'
        ? createCluster(this.#target, redisOptions.commandTimeout)
        : createRedis(this.#target, redisOptions);
    this.#redis.on('error', () => {
      // Reported once per outage when the mode changes; ioredis keeps reconnecting.
    });
  }

  /** 'redis' while the shared store answers, 'local' while each gateway enforces its share. */
  get mode(): 'redis' | 'local' {
    return this.#mode;
  }

  /** Gateways sharing the limits, as last seen. */
  get gateways(): number {
    return this.#gateways;
  }

  /** Connects and starts the heartbeat; never throws: without Redis the gateway starts on local shares. */
  async start(): Promise<void> {
    try {
      await this.#redis.connect();
    } catch {
      // The heartbeat below reports it, and ioredis keeps trying.
    }
    await this.#heartbeat();
    this.#timer = setInterval(() => void this.#heartbeat(), this.#heartbeatMs);
    this.#timer.unref();
  }

  #key(tenant: string, what: 'requests' | 'items' | 'inflight'): string {
    return this.#keys.tenant(tenant, what);
  }

  get #gatewaysKey(): string {
    return this.#keys.gateways;
  }

  /** Redis failed: local shares from now on, said once per outage (and once at a start without Redis). */
  #toLocal(why: string): void {
    this.#dirty = true;
    if (this.#mode === 'local' && this.#announced) return;
    this.#mode = 'local';
    this.#announced = true;
    this.#log.warn(
      { redis: this.#target.display, gateways: this.#gateways, reason: why },
      `shared quotas unavailable: this gateway enforces each tenant's limits ÷ ${this.#gateways} gateway(s) until Redis answers`,
    );
  }

  #toRedis(): void {
    if (this.#mode === 'redis') return;
    this.#mode = 'redis';
    // Redis is the truth again, even if it came back empty: what this gateway knew from before may be stale.
    this.#bounds.clear();
    const again = this.#announced;
    this.#announced = true;
    this.#log.info({ redis: this.#target.display, gateways: this.#gateways }, again ? 'shared quotas available again: counting in Redis' : 'shared quotas: counting in Redis');
  }

  /** Whether the current mode was logged. */
  #announced = false;

  async #heartbeat(): Promise<void> {
    if (this.#beating || this.#closed) return this.#beating;
    this.#beating = (async () => {
      try {
        const live = await HEARTBEAT.run(this.#redis, [this.#gatewaysKey], [this.gatewayId, this.#heartbeatMs * 3]);
        this.#gateways = Math.max(1, Number(live));
        if (this.#dirty) await this.#reconcile();
        this.#toRedis();
      } catch (error) {
        this.#toLocal(redisError(error, this.#target).message);
      } finally {
        this.#beating = undefined;
        const told = `${this.#mode} ${this.#gateways}`;
        if (told !== this.#told) {
          this.#told = told;
          this.#onState?.(this.#mode, this.#gateways);
        }
      }
    })();
    return this.#beating;
  }

  /** Writes this gateway's exact in-flight counts, after failed writes or an outage (or an emptied Redis). */
  async #reconcile(): Promise<void> {
    const pipeline = this.#redis.multi();
    for (const tenant of this.#counted) {
      const n = this.#inFlight.get(tenant);
      if (n > 0) pipeline.hset(this.#key(tenant, 'inflight'), this.gatewayId, n);
      else pipeline.hdel(this.#key(tenant, 'inflight'), this.gatewayId);
    }
    await pipeline.exec();
    this.#dirty = false;
  }

  #boundsOf(tenant: string): Bounds {
    let b = this.#bounds.get(tenant);
    if (!b) {
      b = { requests: undefined, items: undefined };
      this.#bounds.set(tenant, b);
    }
    return b;
  }

  /** A refusal already certain from what this gateway knows, for a request of `items` (≥ 1). */
  #certain(t: QuotaHolder, items: number): QuotaExceededError | undefined {
    const limit = t.quotas.concurrentRequests;
    if (limit !== undefined && this.#inFlight.get(t.name) >= limit) return concurrencyExceeded(t.name, limit);
    const b = this.#bounds.get(t.name);
    if (!b) return undefined;
    const now = this.#now();
    const check = (kind: 'requests' | 'items', rate: Rate | undefined, at: number | undefined, cost: number): QuotaExceededError | undefined => {
      if (!rate || at === undefined) return undefined;
      const allowed = earliestAllowed(at, rate, cost);
      return allowed > now ? rateExceeded(t.name, kind, rate, allowed - now) : undefined;
    };
    return check('requests', requestRate(t), b.requests, 1) ?? check('items', itemRate(t), b.items, items);
  }

  precheck(t: QuotaHolder): void {
    if (!hasQuotas(t.quotas)) return;
    if (this.#mode === 'local') return this.#local.precheck(t);
    const certain = this.#certain(t, 1);
    if (certain) throw certain;
  }

  async acquire(t: QuotaHolder, items: number): Promise<QuotaRelease> {
    if (!hasQuotas(t.quotas)) return NO_RELEASE;
    const itm = itemRate(t);
    if (itm && items > itm.burst) throw itemsAboveBurst(t.name, items, itm);
    if (this.#mode === 'local') return this.#takeLocally(t, items);
    const certain = this.#certain(t, items);
    if (certain) throw certain;
    const req = requestRate(t);
    const limit = t.quotas.concurrentRequests;
    const sentAt = this.#now();
    let reply: unknown;
    try {
      reply = await ACQUIRE.run(
        this.#redis,
        [this.#key(t.name, 'requests'), this.#key(t.name, 'items'), this.#key(t.name, 'inflight'), this.#gatewaysKey],
        [this.gatewayId, req ? 1000 / req.perSecond : 0, req?.burst ?? 0, itm ? 1000 / itm.perSecond : 0, itm?.burst ?? 0, items, limit ?? 0],
      );
    } catch (error) {
      this.#toLocal(redisError(error, this.#target).message);
      return this.#takeLocally(t, items);
    }
    if (!isReply(reply)) throw new Error(`unexpected reply from the quota script: ${JSON.stringify(reply)}`);
    const [granted, which, wait, requestLead, itemLead] = reply;
    // Lower bounds of the TATs in local time: Redis read its clock after we sent.
    const b = this.#boundsOf(t.name);
    if (requestLead !== '') b.requests = sentAt + Number(requestLead);
    if (itemLead !== '') b.items = sentAt + Number(itemLead);
    if (Number(granted) !== 1) {
      if (which === 'concurrency' && limit !== undefined) throw concurrencyExceeded(t.name, limit);
      const rate = which === 'items' ? itm : req;
      if (!rate) throw new QuotaExceededError(t.name, 'concurrency', `tenant '${t.name}' is over its quota`, CONCURRENCY_RETRY_MS);
      throw rateExceeded(t.name, which === 'items' ? 'items' : 'requests', rate, Number(wait));
    }
    if (limit === undefined) return NO_RELEASE;
    this.#counted.add(t.name);
    return this.#inFlight.hold(t.name, () => {
      RELEASE.run(this.#redis, [this.#key(t.name, 'inflight')], [this.gatewayId]).catch(() => {
        this.#dirty = true;
      });
    });
  }

  /**
   * Admits against this gateway's share. The slot it holds is not in Redis:
   * its release marks the counts for rewriting at the next heartbeat.
   */
  #takeLocally(t: QuotaHolder, items: number): QuotaRelease {
    const release = this.#local.take(t, items);
    if (release === NO_RELEASE) return release;
    this.#counted.add(t.name);
    return () => {
      release();
      this.#dirty = true;
    };
  }

  /** Leaves the gateway set and takes this gateway's counts out, then disconnects. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#beating;
    if (this.#mode === 'redis') {
      const pipeline = this.#redis.multi();
      pipeline.zrem(this.#gatewaysKey, this.gatewayId);
      for (const tenant of this.#counted) pipeline.hdel(this.#key(tenant, 'inflight'), this.gatewayId);
      await pipeline.exec().catch(() => undefined);
    }
    this.#redis.disconnect();
  }
}
