import { earliestAllowed, gcra, type Rate } from './gcra.js';
import {
  concurrencyExceeded,
  InFlight,
  itemRate,
  itemsAboveBurst,
  NO_RELEASE,
  type QuotaHolder,
  type QuotaLimiter,
  type QuotaRelease,
  rateExceeded,
  requestRate,
} from './quota.js';
import { hasQuotas } from './tenant.js';

export interface LocalQuotaOptions {
  /**
   * Gateways sharing each limit: this one enforces limit ÷ count. 1 for a
   * gateway on its own; the Redis limiter passes the count it last saw.
   */
  readonly gateways?: () => number;
  /** Concurrency held on this gateway; shared with the Redis limiter so the count survives a switch. */
  readonly inFlight?: InFlight;
  /** Appended to refusal messages (e.g. why the limit is a local share). */
  readonly scope?: string;
  /** Monotonic ms (tests pass a fake). */
  readonly now?: () => number;
}

interface Tats {
  requests: number | undefined;
  items: number | undefined;
}

function share(rate: Rate, n: number): Rate {
  return { perSecond: rate.perSecond / n, burst: Math.max(1, rate.burst / n) };
}

/**
 * Quotas kept in this process: a gateway's whole limit when it runs alone,
 * or its share (limit ÷ gateways) while the shared store is unreachable.
 */
export class LocalQuota implements QuotaLimiter {
  readonly #gateways: () => number;
  readonly #inFlight: InFlight;
  readonly #scope: string;
  readonly #now: () => number;
  readonly #tats = new Map<string, Tats>();

  constructor(options: LocalQuotaOptions = {}) {
    this.#gateways = options.gateways ?? (() => 1);
    this.#inFlight = options.inFlight ?? new InFlight();
    this.#scope = options.scope ?? '';
    this.#now = options.now ?? (() => performance.now());
  }

  #n(): number {
    return Math.max(1, Math.floor(this.#gateways()));
  }

  #concurrencyLimit(t: QuotaHolder): number | undefined {
    const c = t.quotas.concurrentRequests;
    return c === undefined ? undefined : Math.max(1, Math.floor(c / this.#n()));
  }

  precheck(t: QuotaHolder): void {
    if (!hasQuotas(t.quotas)) return;
    const limit = this.#concurrencyLimit(t);
    if (limit !== undefined && this.#inFlight.get(t.name) >= limit) throw concurrencyExceeded(t.name, limit, this.#scope);
    const tats = this.#tats.get(t.name);
    const now = this.#now();
    const n = this.#n();
    const req = requestRate(t);
    if (req && tats?.requests !== undefined) {
      const at = earliestAllowed(tats.requests, share(req, n), 1);
      if (at > now) throw rateExceeded(t.name, 'requests', share(req, n), at - now, this.#scope);
    }
  }

  acquire(t: QuotaHolder, items: number): Promise<QuotaRelease> {
    try {
      return Promise.resolve(this.take(t, items));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** `acquire`, synchronously: the grant's release, or throws QuotaExceededError. */
  take(t: QuotaHolder, items: number): QuotaRelease {
    if (!hasQuotas(t.quotas)) return NO_RELEASE;
    const n = this.#n();
    const limit = this.#concurrencyLimit(t);
    if (limit !== undefined && this.#inFlight.get(t.name) >= limit) throw concurrencyExceeded(t.name, limit, this.#scope);
    const now = this.#now();
    let tats = this.#tats.get(t.name);
    if (!tats) {
      tats = { requests: undefined, items: undefined };
      this.#tats.set(t.name, tats);
    }
    const req = requestRate(t);
    const itm = itemRate(t);
    let nextRequests: number | undefined;
    let nextItems: number | undefined;
    if (req) {
      const r = share(req, n);
      const a = gcra(tats.requests, now, r, 1);
      if (!a.allowed) throw rateExceeded(t.name, 'requests', r, a.retryAfterMs, this.#scope);
      nextRequests = a.tat;
    }
    if (itm) {
      if (items > itm.burst) throw itemsAboveBurst(t.name, items, itm);
      const r = share(itm, n);
      // A request the whole quota admits is not refused for ever by a share's smaller bucket.
      const a = gcra(tats.items, now, r, Math.min(items, r.burst));
      if (!a.allowed) throw rateExceeded(t.name, 'items', r, a.retryAfterMs, this.#scope);
      nextItems = a.tat;
    }
    // All or nothing: state changes only once every limit agreed.
    if (nextRequests !== undefined) tats.requests = nextRequests;
    if (nextItems !== undefined) tats.items = nextItems;
    return limit === undefined ? NO_RELEASE : this.#inFlight.hold(t.name);
  }

  async close(): Promise<void> {}
}
