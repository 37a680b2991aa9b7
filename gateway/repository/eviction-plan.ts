// Which loaded models to unload so that one more fits the budget
// (--model-control-mode on-demand). Pure: the on-demand loader hands in what
// is loaded and what is asked for, and carries out the answer.
import { formatAmount, type MemoryBudget } from './memory-budget.js';

/** A model version that holds part of the budget (loaded, or loading). */
export interface Resident {
  readonly key: string;
  /** Workers it is loaded on: the budget is per worker. */
  readonly workers: readonly string[];
  /** In the budget's unit (bytes, or 1 per model). */
  readonly cost: number;
  /** Larger = used more recently. */
  readonly lastUse: number;
  /** Requests in flight or queued, or waiting for its load; or it is loading now. Never evicted. */
  readonly busy: boolean;
  /** Loaded through the repository API: stays until unloaded there. */
  readonly pinned: boolean;
}

export interface LoadNeed {
  readonly key: string;
  readonly workers: readonly string[];
  readonly cost: number;
}

export type EvictionPlan = { readonly fits: true; readonly evict: readonly string[] } | { readonly fits: false; readonly reason: string };

/**
 * The least recently used idle, unpinned residents whose unloading makes
 * `need` fit on every worker it goes to; or why nothing can. A resident
 * counts on all its workers, so evicting it frees its cost on each.
 */
export function planEviction(budget: MemoryBudget, residents: readonly Resident[], need: LoadNeed): EvictionPlan {
  const limit = budget.limit;
  if (need.cost > limit) {
    return { fits: false, reason: `'${need.key}' needs ${formatAmount(budget, need.cost)}, more than the whole budget of ${formatAmount(budget, limit)} per worker` };
  }
  const used = new Map<string, number>();
  for (const r of residents) for (const w of r.workers) used.set(w, (used.get(w) ?? 0) + r.cost);
  const over = (): string | undefined => need.workers.find((w) => (used.get(w) ?? 0) + need.cost > limit);
  const candidates = residents.filter((r) => !r.busy && !r.pinned && r.key !== need.key).sort((a, b) => a.lastUse - b.lastUse);
  const evict: string[] = [];
  for (let worker = over(); worker !== undefined; worker = over()) {
    const w = worker;
    const index = candidates.findIndex((r) => r.workers.includes(w));
    const victim = candidates[index];
    if (victim === undefined) {
      const here = residents.filter((r) => r.workers.includes(w));
      const busy = here.filter((r) => r.busy).length;
      const pinned = here.filter((r) => r.pinned && !r.busy).length;
      return {
        fits: false,
        reason:
          `the model memory budget of ${formatAmount(budget, limit)} per worker is full on worker ${w} ` +
          `(${formatAmount(budget, used.get(w) ?? 0)} held by ${here.length} model${here.length === 1 ? '' : 's'}: ` +
          `${busy} busy with requests or loading, ${pinned} pinned by the repository API) and '${need.key}' needs ${formatAmount(budget, need.cost)}; ` +
          'nothing idle can be evicted',
      };
    }
    candidates.splice(index, 1);
    evict.push(victim.key);
    for (const vw of victim.workers) used.set(vw, (used.get(vw) ?? 0) - victim.cost);
  }
  return { fits: true, evict };
}

/** After `failures` failed loads in a row, the next is tried no sooner than this: 1 s, doubling, at most 30 s. */
export function retryDelayMs(failures: number): number {
  return Math.min(30_000, 1_000 * 2 ** Math.max(0, Math.min(failures - 1, 5)));
}
