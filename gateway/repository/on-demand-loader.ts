// --model-control-mode on-demand (ModelMesh-like): every model of the
// repository is listed; the first inference request for one loads it, and
// the least recently used idle models are unloaded when a load would pass
// the budget. The choice of what to evict is eviction-plan.ts; this module
// keeps the state (what is loaded, loading, held by requests) and carries
// the choice out. The model manager does the loading and unloading itself.
// With several gateway processes the choice is the primary's, for the host
// (a coordinator): this loader then asks it for room and evicts when told.
import { stat } from 'node:fs/promises';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { type Logger } from 'pino';
import { type CancelSignal } from '../../core/cancellation.js';
import { resourceExhausted, ServingError, unavailable } from '../../core/errors.js';
import { abortError } from '../scheduling/execution.js';
import { type LoadedUsage, type ModelBudgetMetrics, type ModelLoadMetrics } from '../metrics/model-load-metrics.js';
import { LoadedPeaks, usedPerWorker, type WorkerUse } from './loaded-usage.js';
import { planEviction, type Resident, retryDelayMs } from './eviction-plan.js';
import { formatAmount, type MemoryBudget, modelCost, SESSION_OVERHEAD_BYTES } from './memory-budget.js';
import { type ModelVersion } from './model-version.js';

/** What the loader needs from the model manager. */
export interface OnDemandHost {
  /** Ids of the workers a load of `v` would go to. */
  placement(v: ModelVersion): readonly string[];
  /** Loads `v`: READY afterwards, or UNAVAILABLE with the reason. Never throws for the model's fault. */
  load(v: ModelVersion): Promise<void>;
  /** Unloads `v` (idle: nothing runs on it): UNAVAILABLE, not loaded, afterwards. */
  evict(v: ModelVersion): Promise<void>;
}

/** What a load asks of the budget: a model version, where it goes, what it costs. */
export interface LoadRequest {
  readonly key: string;
  readonly workers: readonly string[];
  /** In the budget's unit. */
  readonly cost: number;
  /** Estimated bytes (file + overhead), for the metrics whatever the unit. */
  readonly bytes: number;
}

/**
 * Several gateway processes load onto the same workers (--gateway-processes
 * N): the budget is the host's, planned by the primary (cluster/host-budget.ts).
 * A load asks it for room first; it evicts in any process what must go.
 */
export interface OnDemandCoordinator {
  /**
   * Resolves when `need` may load (room made); rejects with RESOURCE_EXHAUSTED
   * (or UNAVAILABLE) when it may not. `granted` runs as the grant arrives,
   * before anything the primary sends after it is handled: the next report
   * of what this process holds must count the load (a resolved promise
   * would run too late, after a report handled in the same turn).
   */
  reserve(need: LoadRequest, granted: () => void): Promise<void>;
  /** The load that `reserve` allowed is over (loaded or failed): what this process holds now says the rest. */
  settled(key: string): void;
}

/** What this process holds, as the host's budget sees it. */
export interface ResidentReport extends LoadRequest {
  /** Wall-clock ms of its last use here: processes compare them. */
  readonly lastUsed: number;
  readonly busy: boolean;
  readonly pinned: boolean;
}

export interface OnDemandOptions {
  readonly budget: MemoryBudget;
  readonly host: OnDemandHost;
  readonly log: Logger;
  readonly metrics?: ModelLoadMetrics;
  /** Evictions and what is loaded: this loader's own without a coordinator (else the primary's). */
  readonly budgetMetrics?: ModelBudgetMetrics;
  /** Set with several gateway processes: the primary plans room, not this loader. */
  readonly coordinator?: OnDemandCoordinator;
  /** For tests; default Date.now. */
  readonly now?: () => number;
}

interface Entry {
  readonly v: ModelVersion;
  readonly workers: readonly string[];
  /** In the budget's unit. */
  readonly cost: number;
  /** Estimated bytes (file + overhead), for the metrics whatever the unit. */
  readonly bytes: number;
  lastUse: number;
  /** Wall-clock ms of the last use, for the host's budget (several gateway processes). */
  lastUsed: number;
  /** Requests that hold it: waiting for its load, queued or running. */
  holders: number;
  pinned: boolean;
  phase: 'loading' | 'loaded' | 'evicting';
  /** With a coordinator: false while it waits for room (nothing of it is on a worker yet). */
  reserved: boolean;
  /** Settles when the load is over (rejects when it failed). */
  loading: Promise<void>;
  evicting?: Promise<void>;
}

interface Failure {
  readonly count: number;
  readonly retryAt: number;
  readonly reason: string;
}

/** Given back by `acquire`: call once when the request is over. */
export type Release = () => void;

export class OnDemandLoader {
  readonly #options: OnDemandOptions;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #failures = new Map<string, Failure>();
  readonly #fileBytes = new Map<string, number>();
  /** Unloads under way: a load waits for them, so the budget holds. */
  readonly #evictions = new Set<Promise<void>>();
  readonly #peaks = new LoadedPeaks();
  /** Use order: a counter, not a clock (two uses in one millisecond still order). */
  #tick = 0;

  constructor(options: OnDemandOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  get budget(): MemoryBudget {
    return this.#options.budget;
  }

  /**
   * Holds `v` for one request, loading it first when it is not loaded.
   * Concurrent first requests wait for the same load. A request whose
   * signal fires while it waits leaves with DEADLINE_EXCEEDED or CANCELLED;
   * the load goes on for the others.
   */
  acquire(v: ModelVersion, signal: CancelSignal, deadline: number): Release | Promise<Release> {
    const e = this.#entries.get(v.key);
    if (e !== undefined && e.phase === 'loaded' && e.v === v && v.state === 'READY') return this.#hold(e);
    return this.#acquireCold(v, signal, deadline);
  }

  #hold(e: Entry): Release {
    e.holders++;
    this.#used(e);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      e.holders--;
      this.#used(e);
    };
  }

  #used(e: Entry): void {
    e.lastUse = ++this.#tick;
    if (this.#options.coordinator) e.lastUsed = this.#now();
  }

  async #acquireCold(v: ModelVersion, signal: CancelSignal, deadline: number): Promise<Release> {
    // A few rounds: the model may be evicted, or reloaded by the repository API, between them.
    for (let round = 0; round < 4; round++) {
      let e = this.#entries.get(v.key);
      if (e !== undefined && e.v !== v) {
        // The repository API replaced the version object: the new one serves.
        throw unavailable(`model '${v.key}' was reloaded meanwhile; try again`);
      }
      if (e?.phase === 'evicting') {
        await waitOrAbort(e.evicting ?? Promise.resolve(), signal, deadline, v.key);
        continue;
      }
      if (e?.phase === 'loaded') {
        if (v.state === 'READY') return this.#hold(e);
        if (v.state !== 'UNAVAILABLE' || e.holders > 0) throw unavailable(`model '${v.key}' is ${v.state}${v.reason ? `: ${v.reason}` : ''}`);
        // It went away some other way: no longer held, so load it again.
        this.#entries.delete(v.key);
        continue;
      }
      if (e === undefined) {
        if (v.state === 'READY') {
          // Loaded some other way (e.g. the repository API before the loader saw it): count it.
          this.#track(v, await this.#fileBytesOf(v), false);
          continue;
        }
        e = await this.#startLoad(v);
        if (e === undefined) continue;
      }
      const loading = e;
      loading.holders++;
      try {
        await waitOrAbort(loading.loading, signal, deadline, v.key);
      } finally {
        loading.holders--;
      }
      continue;
    }
    throw unavailable(`model '${v.key}' was evicted again while loading; the budget is too small for the models in use`);
  }

  /** Plans room, starts the evictions and the load; undefined when another request started one meanwhile. */
  async #startLoad(v: ModelVersion): Promise<Entry | undefined> {
    const failure = this.#failures.get(v.key);
    const now = this.#now();
    if (failure !== undefined && now < failure.retryAt) {
      throw unavailable(`cannot load model '${v.key}' on demand: ${failure.reason} (next attempt in ${Math.ceil((failure.retryAt - now) / 1000)} s)`);
    }
    const file = await this.#fileBytesOf(v);
    if (this.#entries.has(v.key)) return undefined;
    const { budget, host, coordinator } = this.#options;
    const workers = host.placement(v);
    if (workers.length === 0) throw unavailable(`model '${v.key}': no worker is available to host it`);
    const cost = modelCost(budget, file);
    const bytes = file + SESSION_OVERHEAD_BYTES;
    // With a coordinator the primary plans the room (in #load), over every gateway process.
    if (coordinator === undefined) {
      const plan = planEviction(budget, this.#residents(), { key: v.key, workers, cost });
      if (!plan.fits) {
        this.#options.metrics?.loaded('refused');
        throw resourceExhausted(`cannot load model '${v.key}' on demand: ${plan.reason}`);
      }
      for (const key of plan.evict) {
        const victim = this.#entries.get(key);
        if (victim) this.#evict(victim);
      }
    }
    const e: Entry = { v, workers, cost, bytes, lastUse: ++this.#tick, lastUsed: this.#now(), holders: 0, pinned: false, phase: 'loading', reserved: coordinator === undefined, loading: Promise.resolve() };
    e.loading = this.#load(e);
    // Failures reach the requests waiting on it; nobody else must see them as unhandled.
    e.loading.catch(() => undefined);
    this.#entries.set(v.key, e);
    this.#notePeak();
    return e;
  }

  async #load(e: Entry): Promise<void> {
    const started = performance.now();
    const { v } = e;
    const { coordinator } = this.#options;
    if (coordinator) {
      try {
        await coordinator.reserve({ key: v.key, workers: e.workers, cost: e.cost, bytes: e.bytes }, () => {
          e.reserved = true;
        });
      } catch (error) {
        if (this.#entries.get(v.key) === e) this.#entries.delete(v.key);
        if (error instanceof ServingError && error.code === GrpcStatus.RESOURCE_EXHAUSTED) this.#options.metrics?.loaded('refused');
        throw error;
      }
    }
    try {
      await Promise.all(this.#evictions);
      await this.#options.host.load(v);
    } finally {
      // This process's entry now says what it holds (the next plan asks): the reservation is over.
      coordinator?.settled(v.key);
    }
    const seconds = (performance.now() - started) / 1000;
    if (v.state === 'READY') {
      e.phase = 'loaded';
      this.#failures.delete(v.key);
      this.#options.metrics?.loaded('ok', seconds);
      this.#options.log.debug({ model: v.name, version: v.version, ms: Math.round(seconds * 1000) }, 'model loaded on demand');
      return;
    }
    if (this.#entries.get(v.key) === e) this.#entries.delete(v.key);
    const count = (this.#failures.get(v.key)?.count ?? 0) + 1;
    const delay = retryDelayMs(count);
    this.#failures.set(v.key, { count, retryAt: this.#now() + delay, reason: v.reason });
    this.#options.metrics?.loaded('failed', seconds);
    throw unavailable(`cannot load model '${v.key}' on demand: ${v.reason} (next attempt in ${Math.ceil(delay / 1000)} s at the earliest)`);
  }

  #evict(e: Entry): void {
    e.phase = 'evicting';
    this.#options.budgetMetrics?.evicted();
    this.#options.log.debug({ model: e.v.name, version: e.v.version }, 'evicting the least recently used idle model');
    const done: Promise<void> = this.#options.host
      .evict(e.v)
      .catch((error: unknown) => this.#options.log.error({ model: e.v.key, err: error }, 'eviction failed'))
      .finally(() => {
        this.#evictions.delete(done);
        if (this.#entries.get(e.v.key) === e) this.#entries.delete(e.v.key);
      });
    e.evicting = done;
    this.#evictions.add(done);
  }

  #residents(): Resident[] {
    const out: Resident[] = [];
    for (const e of this.#entries.values()) {
      // One being evicted is gone as far as the budget goes: the load waits for it.
      if (e.phase === 'evicting') continue;
      out.push({ key: e.v.key, workers: e.workers, cost: e.cost, lastUse: e.lastUse, busy: isBusy(e), pinned: e.pinned });
    }
    return out;
  }

  /** For the host's budget (several gateway processes): what this process holds, with wall-clock last uses. */
  report(): ResidentReport[] {
    const out: ResidentReport[] = [];
    for (const e of this.#entries.values()) {
      // One waiting for room holds nothing yet (the primary plans its room in turn).
      if (e.phase === 'evicting' || !e.reserved) continue;
      out.push({ key: e.v.key, workers: e.workers, cost: e.cost, bytes: e.bytes, lastUsed: e.lastUsed, busy: isBusy(e), pinned: e.pinned });
    }
    return out;
  }

  /**
   * The host's budget evicts `key` here: true once it is unloaded (or was
   * not held), false when it is busy, pinned or loading (the primary plans
   * again with it in use).
   */
  async evictIfIdle(key: string): Promise<boolean> {
    const e = this.#entries.get(key);
    if (e === undefined) return true;
    if (e.phase === 'loaded') {
      if (isBusy(e) || e.pinned) return false;
      this.#evict(e);
    }
    if (e.phase === 'loading') return false;
    await e.evicting;
    return true;
  }

  #track(v: ModelVersion, file: number, pinned: boolean): void {
    const workers = v.serving?.plans.map((p) => p.workerId) ?? this.#options.host.placement(v);
    const cost = modelCost(this.#options.budget, file);
    const bytes = file + SESSION_OVERHEAD_BYTES;
    this.#entries.set(v.key, { v, workers, cost, bytes, lastUse: ++this.#tick, lastUsed: this.#now(), holders: 0, pinned, phase: 'loaded', reserved: true, loading: Promise.resolve() });
    this.#notePeak();
  }

  /** The size of `v`'s model file (stat once per path; a reload through the repository API stats again). */
  async #fileBytesOf(v: ModelVersion): Promise<number> {
    let size = this.#fileBytes.get(v.modelPath);
    if (size === undefined) {
      size = (await stat(v.modelPath).catch(() => undefined))?.size ?? 0;
      this.#fileBytes.set(v.modelPath, size);
    }
    return size;
  }

  /**
   * The repository API loaded `name`: its ready versions are pinned (never
   * evicted, still counted in the budget) and replace what was tracked.
   */
  async pin(name: string, versions: readonly ModelVersion[]): Promise<void> {
    this.forget(name);
    for (const v of versions) {
      if (v.state !== 'READY') continue;
      this.#fileBytes.delete(v.modelPath);
      this.#track(v, await this.#fileBytesOf(v), true);
    }
    const over = this.#overBudget();
    if (over) this.#options.log.warn({ model: name, over }, 'models pinned by the repository API hold more than the on-demand budget; nothing idle is left to evict');
  }

  /** The repository API unloaded `name`: it no longer counts (a later request loads it on demand again). */
  forget(name: string): void {
    for (const [key, e] of this.#entries) if (e.v.name === name && e.phase !== 'evicting') this.#entries.delete(key);
    for (const key of this.#failures.keys()) if (key.startsWith(`${name}/`)) this.#failures.delete(key);
  }

  #overBudget(): string | undefined {
    const { budget } = this.#options;
    for (const [worker, amount] of this.#usedPerWorker()) {
      if (amount.cost > budget.limit) return `${worker}: ${formatAmount(budget, amount.cost)} of ${formatAmount(budget, budget.limit)}`;
    }
    return undefined;
  }

  /** What is held per worker: one being evicted waits only for its unload, and a load waits for that, so they never coexist. */
  #usedPerWorker(): Map<string, WorkerUse> {
    const held: Entry[] = [];
    for (const e of this.#entries.values()) if (e.phase !== 'evicting') held.push(e);
    return usedPerWorker(held);
  }

  /** Per worker: estimated bytes and models held (loaded or loading), now and at most so far, for the metrics. */
  usage(): LoadedUsage[] {
    return this.#peaks.usage(this.#usedPerWorker());
  }

  /** Only where something was added: the high-water marks of the metrics. */
  #notePeak(): void {
    this.#peaks.note(this.#usedPerWorker());
  }
}

/** Held by requests (waiting, queued or running), or loading: never evicted. */
function isBusy(e: Entry): boolean {
  return e.phase === 'loading' || e.holders > 0 || (e.v.serving?.scheduler.pending ?? 0) > 0;
}

/** `promise`, or the request's own end: its deadline or its cancel (the load goes on). */
function waitOrAbort<T>(promise: Promise<T>, signal: CancelSignal, deadline: number, key: string): Promise<T> {
  const reason = (): ServingError => abortError(key, Date.now(), deadline, 'while the model loaded on demand');
  if (signal.aborted) return Promise.reject(reason());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(reason());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
