import { ModelAccess } from './model-access.js';

/** Limits of one tenant, summed over every gateway; undefined = no limit. */
export interface TenantQuotas {
  readonly requestsPerSecond: number | undefined;
  /** Requests that may arrive at once above the rate (token bucket size); ≥ 1. */
  readonly requestBurst: number | undefined;
  readonly concurrentRequests: number | undefined;
  /** Rows along the batch dimension per second. */
  readonly batchItemsPerSecond: number | undefined;
  /** Rows that may arrive at once above the rate; no single request may carry more. */
  readonly batchItemBurst: number | undefined;
}

/** A caller of the server, as the tenants file describes it. */
export interface Tenant {
  /** Letters, digits, `_ . -`: safe as a metric label and in a Redis key. */
  readonly name: string;
  readonly models: ModelAccess;
  readonly quotas: TenantQuotas;
  /** Share of the batcher between tenants at the same priority level (weighted DRR). */
  readonly weight: number;
  /** weight ÷ the sum of every tenant's weights: its share of each queue bound. */
  readonly queueShare: number;
  /** Priority level of its requests that give none. */
  readonly defaultPriority: number | undefined;
  /** The highest level (smallest number) it may ask for; higher asks are lowered to it. */
  readonly highestPriority: number | undefined;
  /** May load and unload models through the repository API. */
  readonly admin: boolean;
}

export const NO_QUOTAS: TenantQuotas = {
  requestsPerSecond: undefined,
  requestBurst: undefined,
  concurrentRequests: undefined,
  batchItemsPerSecond: undefined,
  batchItemBurst: undefined,
};

/**
 * The one tenant of a server started without --tenants: every caller, every
 * model, no limits; the batcher then behaves as if there were no tenants.
 */
export const OPEN_TENANT: Tenant = {
  name: 'default',
  models: ModelAccess.everything,
  quotas: NO_QUOTAS,
  weight: 1,
  queueShare: 1,
  defaultPriority: undefined,
  highestPriority: undefined,
  admin: true,
};

export function hasQuotas(q: TenantQuotas): boolean {
  return q.requestsPerSecond !== undefined || q.concurrentRequests !== undefined || q.batchItemsPerSecond !== undefined;
}

/**
 * The priority level a tenant's request runs at: its own `priority`
 * parameter, else the tenant's default, never above the tenant's highest.
 * Priority 1 is the highest, as in Triton; undefined = the model's default
 * level.
 */
export function tenantPriority(tenant: Tenant, requested: number | undefined): number | undefined {
  const p = requested ?? tenant.defaultPriority;
  const highest = tenant.highestPriority;
  if (p === undefined || highest === undefined) return p;
  return p < highest ? highest : p;
}
