import { status as GrpcStatus } from '@grpc/grpc-js';
import { isServingError, permissionDenied, type ServingError } from '../../core/errors.js';
import { type TenantMetrics } from '../metrics/tenant-metrics.js';
import { type AuditLog } from '../tenants/audit-log.js';
import { type Authenticator } from '../tenants/authenticator.js';
import { NO_RELEASE, QuotaExceededError, type QuotaLimiter, type QuotaRelease } from '../tenants/quota.js';
import { hasQuotas, OPEN_TENANT, type Tenant } from '../tenants/tenant.js';

// Admission, the one place both protocols pass through before a model is
// touched: who is calling (API key → tenant), may it use this model, is it
// within its quotas; and afterwards, one audit line and the tenant's
// accounting. Without a tenants file every caller is the open tenant.

/** The kinds of call that need a tenant (health and server metadata do not). */
export type CallOp = 'infer' | 'metadata' | 'config' | 'ready' | 'statistics' | 'index' | 'load' | 'unload' | 'logging' | 'tracing' | 'shared_memory';

export interface CallInfo {
  readonly protocol: 'grpc' | 'http';
  readonly op: CallOp;
  /** "" for calls about every model (index, statistics of all). */
  readonly model: string;
  readonly version: string;
  /** The `authorization` header or metadata value. */
  readonly authorization: string | undefined;
  /** The client's request id, when it gave one. */
  readonly id?: string | undefined;
  /** The caller's tenant when an earlier check of this same call identified it (its key is not hashed again). */
  readonly tenant?: Tenant | undefined;
}

/** What a call reports back, for the audit line and the accounting. */
export interface CallNote {
  /** The version that served it. */
  version: string;
  bytesIn: number;
  bytesOut: number;
  items: number;
  /** This request's share of its batch's execution time. */
  computeNs: number;
  /** Its wait in the model's queue (0 when it never queued: a cache hit, a failure before). */
  queueNs: number;
  /** Its quota was asked for (granted or refused); a request that fails before that is charged one request afterwards. */
  charged?: boolean;
}

export interface AdmissionOptions {
  /** undefined: no tenants file, every caller is the open tenant. */
  readonly authenticator?: Authenticator;
  readonly quota?: QuotaLimiter;
  readonly audit?: AuditLog;
  readonly metrics?: TenantMetrics;
  /** Whether a name is a model of the repository (bounds the metric's model label). */
  readonly knownModel?: (name: string) => boolean;
}

function statusName(error: unknown): string {
  return isServingError(error) ? (GrpcStatus[error.code] ?? 'UNKNOWN') : 'INTERNAL';
}

export class Admission {
  readonly #auth: Authenticator | undefined;
  readonly #quota: QuotaLimiter | undefined;
  readonly #audit: AuditLog | undefined;
  readonly #metrics: TenantMetrics | undefined;
  readonly #knownModel: (name: string) => boolean;

  constructor(options: AdmissionOptions = {}) {
    this.#auth = options.authenticator;
    this.#quota = options.quota;
    this.#audit = options.audit;
    this.#metrics = options.metrics;
    this.#knownModel = options.knownModel ?? (() => false);
  }

  /** No tenants file: every caller may use everything. */
  get open(): boolean {
    return this.#auth === undefined;
  }

  /** The caller's tenant; UNAUTHENTICATED without a known key (unless open). */
  authenticate(authorization: string | undefined): Tenant {
    return this.#auth ? this.#auth.authenticate(authorization) : OPEN_TENANT;
  }

  mayUse(tenant: Tenant, model: string): boolean {
    return tenant.models.allows(model);
  }

  /**
   * The shared quota for a request of `items` rows; the release ends its
   * concurrency slot. Without quotas the release itself, not a promise of
   * it: a server without them adds no promise and no turn per request.
   */
  acquire(tenant: Tenant, items: number): QuotaRelease | Promise<QuotaRelease> {
    return this.#quota ? this.#acquireQuota(this.#quota, tenant, items) : NO_RELEASE;
  }

  async #acquireQuota(quota: QuotaLimiter, tenant: Tenant, items: number): Promise<QuotaRelease> {
    try {
      return await quota.acquire(tenant, items);
    } catch (error) {
      if (error instanceof QuotaExceededError) this.#metrics?.refused(tenant.name, error.limit);
      throw error;
    }
  }

  /**
   * Runs one call as its tenant: identifies the caller, checks that it may
   * use the model (and, for an inference, that it is not already certain to
   * be over quota), then `run`s, and records the outcome. Everything before
   * `run` is cheap and local, so a request body is read only for callers
   * who get that far.
   */
  async call<R>(info: CallInfo, run: (tenant: Tenant, note: CallNote) => Promise<R>): Promise<R> {
    const start = process.hrtime.bigint();
    const note: CallNote = { version: info.version, bytesIn: 0, bytesOut: 0, items: 0, computeNs: 0, queueNs: 0 };
    let tenant: Tenant | undefined;
    try {
      tenant = info.tenant ?? this.authenticate(info.authorization);
      this.#authorize(tenant, info);
      const result = await run(tenant, note);
      this.#record(info, tenant, note, 'OK', start);
      return result;
    } catch (error) {
      if (tenant && info.op === 'infer' && !note.charged && !(error instanceof QuotaExceededError)) this.#charge(tenant);
      this.#record(info, tenant, note, statusName(error), start);
      throw error;
    }
  }

  /**
   * Takes one request (no items) of the tenant's rate for an inference that
   * failed before it asked for its quota (a malformed request, an unknown
   * version, a model it may not use): otherwise a flood of bad requests
   * would never be throttled. Refused requests are not charged (GCRA), so a
   * tenant over quota is not pushed further out.
   */
  #charge(tenant: Tenant): void {
    if (!this.#quota || !hasQuotas(tenant.quotas)) return;
    this.#quota.acquire(tenant, 0).then(
      (release) => release(),
      () => undefined, // already over quota, or the store is away: nothing more to take
    );
  }

  #authorize(tenant: Tenant, info: CallInfo): void {
    if ((info.op === 'load' || info.op === 'unload') && !tenant.admin) {
      throw permissionDenied(`tenant '${tenant.name}' may not ${info.op} models`);
    }
    // System shared memory is refused with --tenants at start; an admin tenant's only, should that change.
    if (info.op === 'shared_memory' && !tenant.admin) throw permissionDenied(`tenant '${tenant.name}' may not use system shared memory`);
    if ((info.op === 'logging' || info.op === 'tracing') && !tenant.admin) {
      throw permissionDenied(`tenant '${tenant.name}' may not read or change the ${info.op === 'logging' ? 'log' : 'trace'} settings`);
    }
    if (info.model !== '' && !tenant.models.allows(info.model)) {
      throw permissionDenied(`tenant '${tenant.name}' may not use model '${clip(info.model)}'`);
    }
    if (info.op === 'infer') this.#precheck(tenant);
  }

  /** Throws QuotaExceededError when the tenant is already certain to be over its quota. */
  #precheck(tenant: Tenant): void {
    if (!this.#quota) return;
    try {
      this.#quota.precheck(tenant);
    } catch (error) {
      if (error instanceof QuotaExceededError) this.#metrics?.refused(tenant.name, error.limit);
      throw error;
    }
  }

  /**
   * The refusals an inference call can get from its key alone: no or an
   * unknown key, or a tenant already certain to be over quota. For callers
   * that check before reading the request (gRPC's metadata); such a refusal
   * is audited and counted here, without a model (none was read).
   * Otherwise the caller's tenant (to pass on as `CallInfo.tenant`), or
   * undefined without a tenants file; the call then goes through `call`.
   */
  checkEarly(info: Pick<CallInfo, 'protocol' | 'op' | 'authorization'>): { readonly tenant: Tenant } | { readonly refused: ServingError } | undefined {
    if (!this.#auth) return undefined;
    const start = process.hrtime.bigint();
    let tenant: Tenant | undefined;
    try {
      tenant = this.#auth.authenticate(info.authorization);
      if (info.op === 'infer') this.#precheck(tenant);
      return { tenant };
    } catch (error) {
      if (!isServingError(error)) throw error;
      const note: CallNote = { version: '', bytesIn: 0, bytesOut: 0, items: 0, computeNs: 0, queueNs: 0 };
      this.#record({ ...info, model: '', version: '' }, tenant, note, statusName(error), start);
      return { refused: error };
    }
  }

  #record(info: CallInfo, tenant: Tenant | undefined, note: CallNote, status: string, start: bigint): void {
    if (!this.#audit && !this.#metrics) return;
    const ns = Number(process.hrtime.bigint() - start);
    this.#metrics?.record({
      tenant: tenant?.name ?? '',
      model: info.model !== '' && this.#knownModel(info.model) ? info.model : '',
      status,
      items: note.items,
      computeNs: note.computeNs,
      queueNs: note.queueNs,
      seconds: ns / 1e9,
      infer: info.op === 'infer',
    });
    this.#audit?.write({
      tenant: tenant?.name,
      protocol: info.protocol,
      op: info.op,
      model: info.model,
      version: note.version,
      status,
      bytesIn: note.bytesIn,
      bytesOut: note.bytesOut,
      items: note.items,
      computeMs: note.computeNs / 1e6,
      queueMs: note.queueNs / 1e6,
      ms: ns / 1e6,
      id: info.id ?? '',
    });
  }

  /** Closes the audit log and the quota store's connection. */
  async close(): Promise<void> {
    await this.#quota?.close();
    await this.#audit?.close();
  }
}

function clip(s: string): string {
  return s.length > 128 ? `${s.slice(0, 128)}…` : s;
}
