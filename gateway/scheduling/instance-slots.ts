import { DEFAULT_KIND } from '../../core/kind-costs.js';
import { EXECUTIONS_AHEAD_PER_INSTANCE, executionSlots } from '../../core/pipelining.js';
import { type WorkerLink } from './worker-link.js';

/** One worker's share of a model: how many executions it takes, how many it runs at once, how many it has. */
export interface Placement {
  readonly worker: WorkerLink;
  /** Executions sent to the worker at once (running plus queued ahead). */
  capacity: number;
  /** The most executions per instance the worker takes ahead of the running one from this gateway. */
  readonly aheadLimit: number;
  /** Executions it runs at once: its instance count. */
  readonly instances: number;
  /** What its instances run on there (core/kind-costs.ts): whose cost model its executions teach and are weighed by. */
  readonly kind: string;
  busy: number;
  /** Executions this gateway has sent there since the worker was added (metrics' counter). */
  sent: number;
  /**
   * Executions of this version other gateways had on the worker at its last
   * answer (its reported load less ours), and when (performance.now()).
   */
  others: number;
  reportedAt: number;
  /**
   * The same in time: how long a new execution would have waited there for
   * other gateways' work, per instance, by the worker's own estimate (its
   * backlog less ours); NaN when it did not say (a worker from before the
   * backlog, or one that has not timed a run of the model yet).
   */
  othersNs: number;
  /** Our recent executions' compute on this worker (ns), as a ring, and how many were timed. */
  readonly timings: Float64Array;
  timed: number;
  /**
   * The least of them: how fast that worker runs ours (NaN until timed), and
   * when last timed (performance.now()). The least, not the median: a core
   * shared with other work (another worker, a gateway) slows some runs and
   * never speeds one up, and a worker given little work is timed mostly
   * while the others run; by its median it then looked slower than it is,
   * got less work, and was timed the same way again (two equal workers
   * shared by two gateways went to 3:1). Its queue is in the reports.
   */
  execNs: number;
  timedAt: number;
  /**
   * The same as a ratio to what the version's cost model of its kind
   * expected for the rows of each (InstanceSlots.expectBy): compute ÷ expected, the least of
   * the last 8; NaN while the model could not say. Raw times compare workers
   * only when their executions are the same size: a worker last given 1-row
   * batches looked six times faster than one given 64-row batches, and took
   * every batch of 64.
   */
  readonly ratios: Float64Array;
  ratioTimed: number;
  ratio: number;
}

/** A worker's load report older than this says nothing about now. */
export const REPORT_TTL_MS = 1_000;
/** Executions of ours a worker's speed is the least of. */
const TIMINGS = 8;
/**
 * A worker's speed not measured for this long is measured again: a worker
 * that ran slowly once (its neighbours busy) would otherwise get no more work
 * while the others keep up, and never show it is fast again.
 */
export const TIMING_TTL_MS = 10_000;
/**
 * Before that, a worker's speed counts as nearer the fastest worker's the
 * longer it goes unmeasured, the gap halving every SPEED_HALF_LIFE_MS. A
 * worker timed slowly once (its first runs cold, or run beside another's)
 * is otherwise avoided while the fastest keeps up: two gateways with a call
 * each in flight then both chose the faster-looking worker, queued behind
 * each other there (each seeing the other's work only in reports already
 * old), and the other idled with its slow timing never renewed: 918:64 runs.
 * Aged, it is tried again within a second or two and timed afresh.
 */
export const SPEED_HALF_LIFE_MS = 1_000;

/** What a worker's answer says of its load (core/execute-frame.ts, ExecuteAnswer). */
export interface LoadReport {
  readonly outstanding?: number | undefined;
  readonly backlogNs?: number | undefined;
}

/** The worker answered while holding `outstanding` executions of the version, from every gateway, worth `backlogNs` of waiting. */
export function noteReport(p: Placement, report: LoadReport, now = performance.now()): void {
  if (report.outstanding === undefined) return;
  // Ours are those still out (this answer's slot is free already).
  p.others = Math.max(0, report.outstanding - p.busy);
  p.othersNs = report.backlogNs === undefined || Number.isNaN(p.execNs) ? NaN : Math.max(0, report.backlogNs - (p.busy * p.execNs) / p.instances);
  p.reportedAt = now;
}

/**
 * One of our executions took `computeNs` on the placement's worker (its
 * compute input + infer + output), where the version's cost model expected
 * `expectedNs` for its rows (undefined: it could not say).
 */
export function noteTiming(p: Placement, computeNs: number, now = performance.now(), expectedNs?: number): void {
  if (!(computeNs >= 0) || !Number.isFinite(computeNs)) return;
  p.execNs = pushLeast(p.timings, p.timed++, computeNs);
  if (expectedNs !== undefined && expectedNs > 0 && Number.isFinite(expectedNs)) p.ratio = pushLeast(p.ratios, p.ratioTimed++, computeNs / expectedNs);
  p.timedAt = now;
}

/** Puts `value` in the ring `ring` as its `count`th entry; the least it then holds. */
function pushLeast(ring: Float64Array, count: number, value: number): number {
  ring[count % TIMINGS] = value;
  let least = Infinity;
  for (let i = Math.min(count + 1, TIMINGS) - 1; i >= 0; i--) least = Math.min(least, ring[i] as number);
  return least;
}

/**
 * When a new execution sent to `p` now would be done, in ns from now: the
 * other gateways' work there (as the worker last said, less the time since;
 * by their count at our speed from a worker that gives no backlog), ours
 * still out over its instances, then its own run. Our executions sent since
 * the report are in `busy`, so they are not missed while reports age.
 */
export function expectedFinishNs(p: Placement, now: number, fresh: boolean, execNs = p.execNs): number {
  let others = 0;
  if (fresh) others = Number.isNaN(p.othersNs) ? (p.others * execNs) / p.instances : othersWaitNs(p, now);
  return others + (p.busy * execNs) / p.instances + execNs;
}

/** `p`'s speed for a choice at `now`: its measured one, nearer `fastestNs` the longer ago it was measured (SPEED_HALF_LIFE_MS). */
export function agedSpeedNs(p: Placement, now: number, fastestNs: number): number {
  return aged(p.execNs, fastestNs, now - p.timedAt);
}

/** `value` moved towards `best` by the halvings of `sinceMs`. */
function aged(value: number, best: number, sinceMs: number): number {
  return best + (value - best) * 2 ** (-Math.max(0, sinceMs) / SPEED_HALF_LIFE_MS);
}

/** Whether `p` has a free slot and is not `exclude`d. */
function usable(p: Placement, exclude: ReadonlySet<string> | undefined): boolean {
  return p.busy < p.capacity && exclude?.has(p.worker.endpoint.id) !== true;
}

/** Other gateways' work on `p` in ns at `now`, by its worker's last report less the time since (NaN: not reported in time). */
function othersWaitNs(p: Placement, now: number): number {
  return Math.max(0, p.othersNs - (now - p.reportedAt) * 1e6);
}

/** A placement as GET /v2/models/{m}/batching shows it (undefined: not known now). */
export interface PlacementView {
  readonly worker: string;
  readonly instances: number;
  readonly kind: string;
  readonly slots: number;
  readonly busy: number;
  /** Executions this gateway sent there since the worker was added. */
  readonly sent: number;
  /** Other gateways' executions there, by the worker's last report within REPORT_TTL_MS. */
  readonly othersReported: number | undefined;
  /** Their wait in ns now, by that report less the time since. */
  readonly othersNs: number | undefined;
  /** The least compute of our last executions there: that worker's speed. */
  readonly execNs: number | undefined;
  /** The least of their compute over what the version's cost model expected for their rows (1: as expected). */
  readonly computeRatio: number | undefined;
}

/** Why acquireOrWait gave no slot: no worker outside the excluded ones is left, or the deadline came first. */
export type NoSlot = 'no-worker' | 'deadline';

interface Waiter {
  readonly exclude: ReadonlySet<string>;
  readonly resolve: (placement: Placement | NoSlot) => void;
}

/**
 * The free execution slots of one model version across workers. A slot is
 * one model instance (one ONNX Runtime session); a scheduler takes a slot
 * before it sends work, so no worker ever gets more than it can run and
 * queued work waits in the gateway, where it can still be cancelled.
 */
export class InstanceSlots {
  readonly #placements: Placement[] = [];
  readonly #listeners = new Set<() => void>();
  /** Retries of executions whose worker was lost, served before the schedulers (oldest first). */
  readonly #waiters: Waiter[] = [];
  /** Executions sent ahead per instance (each placement within its worker's limit); see setAhead. */
  #ahead = EXECUTIONS_AHEAD_PER_INSTANCE;
  /** The version's expected compute for a batch of so many rows on instances of a kind (its scheduler's cost models); see expectBy. */
  #expectedNs: (rows: number, kind: string) => number | undefined = () => undefined;
  /** Instances by kind, and the kind holding the most; kept at add and remove (asked at every decision). */
  #instancesByKind: ReadonlyMap<string, number> = new Map();
  #leadKind = DEFAULT_KIND;

  /**
   * Adds a worker's `instances` of the version, running on `kind` (the
   * execution provider they were loaded on: core/kind-costs.ts).
   */
  add(worker: WorkerLink, instances: number, kind = DEFAULT_KIND): void {
    this.remove(worker.endpoint.id);
    const aheadLimit = worker.endpoint.maxAheadPerInstance ?? EXECUTIONS_AHEAD_PER_INSTANCE;
    this.#placements.push({
      worker,
      capacity: executionSlots(instances, Math.min(this.#ahead, aheadLimit)),
      aheadLimit,
      instances,
      kind,
      busy: 0,
      sent: 0,
      others: 0,
      reportedAt: -Infinity,
      othersNs: NaN,
      timings: new Float64Array(TIMINGS),
      timed: 0,
      execNs: NaN,
      timedAt: -Infinity,
      ratios: new Float64Array(TIMINGS),
      ratioTimed: 0,
      ratio: NaN,
    });
    this.#countKinds();
    this.#serveWaiters();
    this.#notify();
  }

  /**
   * Executions to send ahead per instance from now on, each worker within
   * its limit (core/pipelining.ts). Slots taken beyond a smaller count stay
   * taken until they are released.
   */
  setAhead(ahead: number): void {
    if (ahead === this.#ahead) return;
    const grew = ahead > this.#ahead;
    this.#ahead = ahead;
    for (const p of this.#placements) p.capacity = executionSlots(p.instances, Math.min(ahead, p.aheadLimit));
    if (!grew) return;
    this.#serveWaiters();
    this.#notify();
  }

  /** Forgets a worker; work already running there finishes or fails on its own. */
  remove(workerId: string): void {
    const i = this.#placements.findIndex((p) => p.worker.endpoint.id === workerId);
    if (i >= 0) this.#placements.splice(i, 1);
    this.#countKinds();
    // A waiter that no remaining worker can serve gets its answer now.
    for (const w of [...this.#waiters]) {
      if (!this.#placements.some((p) => !w.exclude.has(p.worker.endpoint.id))) this.#settle(w, 'no-worker');
    }
  }

  /**
   * The lead kind: the one with the most instances (a tie to the kind that
   * is not the CPU, the accelerator a version is deployed for); unchanged
   * while no worker holds the version, so its model is not dropped between
   * a worker's loss and its return.
   */
  #countKinds(): void {
    const counts = new Map<string, number>();
    for (const p of this.#placements) counts.set(p.kind, (counts.get(p.kind) ?? 0) + p.instances);
    this.#instancesByKind = counts;
    let lead: string | undefined;
    let most = 0;
    for (const [kind, n] of counts) {
      if (n > most || (n === most && lead === DEFAULT_KIND)) {
        lead = kind;
        most = n;
      }
    }
    if (lead !== undefined) this.#leadKind = lead;
  }

  /** The kind holding the most instances: whose cost model the version's scheduler decides with. */
  get leadKind(): string {
    return this.#leadKind;
  }

  /** Instances by kind (one entry for a version on one kind, the usual case). */
  get instancesByKind(): ReadonlyMap<string, number> {
    return this.#instancesByKind;
  }

  /** Workers that hold slots of this version. */
  get workers(): number {
    return this.#placements.length;
  }

  has(workerId: string): boolean {
    return this.#placements.some((p) => p.worker.endpoint.id === workerId);
  }

  get free(): number {
    let n = 0;
    for (const p of this.#placements) n += Math.max(0, p.capacity - p.busy);
    return n;
  }

  /** Instances across workers: executions that run at once. */
  get instanceCount(): number {
    let n = 0;
    for (const p of this.#placements) n += p.instances;
    return n;
  }

  /** Free slots on instances that are idle now (the rest would queue in the worker). */
  get idle(): number {
    let n = 0;
    for (const p of this.#placements) n += Math.max(0, p.instances - p.busy);
    return n;
  }

  /**
   * Takes a slot on the placement where an execution would be done soonest,
   * skipping `exclude`d workers; undefined when none is free. Soonest by
   * expectedFinishNs: other gateways' work there as the worker last reported
   * it (within REPORT_TTL_MS), ours, and its own run, at that worker's speed
   * as our executions there measured it. So gateways sharing workers spread
   * over them instead of all picking the one each sees idle, a faster worker
   * (a newer GPU, a GPU beside a CPU) takes more, and a worker holding a few
   * large batches counts as busier than one holding many single rows. While
   * a worker's speed is unknown (none of ours timed there, or not within
   * TIMING_TTL_MS), every worker is weighed by executions held relative to
   * its slots, as counts alone can, and a tie goes to the one not timed.
   */
  acquire(exclude?: ReadonlySet<string>, rows?: number): Placement | undefined {
    const best = this.#choose(exclude, performance.now(), rows);
    if (best) {
      best.busy += 1;
      best.sent += 1;
    }
    return best;
  }

  /** The kind of the slot `acquire(undefined, rows)` would take now, taking nothing; undefined when none is free. */
  nextKind(rows: number): string | undefined {
    return this.#choose(undefined, performance.now(), rows)?.kind;
  }

  #choose(exclude: ReadonlySet<string> | undefined, now: number, rows: number | undefined): Placement | undefined {
    // One worker (a gateway's own, the usual case): no choice to weigh.
    if (this.#placements.length === 1) {
      const only = this.#placements[0] as Placement;
      return usable(only, exclude) ? only : undefined;
    }
    const fresh = now - REPORT_TTL_MS;
    const timedSince = now - TIMING_TTL_MS;
    let byTime = true;
    let byRatio = rows !== undefined;
    let fastest = Infinity;
    let fastestRatio = Infinity;
    for (const p of this.#placements) {
      if (usable(p, exclude)) {
        if (p.timedAt < timedSince) byTime = false;
        if (Number.isNaN(p.ratio)) byRatio = false;
      }
      if (p.execNs < fastest) fastest = p.execNs;
      if (p.ratio < fastestRatio) fastestRatio = p.ratio;
    }
    // With the execution's rows and the cost model's expectation for them, each worker's speed relative to the model
    // of its kind (when every free one has one), so that workers timed on batches of other sizes, or on other kinds
    // of instance, compare; else raw times. Asked only when the choice goes by time, once per kind.
    // One kind (the usual case): one expectation for every placement, no map.
    let expectedOne = NaN;
    let expectedByKind: ReadonlyMap<string, number> | undefined;
    if (byTime && byRatio) {
      if (this.#instancesByKind.size < 2) {
        expectedOne = this.#expectedNs(rows as number, this.#leadKind) ?? NaN;
        if (!(expectedOne > 0)) byRatio = false;
      } else {
        expectedByKind = this.#expectedByKind(rows as number, exclude);
        if (expectedByKind === undefined) byRatio = false;
      }
    } else byRatio = false;
    let best: Placement | undefined;
    let bestLoad = Infinity;
    let bestTimed = true;
    for (const p of this.#placements) {
      if (!usable(p, exclude)) continue;
      const isFresh = p.reportedAt >= fresh;
      const runNs = byRatio ? aged(p.ratio, fastestRatio, now - p.timedAt) * (expectedByKind?.get(p.kind) ?? expectedOne) : agedSpeedNs(p, now, fastest);
      const load = byTime ? expectedFinishNs(p, now, isFresh, runNs) : (p.busy + (isFresh ? p.others : 0)) / p.capacity;
      // By counts, a tie goes to a worker not timed lately: at light load every count is 0, and it gets measured.
      const timed = p.timedAt >= timedSince;
      if (load < bestLoad || (load === bestLoad && bestTimed && !timed)) {
        best = p;
        bestLoad = load;
        bestTimed = timed;
      }
    }
    return best;
  }

  /** The expected compute of `rows` rows by each free placement's kind; undefined when a kind's model cannot say. */
  #expectedByKind(rows: number, exclude: ReadonlySet<string> | undefined): ReadonlyMap<string, number> | undefined {
    const out = new Map<string, number>();
    for (const p of this.#placements) {
      if (!usable(p, exclude) || out.has(p.kind)) continue;
      const ns = this.#expectedNs(rows, p.kind);
      if (ns === undefined || !(ns > 0)) return undefined;
      out.set(p.kind, ns);
    }
    return out;
  }

  /** Each worker's slots as this gateway sees them: GET /v2/models/{m}/batching. */
  placements(now = performance.now()): readonly PlacementView[] {
    const fresh = now - REPORT_TTL_MS;
    return this.#placements.map((p) => ({
      worker: p.worker.endpoint.id,
      instances: p.instances,
      kind: p.kind,
      slots: p.capacity,
      busy: p.busy,
      sent: p.sent,
      othersReported: p.reportedAt >= fresh ? p.others : undefined,
      othersNs: p.reportedAt >= fresh && !Number.isNaN(p.othersNs) ? othersWaitNs(p, now) : undefined,
      execNs: Number.isNaN(p.execNs) ? undefined : p.execNs,
      computeRatio: Number.isNaN(p.ratio) ? undefined : p.ratio,
    }));
  }

  /**
   * How the version's scheduler expects an execution of so many rows to take
   * on instances of a kind (that kind's cost model's compute; undefined while
   * it cannot say): each worker's timings are kept relative to its kind's,
   * and a choice given the rows weighs each worker at that size.
   */
  expectBy(estimate: (rows: number, kind: string) => number | undefined): void {
    this.#expectedNs = estimate;
  }

  /**
   * The expected compute of `rows` rows on `p`'s kind, for timing an
   * execution there against it; undefined while it cannot say, and while the
   * version has one worker (no choice to weigh with it, and each call after
   * an execution rebuilds the model's points).
   */
  expectedNs(rows: number, p: Placement): number | undefined {
    return this.#placements.length < 2 ? undefined : this.#expectedNs(rows, p.kind);
  }

  /**
   * A slot for a retry: one free now, else the next one freed (ahead of the
   * schedulers, which can wait: their requests are not running yet); else
   * why not. The reason is the wait's own, not the clock read afterwards
   * (a timer may fire a millisecond before Date.now() reaches the deadline).
   */
  acquireOrWait(exclude: ReadonlySet<string>, deadline: number): Promise<Placement | NoSlot> {
    const now = this.acquire(exclude);
    if (now) return Promise.resolve(now);
    if (!this.#placements.some((p) => !exclude.has(p.worker.endpoint.id))) return Promise.resolve('no-worker');
    if (deadline <= Date.now()) return Promise.resolve('deadline');
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        exclude,
        resolve: (placement) => {
          if (timer) clearTimeout(timer);
          resolve(placement);
        },
      };
      if (Number.isFinite(deadline)) timer = setTimeout(() => this.#settle(waiter, 'deadline'), Math.max(0, deadline - Date.now()));
      this.#waiters.push(waiter);
    });
  }

  release(placement: Placement): void {
    placement.busy = Math.max(0, placement.busy - 1);
    this.#serveWaiters();
    this.#notify();
  }

  #serveWaiters(): void {
    for (const w of [...this.#waiters]) {
      const placement = this.acquire(w.exclude);
      if (placement) this.#settle(w, placement);
    }
  }

  #settle(waiter: Waiter, placement: Placement | NoSlot): void {
    const i = this.#waiters.indexOf(waiter);
    if (i < 0) return;
    this.#waiters.splice(i, 1);
    waiter.resolve(placement);
  }

  /** Called whenever a slot may have become free. */
  onFree(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(): void {
    for (const l of this.#listeners) l();
  }
}
