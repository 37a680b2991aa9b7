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
  busy: number;
  /**
   * Executions of this version other gateways had on the worker at its last
   * answer (its reported load less ours), and when (performance.now()).
   */
  others: number;
  reportedAt: number;
}

/** A worker's load report older than this says nothing about now. */
export const REPORT_TTL_MS = 1_000;

/** The worker answered while holding `outstanding` executions of the version, from every gateway. */
export function noteReport(p: Placement, outstanding: number | undefined, now = performance.now()): void {
  if (outstanding === undefined) return;
  // Ours are those still out (this answer's slot is free already).
  p.others = Math.max(0, outstanding - p.busy);
  p.reportedAt = now;
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

  add(worker: WorkerLink, instances: number): void {
    this.remove(worker.endpoint.id);
    const aheadLimit = worker.endpoint.maxAheadPerInstance ?? EXECUTIONS_AHEAD_PER_INSTANCE;
    this.#placements.push({ worker, capacity: executionSlots(instances, Math.min(this.#ahead, aheadLimit)), aheadLimit, instances, busy: 0, others: 0, reportedAt: -Infinity });
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
    // A waiter that no remaining worker can serve gets its answer now.
    for (const w of [...this.#waiters]) {
      if (!this.#placements.some((p) => !w.exclude.has(p.worker.endpoint.id))) this.#settle(w, 'no-worker');
    }
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
   * Takes a slot on the placement with the least outstanding work relative
   * to its size, skipping `exclude`d workers; undefined when none is free.
   * Outstanding work is ours plus what the worker last reported of other
   * gateways' (within REPORT_TTL_MS): gateways sharing workers then spread
   * over them instead of all picking the one each sees idle.
   */
  acquire(exclude?: ReadonlySet<string>): Placement | undefined {
    let best: Placement | undefined;
    let bestLoad = Infinity;
    const fresh = performance.now() - REPORT_TTL_MS;
    for (const p of this.#placements) {
      if (p.busy >= p.capacity || exclude?.has(p.worker.endpoint.id)) continue;
      const load = (p.busy + (p.reportedAt >= fresh ? p.others : 0)) / p.capacity;
      if (load < bestLoad) {
        best = p;
        bestLoad = load;
      }
    }
    if (best) best.busy += 1;
    return best;
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
