import { status as GrpcStatus } from '@grpc/grpc-js';
import { ServingError } from '../../core/errors.js';
import { type Rate } from './gcra.js';
import { type Tenant } from './tenant.js';

/** Which limit refused a request (the metric label). */
export type QuotaLimit = 'requests' | 'items' | 'concurrency';

/** RESOURCE_EXHAUSTED / 429 with when to retry (none when retrying cannot help). */
export class QuotaExceededError extends ServingError {
  override name = 'QuotaExceededError';

  constructor(
    readonly tenant: string,
    readonly limit: QuotaLimit,
    message: string,
    retryAfterMs: number | undefined,
  ) {
    super(GrpcStatus.RESOURCE_EXHAUSTED, message, retryAfterMs === undefined ? {} : { retryAfterMs });
  }
}

/** What the quota buckets need of a tenant: its name and quotas. */
export type QuotaHolder = Pick<Tenant, 'name' | 'quotas'>;

/** Releases a concurrency slot (and nothing else); safe to call more than once. */
export type QuotaRelease = () => void;

/**
 * A tenant's quotas as the admission sees them. `precheck` is synchronous
 * and local, for refusing before a request body is read or decoded;
 * `acquire` is the authoritative check (shared between gateways when backed
 * by Redis) and throws QuotaExceededError.
 */
export interface QuotaLimiter {
  precheck(tenant: QuotaHolder): void;
  acquire(tenant: QuotaHolder, items: number): Promise<QuotaRelease>;
  /** Stops timers and connections. */
  close(): Promise<void>;
}

/** Concurrency held per tenant on this gateway: exact, whichever backend granted it. */
export class InFlight {
  readonly #counts = new Map<string, number>();

  get(tenant: string): number {
    return this.#counts.get(tenant) ?? 0;
  }

  /** Increments and returns the release, which decrements once. */
  hold(tenant: string, onRelease?: () => void): QuotaRelease {
    this.#counts.set(tenant, this.get(tenant) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const n = this.get(tenant) - 1;
      if (n > 0) this.#counts.set(tenant, n);
      else this.#counts.delete(tenant);
      onRelease?.();
    };
  }

  entries(): IterableIterator<[string, number]> {
    return this.#counts.entries();
  }
}

export const NO_RELEASE: QuotaRelease = () => undefined;

export function requestRate(t: QuotaHolder): Rate | undefined {
  const { requestsPerSecond: perSecond, requestBurst: burst } = t.quotas;
  return perSecond === undefined ? undefined : { perSecond, burst: burst ?? Math.max(1, Math.ceil(perSecond)) };
}

export function itemRate(t: QuotaHolder): Rate | undefined {
  const { batchItemsPerSecond: perSecond, batchItemBurst: burst } = t.quotas;
  return perSecond === undefined ? undefined : { perSecond, burst: burst ?? Math.max(1, Math.ceil(perSecond)) };
}

export function rateExceeded(tenant: string, limit: 'requests' | 'items', rate: Rate, retryAfterMs: number, scope = ''): QuotaExceededError {
  const what = limit === 'requests' ? `${rate.perSecond} requests/s` : `${rate.perSecond} batch items/s`;
  return new QuotaExceededError(
    tenant,
    limit,
    `tenant '${tenant}' is over its quota of ${what}${scope}; retry after ${Math.ceil(retryAfterMs)} ms`,
    retryAfterMs,
  );
}

/** No wait helps: the request alone is larger than the bucket. */
export function itemsAboveBurst(tenant: string, items: number, rate: Rate): QuotaExceededError {
  return new QuotaExceededError(
    tenant,
    'items',
    `tenant '${tenant}': a request of ${items} batch items exceeds its burst of ${rate.burst} items; send smaller requests`,
    undefined,
  );
}

/** When a slot frees is unknown: ask for a retry after this long. */
export const CONCURRENCY_RETRY_MS = 1000;

export function concurrencyExceeded(tenant: string, limit: number, scope = ''): QuotaExceededError {
  return new QuotaExceededError(
    tenant,
    'concurrency',
    `tenant '${tenant}' is at its quota of ${limit} concurrent requests${scope}; retry when one of them is answered`,
    CONCURRENCY_RETRY_MS,
  );
}
