// The on-demand budget of a host with several gateway processes
// (--gateway-processes N, --model-control-mode on-demand). The processes
// load onto the same workers, and a worker holds one session for a model
// whatever the number of processes that use it, so the budget is the
// host's: the primary plans every load here. A process asks before it
// loads; the primary asks every process what it holds (busy, pinned, last
// used), merges it (a model is busy or pinned if it is so anywhere, last
// used when any process last used it), runs the same pure planEviction as
// one gateway, and has every holder of a victim unload it. A holder where
// the victim became busy meanwhile refuses, and the primary plans again.
// Plans run one at a time; a load granted and not yet settled counts as a
// busy resident, so the next plan sees it even before its process does.
import { type Logger } from 'pino';
import { resourceExhausted, unavailable } from '../../core/errors.js';
import { type LoadedUsage, type ModelBudgetMetrics } from '../metrics/model-load-metrics.js';
import { planEviction, type Resident } from '../repository/eviction-plan.js';
import { type MemoryBudget } from '../repository/memory-budget.js';
import { type LoadRequest, type ResidentReport } from '../repository/on-demand-loader.js';
import { LoadedPeaks, usedPerWorker } from '../repository/loaded-usage.js';

/** The gateway processes, as the budget reaches them (the primary's IPC; a fake in unit tests). */
export interface BudgetHolders {
  /** What each serving process holds, by its id. Rejects when one of them does not answer. */
  residents(): Promise<ReadonlyMap<number, readonly ResidentReport[]>>;
  /** Has process `holder` unload `key` if it is idle there: true once it is gone, false when it is busy. */
  evict(holder: number, key: string): Promise<boolean>;
}

export interface HostBudgetOptions {
  readonly budget: MemoryBudget;
  readonly holders: BudgetHolders;
  readonly log: Logger;
  readonly metrics?: ModelBudgetMetrics;
  /** For tests; default Date.now. */
  readonly now?: () => number;
}

/** A model version as the host holds it: merged over the processes. */
interface HostResident extends ResidentReport {
  /** The processes that hold it (one granted and not settled is not among them: it has nothing to unload yet). */
  readonly holders: number[];
}

/** Plans again this many times when a victim became busy meanwhile, then gives up. */
const PLAN_ROUNDS = 4;

export class HostBudget {
  readonly #options: HostBudgetOptions;
  readonly #now: () => number;
  /** Loads granted and not settled: holder → key → what it asked for, when. */
  readonly #granted = new Map<number, Map<string, { need: LoadRequest; at: number }>>();
  /** Plans one at a time: each sees what the one before made room for. */
  #turn: Promise<unknown> = Promise.resolve();
  readonly #peaks = new LoadedPeaks();

  constructor(options: HostBudgetOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  get budget(): MemoryBudget {
    return this.#options.budget;
  }

  /**
   * Room for `need` on its workers, made by evicting idle models in any
   * process; then the load is granted to `holder` until it settles. Rejects
   * with RESOURCE_EXHAUSTED (and the one gateway's words) when nothing idle
   * can go.
   */
  reserve(holder: number, need: LoadRequest): Promise<void> {
    const turn = this.#turn.then(() => this.#plan(holder, need));
    // The next plan starts a turn later: the answer to this one (sent by promise
    // callbacks) must reach its process before the next plan asks it what it holds.
    this.#turn = turn.catch(() => undefined).then(() => new Promise((resolve) => setImmediate(resolve)));
    return turn;
  }

  /** `holder`'s load of `key` is over: what it reports from now on says whether it holds it. */
  settled(holder: number, key: string): void {
    const mine = this.#granted.get(holder);
    mine?.delete(key);
    if (mine?.size === 0) this.#granted.delete(holder);
  }

  /** `holder` exited: its grants go (the worker dropped what its connection held). */
  gone(holder: number): void {
    this.#granted.delete(holder);
  }

  async #plan(holder: number, need: LoadRequest): Promise<void> {
    const { budget, holders, metrics, log } = this.#options;
    for (let round = 0; round < PLAN_ROUNDS; round++) {
      const residents = await this.#merged();
      // Loaded (or loading) by another process: the worker shares its session, nothing more to hold.
      if (residents.has(need.key)) return this.#grant(holder, need, residents, []);
      const plan = planEviction(budget, [...residents.values()].map(asResident), need);
      if (!plan.fits) throw resourceExhausted(`cannot load model '${need.key}' on demand: ${plan.reason}`);
      const outcomes = await Promise.all(
        plan.evict.map(async (key) => {
          const victim = residents.get(key) as HostResident;
          const done = await Promise.all(victim.holders.map((h) => holders.evict(h, key).catch(() => false)));
          const gone = done.every(Boolean);
          if (gone) {
            metrics?.evicted();
            log.debug({ model: key, for: need.key }, 'evicted the least recently used idle model from every gateway process');
          }
          return gone;
        }),
      );
      if (outcomes.every(Boolean)) return this.#grant(holder, need, residents, plan.evict);
      log.debug({ model: need.key, round }, 'a model to evict was in use again; planning again');
    }
    throw unavailable(`cannot load model '${need.key}' on demand: the idle models it would replace were in use again at each of ${PLAN_ROUNDS} tries; try again`);
  }

  #grant(holder: number, need: LoadRequest, residents: Map<string, HostResident>, evicted: readonly string[]): void {
    let mine = this.#granted.get(holder);
    if (mine === undefined) this.#granted.set(holder, (mine = new Map()));
    mine.set(need.key, { need, at: this.#now() });
    // The peak: what remains on the workers with this load.
    for (const key of evicted) residents.delete(key);
    if (!residents.has(need.key)) residents.set(need.key, { ...need, lastUsed: this.#now(), busy: true, pinned: false, holders: [] });
    this.#peaks.note(usedPerWorker(residents.values()));
  }

  /** What every process holds (loads waiting for room are not reported), and the loads granted and not settled, by key. */
  async #merged(): Promise<Map<string, HostResident>> {
    const reports = await this.#options.holders.residents();
    const out = new Map<string, HostResident>();
    const add = (r: ResidentReport, holder: number | undefined): void => {
      const seen = out.get(r.key);
      const holders = [...(seen?.holders ?? []), ...(holder === undefined ? [] : [holder])];
      if (seen === undefined) {
        out.set(r.key, { ...r, holders });
        return;
      }
      out.set(r.key, { ...seen, lastUsed: Math.max(seen.lastUsed, r.lastUsed), busy: seen.busy || r.busy, pinned: seen.pinned || r.pinned, holders });
    };
    for (const [holder, list] of reports) for (const r of list) add(r, holder);
    for (const mine of this.#granted.values()) for (const { need, at } of mine.values()) add({ ...need, lastUsed: at, busy: true, pinned: false }, undefined);
    return out;
  }

  /** Per worker: estimated bytes and models held on the host, now and at most so far (for the metrics). */
  async usage(): Promise<LoadedUsage[]> {
    return this.#peaks.usage(usedPerWorker((await this.#merged()).values()));
  }
}

function asResident(r: HostResident): Resident {
  return { key: r.key, workers: r.workers, cost: r.cost, lastUse: r.lastUsed, busy: r.busy, pinned: r.pinned };
}
