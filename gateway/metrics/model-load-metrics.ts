import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { type MemoryBudget } from '../repository/memory-budget.js';

/** A small model loads in tens of milliseconds; a large one in seconds. */
const COLD_START_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface LoadedUsage {
  readonly worker: string;
  readonly bytes: number;
  readonly models: number;
  readonly peakModels: number;
  readonly peakBytes: number;
}

/**
 * Metrics of --model-control-mode on-demand kept by each gateway process:
 * loads by result and the time a load takes (a cold start). Summed over the
 * processes of --gateway-processes N.
 */
export class ModelLoadMetrics {
  readonly #loads: Counter<'result'>;
  readonly #coldStart: Histogram;

  constructor(registry: Registry) {
    const registers = [registry];
    this.#loads = new Counter({
      name: 'fabriek_model_loads_total',
      help: 'Loads of a model on demand, by result (ok, failed, refused: the budget had no room)',
      labelNames: ['result'],
      registers,
    });
    this.#coldStart = new Histogram({
      name: 'fabriek_model_cold_start_seconds',
      help: 'Time an on-demand load took, from the first request to READY (evictions it waited for included)',
      buckets: COLD_START_BUCKETS,
      registers,
    });
    for (const result of ['ok', 'failed', 'refused']) this.#loads.inc({ result }, 0);
  }

  loaded(result: 'ok' | 'failed' | 'refused', seconds?: number): void {
    this.#loads.inc({ result });
    if (seconds !== undefined && result === 'ok') this.#coldStart.observe(seconds);
  }
}

/**
 * Metrics of the on-demand budget, one set per host: evictions, and per
 * worker what is loaded against the budget (read at scrape time). Kept by
 * the gateway that plans the budget: the only one, or the primary of
 * --gateway-processes N (a model several processes hold counts once).
 */
export class ModelBudgetMetrics {
  readonly #evictions: Counter;

  constructor(registry: Registry, budget: MemoryBudget, usage: () => readonly LoadedUsage[] | Promise<readonly LoadedUsage[]>) {
    const registers = [registry];
    this.#evictions = new Counter({ name: 'fabriek_model_evictions_total', help: 'Models unloaded to make room under the on-demand budget', registers });
    this.#evictions.inc(0);
    new Gauge({
      name: 'fabriek_model_loaded_bytes',
      help: 'Estimated bytes of the models loaded (or loading) on demand, per worker: model file plus a measured per-session overhead',
      labelNames: ['worker'],
      registers,
      async collect() {
        this.reset();
        for (const u of await usage()) this.set({ worker: u.worker }, u.bytes);
      },
    });
    new Gauge({
      name: 'fabriek_models_loaded',
      help: 'Models loaded (or loading) on demand, per worker',
      labelNames: ['worker'],
      registers,
      async collect() {
        this.reset();
        for (const u of await usage()) this.set({ worker: u.worker }, u.models);
      },
    });
    new Gauge({
      name: 'fabriek_models_loaded_peak',
      help: 'Most models loaded (or loading) on demand at once so far, per worker',
      labelNames: ['worker'],
      registers,
      async collect() {
        this.reset();
        for (const u of await usage()) this.set({ worker: u.worker }, u.peakModels);
      },
    });
    new Gauge({
      name: 'fabriek_model_loaded_bytes_peak',
      help: 'Most estimated bytes loaded (or loading) on demand at once so far, per worker',
      labelNames: ['worker'],
      registers,
      async collect() {
        this.reset();
        for (const u of await usage()) this.set({ worker: u.worker }, u.peakBytes);
      },
    });
    new Gauge({
      name: 'fabriek_model_memory_budget',
      help: 'The on-demand budget per worker (--model-memory-budget), in its unit: bytes or models',
      labelNames: ['unit'],
      registers,
    }).set({ unit: budget.unit }, budget.limit);
  }

  evicted(): void {
    this.#evictions.inc();
  }
}
