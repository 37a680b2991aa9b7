// What the models loaded on demand hold per worker, and the most they have
// held at once: for the budget's gauges, kept by the one planner of a budget
// (the on-demand loader of a single gateway, or the primary's HostBudget).
import { type LoadedUsage } from '../metrics/model-load-metrics.js';

/** A model version holding part of the budget on each of its workers. */
export interface Holding {
  readonly workers: readonly string[];
  /** In the budget's unit. */
  readonly cost: number;
  /** Estimated bytes (file + overhead). */
  readonly bytes: number;
}

export interface WorkerUse {
  readonly cost: number;
  readonly bytes: number;
  readonly models: number;
}

/** Per worker: the cost, bytes and models of `holdings` (each counts on every worker it is on). */
export function usedPerWorker(holdings: Iterable<Holding>): Map<string, WorkerUse> {
  const used = new Map<string, WorkerUse>();
  for (const h of holdings) {
    for (const w of h.workers) {
      const u = used.get(w) ?? { cost: 0, bytes: 0, models: 0 };
      used.set(w, { cost: u.cost + h.cost, bytes: u.bytes + h.bytes, models: u.models + 1 });
    }
  }
  return used;
}

/** The high-water marks of what was loaded, per worker. */
export class LoadedPeaks {
  readonly #peak = new Map<string, { models: number; bytes: number }>();

  /** Takes `used` into the marks (where something was added). */
  note(used: ReadonlyMap<string, WorkerUse>): void {
    for (const [worker, u] of used) {
      const p = this.#peak.get(worker);
      this.#peak.set(worker, { models: Math.max(p?.models ?? 0, u.models), bytes: Math.max(p?.bytes ?? 0, u.bytes) });
    }
  }

  /** `used` now, with the marks, for every worker that ever held something. */
  usage(used: ReadonlyMap<string, WorkerUse>): LoadedUsage[] {
    this.note(used);
    return [...new Set([...used.keys(), ...this.#peak.keys()])].map((worker) => {
      const u = used.get(worker) ?? { bytes: 0, models: 0 };
      const p = this.#peak.get(worker) ?? { bytes: 0, models: 0 };
      return { worker, bytes: u.bytes, models: u.models, peakModels: p.models, peakBytes: p.bytes };
    });
  }
}
