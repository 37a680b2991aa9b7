import { Counter, Gauge, type Registry } from 'prom-client';
import { SeriesHistogram } from './series-histogram.js';

// Per-tenant accounting, in metrics of their own so that Triton's names keep
// Triton's labels. Every label value is bounded: tenants come from the
// tenants file, and a model name a client sent counts as "" unless the
// repository has it (an unauthenticated caller must not mint series).

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** One call as accounting sees it. */
export interface TenantCall {
  /** "" when the caller could not be identified. */
  readonly tenant: string;
  /** "" when not a model of the repository. */
  readonly model: string;
  readonly status: string;
  readonly items: number;
  readonly computeNs: number;
  /** Time it waited in the model's queue (arrival there to its batch's cut); 0 when it never queued. */
  readonly queueNs: number;
  readonly seconds: number;
  readonly infer: boolean;
}

/** Where quotas are counted now, and how many gateways share them. */
export interface QuotaState {
  readonly store: 'redis' | 'local';
  readonly gateways: number;
}

/** The sums of CallSums kept for a counter of their own. */
type SummedField = 'items' | 'computeSeconds' | 'queueSeconds';

/** One tenant's calls to one model since the last scrape. */
interface CallSums {
  /** Requests by status name. */
  readonly requests: Map<string, number>;
  items: number;
  computeSeconds: number;
  queueSeconds: number;
}

/**
 * Counts are summed per tenant and model in plain maps, and added to the
 * counters when a scrape collects them: three labelled `inc` calls per
 * request hashed and checked their labels each time. The label values are
 * bounded (see above), so the maps are too; the latency histogram is
 * observed per call, into its tenant's series (series-histogram.ts: one label, so the tenant's name is the series' key).
 */
export class TenantMetrics {
  readonly #sums = new Map<string, Map<string, CallSums>>();
  readonly #requests: Counter<'tenant' | 'model' | 'status'>;
  readonly #latency: SeriesHistogram<'tenant'>;
  readonly #refusals: Counter<'tenant' | 'limit'>;

  constructor(registry: Registry, quota?: () => QuotaState | undefined) {
    const registers = [registry];
    this.#requests = new Counter({
      name: 'fabriek_tenant_requests_total',
      help: 'Requests by tenant, model and gRPC status name (HTTP calls counted by the same names); tenant "" = not identified',
      labelNames: ['tenant', 'model', 'status'],
      registers,
      collect: () => {
        for (const [tenant, models] of this.#sums) {
          for (const [model, sums] of models) {
            for (const [status, n] of sums.requests) {
              if (n === 0) continue;
              this.#requests.inc({ tenant, model, status }, n);
              sums.requests.set(status, 0);
            }
          }
        }
      },
    });
    // Counters summed per tenant and model between scrapes, added at each (see #flush).
    const summed = (name: string, help: string, field: SummedField): void => {
      const counter: Counter<'tenant' | 'model'> = new Counter({ name, help, labelNames: ['tenant', 'model'], registers, collect: () => this.#flush(field, counter) });
    };
    summed('fabriek_tenant_batch_items_total', 'Rows along the batch dimension answered successfully, by tenant and model', 'items');
    summed(
      'fabriek_tenant_compute_seconds_total',
      "Each request's share of its batch's execution time (input + infer + output; GPU-seconds on GPU workers), by rows",
      'computeSeconds',
    );
    summed(
      'fabriek_tenant_queue_seconds_total',
      "Time successful requests waited in their model's queue (arrival there to the cut of their batch, Triton's queue duration), by tenant and model",
      'queueSeconds',
    );
    this.#latency = new SeriesHistogram({
      name: 'fabriek_tenant_request_duration_seconds',
      help: 'Inference request time from arrival to answer, successful requests, by tenant',
      labelNames: ['tenant'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#refusals = new Counter({
      name: 'fabriek_tenant_quota_refusals_total',
      help: 'Requests refused over a quota, by tenant and limit (requests, items, concurrency)',
      labelNames: ['tenant', 'limit'],
      registers,
    });
    if (quota) {
      new Gauge({
        name: 'fabriek_quota_store',
        help: "Where tenant quotas are counted: 1 for the current one (redis = shared, local = this gateway's share)",
        labelNames: ['store'],
        registers,
        // Several gateway processes (--gateway-processes) share one store: their /metrics shows it once.
        aggregator: 'max',
        collect() {
          const now = quota()?.store;
          for (const store of ['redis', 'local'] as const) this.set({ store }, now === store ? 1 : 0);
        },
      });
      new Gauge({
        name: 'fabriek_quota_gateways',
        help: 'Gateways sharing the tenant quotas (live in Redis, else --gateway-count-hint): the local share is limit ÷ this',
        registers,
        aggregator: 'max',
        collect() {
          this.set(quota()?.gateways ?? 1);
        },
      });
    }
  }

  record(c: TenantCall): void {
    let models = this.#sums.get(c.tenant);
    if (models === undefined) this.#sums.set(c.tenant, (models = new Map()));
    let sums = models.get(c.model);
    if (sums === undefined) models.set(c.model, (sums = { requests: new Map(), items: 0, computeSeconds: 0, queueSeconds: 0 }));
    sums.requests.set(c.status, (sums.requests.get(c.status) ?? 0) + 1);
    if (!c.infer || c.status !== 'OK') return;
    sums.items += c.items;
    sums.computeSeconds += c.computeNs / 1e9;
    sums.queueSeconds += c.queueNs / 1e9;
    this.#latency.series({ tenant: c.tenant }).observe(c.seconds);
  }

  /** Adds each tenant and model's `field` summed since the last scrape to `counter` (its collect). */
  #flush(field: SummedField, counter: Counter<'tenant' | 'model'>): void {
    for (const [tenant, models] of this.#sums) {
      for (const [model, sums] of models) {
        if (sums[field] === 0) continue;
        counter.inc({ tenant, model }, sums[field]);
        sums[field] = 0;
      }
    }
  }

  refused(tenant: string, limit: string): void {
    this.#refusals.inc({ tenant, limit });
  }
}
