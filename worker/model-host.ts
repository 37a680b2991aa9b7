import { EXECUTIONS_AHEAD_PER_INSTANCE } from '../core/pipelining.js';
import { Backlog } from './backlog.js';
import { WorkerErrors, messageOf } from './errors.js';
import { compatible, concatTasks, mergeable, type OutputTensor, rowsOf, splitOutputs } from './merge-batches.js';
import { type ModelInstance, type StartInstances, THREAD_PIPELINE_DEPTH } from './model-instance.js';
import {
  type BatchOutput,
  type BatchTask,
  type DeviceRequest,
  type SessionInfo,
  type ThreadInit,
  type ThreadSessionOptions,
} from './thread-protocol.js';

// The models loaded in this worker, by model key, each with N instances
// (sessions on N distinct threads of the worker's ORT pool, ort-pool.ts).
//
// Capacity is enforced here, by the callee: Execute takes an idle instance,
// or goes to a busy instance's thread as its next run (THREAD_PIPELINE_DEPTH),
// or waits in a short FIFO; in all, `instances × (1 + queuedPerInstance)`
// executions (EXECUTIONS_AHEAD_PER_INSTANCE = 1 by default, so the next
// batch is ready when a run ends). Beyond that it fails at once with
// RESOURCE_EXHAUSTED. The gateway tracks the same slots and never sends more
// than that, so a rejection means its accounting drifted.
//
// Load of a key that is already loaded replaces it: the new instances open
// while the old ones keep serving, then the key switches over, and the old
// instances are closed once their in-flight runs finish. If the new load
// fails, the old model stays. Loads and unloads of one key run one at a time.
//
// Shared loads (several gateway processes on one worker): each load and
// unload names its owner (a gateway connection; 0 = the worker itself). A
// load of a loaded key with the identical spec from an owner that did not
// load these instances itself adds a reference instead of replacing them
// (so when one gateway reloads a model and the others follow, it reloads once); an unload drops the owner's reference
// and unloads only when none is left; a closed connection drops its
// references (`release`). With one gateway there is one owner, and every
// load and unload behaves as before.
//
// Merging: when executions wait for an instance and one is handed a free
// place, the compatible ones waiting behind it (same inputs, datatypes and
// dims after dim 0; at most max_batch_size rows together) run with it as one
// ONNX Runtime run, and each gets its rows of the outputs (merge-batches.ts).

export interface HostLogger {
  debug(details: object, message: string): void;
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface LoadSpec {
  readonly modelKey: string;
  /** The model's max_batch_size; > 1 lets waiting executions merge into one run (0 or absent: never). */
  readonly maxBatchSize?: number;
  readonly model: ThreadInit['model'];
  readonly instanceCount: number;
  readonly device: DeviceRequest;
  /** intraOpNumThreads undefined: max(1, floor(cores / instances in this worker)). */
  readonly options: Omit<ThreadSessionOptions, 'intraOpNumThreads'> & { readonly intraOpNumThreads?: number | undefined };
}

export interface ModelStatusInfo {
  readonly modelKey: string;
  readonly instanceCount: number;
  readonly busyInstances: number;
  readonly executionProvider: string;
  /** Runs since the model loaded; those that merged several executions (see RunCounters). */
  readonly runs: bigint;
  readonly mergedRuns: bigint;
  readonly mergedCalls: bigint;
  readonly crossConnectionRuns: bigint;
  readonly maxMergedRows: number;
  readonly maxCrossConnectionRows: number;
  /** Owners holding a reference (gateway connections, and the worker itself for its own repository). */
  readonly connections: number;
}

/** What a run answers to one execution: its own outputs (views of a merged run's buffers when it was merged). */
export interface ExecuteOutput {
  readonly outputs: readonly OutputTensor[];
  readonly taskStartNs: bigint;
  readonly runStartNs: bigint;
  readonly runEndNs: bigint;
}

interface Slot {
  readonly instance: ModelInstance;
  /** Runs handed to the instance's thread (at most THREAD_PIPELINE_DEPTH). */
  running: number;
  /** When the run the thread is on began (nowNs), while `running` > 0: the load report's backlog. */
  sinceNs: number;
}

/** An execution waiting for an instance. */
interface Waiter {
  readonly task: BatchTask;
  readonly owner: number;
  /** Rows (dim 0), or -1 when it cannot merge. */
  readonly rows: number;
  /** Its turn: a place to run on (with the executions merged into its run), or its answer from another's run. */
  grant(turn: Turn): void;
  fail(error: unknown): void;
}

type Turn = { readonly slot: Slot; readonly followers: readonly Waiter[] } | ExecuteOutput;

const NO_FOLLOWERS: readonly Waiter[] = [];

/** Monotonic ns as a number, without a BigInt per reading (the backlog needs µs, not ns). */
const nowNs = (): number => performance.now() * 1e6;

/** The rows an execution is estimated by: its batch's, for a batching model; 1 for the rest (one size). */
function rowsForCost(model: LoadedModel, task: BatchTask): number {
  return (model.spec.maxBatchSize ?? 0) > 0 ? Math.max(1, rowsOf(task)) : 1;
}

/** Counters of a model's runs (Status); numbers, since a bigint increment allocates on every run. */
class RunCounters {
  runs = 0;
  mergedRuns = 0;
  mergedCalls = 0;
  crossConnectionRuns = 0;
  maxMergedRows = 0;
  maxCrossConnectionRows = 0;
}

class LoadedModel {
  inFlight = 0;
  /** The executions held, in expected time: the load report's `backlogNs`. */
  readonly backlog = new Backlog();
  #drained: (() => void) | undefined;
  /** Executions waiting for an instance, oldest first; each gets a slot handed over. */
  readonly #waiting: Waiter[] = [];
  readonly counters = new RunCounters();
  /** Owners (gateway connections; 0 = the worker) holding a reference. */
  readonly owners = new Set<number>();
  /**
   * Owners that sent a load for these very instances (not those that inherited
   * them from the model these replaced): a load from one of them reloads, a
   * load with the same spec from any other owner shares.
   */
  readonly loadedBy = new Set<number>();
  /** max_batch_size when runs may merge, else 0. */
  readonly mergeRows: number;
  /** Runs handed to an instance's thread at once (THREAD_PIPELINE_DEPTH, or 1 to merge what waits meanwhile). */
  readonly threadDepth: number;

  constructor(
    readonly key: string,
    readonly info: SessionInfo,
    readonly slots: readonly Slot[],
    /** Executions that may wait for an instance, per instance. */
    readonly queuedPerInstance: number,
    readonly spec: LoadSpec,
    mergeBeforePipelining: boolean,
  ) {
    const max = spec.maxBatchSize ?? 0;
    this.mergeRows = mergeable(info, max) ? max : 0;
    this.threadDepth = mergeBeforePipelining && this.mergeRows > 0 ? 1 : THREAD_PIPELINE_DEPTH;
  }

  /**
   * An instance to run on now (an idle one first, else one whose thread can
   * take the next run early), a promise of a turn, or undefined when the model
   * has `instances × (1 + queuedPerInstance)` executions already.
   */
  takeSlot(task: BatchTask, owner: number): Slot | Promise<Turn> | undefined {
    if (this.inFlight >= this.slots.length * (1 + this.queuedPerInstance)) return undefined;
    let best: Slot | undefined;
    for (const s of this.slots) if (s.running < this.threadDepth && (best === undefined || s.running < best.running)) best = s;
    if (best) {
      if (best.running++ === 0) best.sinceNs = nowNs();
      return best;
    }
    const rows = this.mergeRows > 0 ? rowsOf(task) : -1;
    return new Promise<Turn>((grant, fail) => this.#waiting.push({ task, owner, rows, grant, fail }));
  }

  /** A run ended: its place in the thread goes to the oldest waiting execution, with those that merge into its run. */
  giveBack(slot: Slot): void {
    slot.running--;
    const next = this.#waiting.shift();
    if (next) {
      slot.running++;
      next.grant({ slot, followers: this.#followersOf(next) });
    }
    // The thread goes on to the run handed to it next (pipelined, or just granted).
    if (slot.running > 0) slot.sinceNs = nowNs();
  }

  /** Expected ns a new execution waits here for an instance (see Backlog); undefined before the model's runs are timed. */
  backlogNs(): number | undefined {
    const now = nowNs();
    let running = 0;
    for (const s of this.slots) if (s.running > 0) running += now - s.sinceNs;
    return this.backlog.waitNs(running, this.slots.length);
  }

  /** The waiting executions that run with `leader` (taken out of the queue), oldest first, within max_batch_size rows. */
  #followersOf(leader: Waiter): readonly Waiter[] {
    if (leader.rows < 0 || this.#waiting.length === 0) return NO_FOLLOWERS;
    let rows = leader.rows;
    let followers: Waiter[] | undefined;
    for (let i = 0; i < this.#waiting.length && rows < this.mergeRows; ) {
      const w = this.#waiting[i] as Waiter;
      if (w.rows >= 0 && rows + w.rows <= this.mergeRows && compatible(leader.task, w.task)) {
        (followers ??= []).push(w);
        rows += w.rows;
        this.#waiting.splice(i, 1);
      } else i++;
    }
    return followers ?? NO_FOLLOWERS;
  }

  /** Resolves when no run is in flight; call after the model left the map. */
  drain(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#drained = resolve;
    });
  }

  runFinished(): void {
    this.inFlight--;
    if (this.inFlight === 0) this.#drained?.();
  }
}

export interface ModelHostOptions {
  readonly startInstances: StartInstances;
  /** CPU cores to share between instances (default intra-op thread count). */
  readonly cores: number;
  readonly logger: HostLogger;
  /**
   * Executions that may wait per instance (default EXECUTIONS_AHEAD_PER_INSTANCE,
   * what one gateway sends). A worker shared by several gateways through the
   * registry gets work from each, so it takes a deeper queue.
   */
  readonly queuedPerInstance?: number;
  /**
   * Several gateways send to this worker (--local-gateways N > 1): a model that
   * can merge gets one run at a time per instance thread instead of
   * THREAD_PIPELINE_DEPTH, so the executions arriving during a run wait here
   * and merge into the next one (one larger run instead of one per gateway),
   * at the cost of the hand-over between runs.
   */
  readonly mergeBeforePipelining?: boolean;
}

export class ModelHost {
  readonly #models = new Map<string, LoadedModel>();
  /** Tail of the load/unload chain per key. */
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #options: ModelHostOptions;

  constructor(options: ModelHostOptions) {
    this.#options = options;
  }

  /** The model's metadata; NOT_FOUND when the key is not loaded. */
  info(key: string): SessionInfo {
    return this.#get(key).info;
  }

  /**
   * Loads (or replaces) the model for `owner`. A model already loaded with
   * the identical spec by another owner is shared: `owner` takes a reference.
   */
  load(spec: LoadSpec, owner = 0): Promise<SessionInfo> {
    return this.#serialized(spec.modelKey, () => {
      const loaded = this.#models.get(spec.modelKey);
      if (loaded !== undefined && !loaded.loadedBy.has(owner) && loaded.owners.size > 0 && sameSpec(loaded.spec, spec)) {
        loaded.owners.add(owner);
        loaded.loadedBy.add(owner);
        this.#options.logger.debug({ modelKey: spec.modelKey, owners: loaded.owners.size }, 'model shared with another gateway connection');
        return Promise.resolve(loaded.info);
      }
      return this.#load(spec, owner);
    });
  }

  /**
   * Once earlier loads/unloads of the key are done, drops `owner`'s reference
   * (undefined: every reference); when none is left, removes it (new Execute
   * calls get NOT_FOUND), waits for its in-flight runs, then frees it.
   */
  unload(key: string, owner?: number): Promise<void> {
    return this.#serialized(key, async () => {
      const model = this.#get(key);
      if (owner !== undefined) {
        model.owners.delete(owner);
        model.loadedBy.delete(owner);
        if (model.owners.size > 0) return;
      }
      this.#models.delete(key);
      await this.#retire(model);
    });
  }

  /**
   * Runs a batch on a free instance, or after the executions queued before
   * it. Rejects at once with RESOURCE_EXHAUSTED when the instances and their
   * queue are full, NOT_FOUND for an unknown key, INTERNAL when ORT fails.
   */
  async execute(key: string, task: BatchTask, transfer: readonly ArrayBuffer[], owner = 0): Promise<BatchOutput | ExecuteOutput> {
    const model = this.#get(key);
    const taken = model.takeSlot(task, owner);
    if (taken === undefined) throw WorkerErrors.allInstancesBusy(key, model.slots.length, model.queuedPerInstance);
    model.inFlight++;
    const rows = rowsForCost(model, task);
    const estimateNs = model.backlog.arrive(rows);
    let slot: Slot | undefined;
    try {
      let followers = NO_FOLLOWERS;
      if (taken instanceof Promise) {
        const turn = await taken;
        if (!('slot' in turn)) return turn; // answered from another execution's run
        slot = turn.slot;
        followers = turn.followers;
      } else slot = taken;
      model.counters.runs++;
      if (followers.length > 0) return await this.#runMerged(model, slot, { task, owner }, followers);
      const output = await slot.instance.run(task, transfer);
      model.backlog.ran(rows, Number(output.runEndNs - output.taskStartNs));
      return output;
    } catch (error) {
      throw WorkerErrors.runFailed(key, messageOf(error), error);
    } finally {
      model.backlog.leave(estimateNs);
      if (slot) model.giveBack(slot);
      model.runFinished();
    }
  }

  /** One run for the leader and its followers; each follower gets its rows (or the run's error), the leader its own. */
  async #runMerged(model: LoadedModel, slot: Slot, leader: { task: BatchTask; owner: number }, followers: readonly Waiter[]): Promise<ExecuteOutput> {
    const tasks = [leader.task, ...followers.map((f) => f.task)];
    const rows = tasks.map(rowsOf);
    let result: BatchOutput;
    try {
      const merged = concatTasks(tasks);
      result = await slot.instance.run(merged.task, merged.transfer);
    } catch (error) {
      for (const f of followers) f.fail(error);
      throw error;
    }
    const parts = splitOutputs(result.outputs, rows);
    if (typeof parts === 'string') {
      const error = new Error(`a merged run of ${tasks.length} executions cannot be split: ${parts}`);
      for (const f of followers) f.fail(error);
      throw error;
    }
    const c = model.counters;
    const total = rows.reduce((a, b) => a + b, 0);
    model.backlog.ran(total, Number(result.runEndNs - result.taskStartNs));
    c.mergedRuns++;
    c.mergedCalls += tasks.length;
    if (total > c.maxMergedRows) c.maxMergedRows = total;
    if (followers.some((f) => f.owner !== leader.owner)) {
      c.crossConnectionRuns++;
      if (total > c.maxCrossConnectionRows) c.maxCrossConnectionRows = total;
    }
    const times = { taskStartNs: result.taskStartNs, runStartNs: result.runStartNs, runEndNs: result.runEndNs };
    followers.forEach((f, i) => f.grant({ outputs: parts[i + 1] as OutputTensor[], ...times }));
    return { outputs: parts[0] as OutputTensor[], ...times };
  }

  /** Executions of `key` running or waiting for an instance, from every connection (0 when not loaded). */
  outstanding(key: string): number {
    return this.#models.get(key)?.inFlight ?? 0;
  }

  /** Expected ns a new execution of `key` would wait for an instance (undefined: not loaded, or no run timed yet). */
  backlogNs(key: string): number | undefined {
    return this.#models.get(key)?.backlogNs();
  }

  status(): ModelStatusInfo[] {
    return [...this.#models.values()].map((m) => ({
      modelKey: m.key,
      instanceCount: m.slots.length,
      busyInstances: m.slots.filter((s) => s.running > 0).length,
      executionProvider: m.info.executionProvider,
      runs: BigInt(m.counters.runs),
      mergedRuns: BigInt(m.counters.mergedRuns),
      mergedCalls: BigInt(m.counters.mergedCalls),
      crossConnectionRuns: BigInt(m.counters.crossConnectionRuns),
      maxMergedRows: m.counters.maxMergedRows,
      maxCrossConnectionRows: m.counters.maxCrossConnectionRows,
      connections: m.owners.size,
    }));
  }

  /**
   * A gateway connection closed: its references are dropped. With
   * `unloadUnowned`, a model no one holds any more is unloaded (several
   * gateways share this worker, and the last one that held it is gone).
   */
  release(owner: number, unloadUnowned: boolean): Promise<void> {
    const left: string[] = [];
    for (const m of this.#models.values()) {
      m.loadedBy.delete(owner);
      if (m.owners.delete(owner) && m.owners.size === 0) left.push(m.key);
    }
    if (!unloadUnowned) return Promise.resolve();
    return Promise.all(
      left.map((key) =>
        this.#serialized(key, async () => {
          const model = this.#models.get(key);
          if (model === undefined || model.owners.size > 0) return;
          this.#models.delete(key);
          this.#options.logger.debug({ modelKey: key }, 'model unloaded: the last gateway connection holding it closed');
          await this.#retire(model);
        }).catch(() => undefined),
      ),
    ).then(() => undefined);
  }

  /** Unloads everything (shutdown): waits for in-flight runs first. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#models.keys()].map((key) => this.unload(key).catch(() => undefined)));
  }

  #get(key: string): LoadedModel {
    const model = this.#models.get(key);
    if (model === undefined) throw WorkerErrors.modelNotLoaded(key);
    return model;
  }

  async #load(spec: LoadSpec, owner: number): Promise<SessionInfo> {
    const { modelKey: key, instanceCount } = spec;
    const intraOpNumThreads = spec.options.intraOpNumThreads ?? this.#defaultIntraOpThreads(key, instanceCount);
    const options: ThreadSessionOptions = { ...spec.options, intraOpNumThreads };
    const onThreadError = (error: unknown): void =>
      this.#options.logger.warn({ modelKey: key, err: messageOf(error) }, 'ORT thread error outside a task');
    const started = await Promise.allSettled(
      this.#options.startInstances(
        Array.from({ length: instanceCount }, (_, i) => ({ label: `${key}#${i}`, model: spec.model, device: spec.device, options })),
      ),
    );
    const instances = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failure = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure !== undefined) {
      await Promise.all(instances.map((i) => i.close().catch(onThreadError)));
      throw WorkerErrors.loadFailed(key, messageOf(failure.reason), failure.reason);
    }
    const info = combinedInfo(instances.map((i) => i.info));
    const model = new LoadedModel(
      key,
      info,
      instances.map((instance) => ({ instance, running: 0, sinceNs: 0 })),
      this.#options.queuedPerInstance ?? EXECUTIONS_AHEAD_PER_INSTANCE,
      spec,
      this.#options.mergeBeforePipelining === true,
    );
    const previous = this.#models.get(key);
    // A replacement serves every owner of the model it replaces.
    if (previous !== undefined) for (const o of previous.owners) model.owners.add(o);
    model.owners.add(owner);
    model.loadedBy.add(owner);
    this.#models.set(key, model);
    // Debug: the gateway logs each model it loads; a worker may load thousands.
    this.#options.logger.debug(
      { modelKey: key, instances: instanceCount, intraOpNumThreads, provider: info.executionProvider, replaced: previous !== undefined },
      'model loaded',
    );
    if (info.fallbackReason !== '') {
      this.#options.logger.warn({ modelKey: key, reason: info.fallbackReason }, 'GPU requested, running on CPU');
    } else if (info.passedOver !== undefined) {
      // CUDA installed but failing (a driver too old for its libraries, say) would otherwise go unnoticed on WebGPU.
      this.#options.logger.warn({ modelKey: key, provider: info.executionProvider, reason: info.passedOver }, 'GPU provider passed over');
    }
    if (previous !== undefined) await this.#retire(previous);
    return info;
  }

  async #retire(model: LoadedModel): Promise<void> {
    await model.drain();
    await Promise.all(model.slots.map((s) => s.instance.close()));
    this.#options.logger.debug({ modelKey: model.key }, 'model instances closed');
  }

  /** cores / (instances of the other loaded models + these), at least 1. */
  #defaultIntraOpThreads(key: string, instanceCount: number): number {
    let total = instanceCount;
    for (const [k, m] of this.#models) if (k !== key) total += m.slots.length;
    return Math.max(1, Math.floor(this.#options.cores / total));
  }

  #serialized<T>(key: string, action: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(key) ?? Promise.resolve();
    const next = previous.then(action, action);
    const tail = next.catch(() => undefined);
    this.#locks.set(key, tail);
    void tail.then(() => {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    });
    return next;
  }
}

/** The same model, instances, device, session options and max_batch_size: a load another owner can share. */
function sameSpec(a: LoadSpec, b: LoadSpec): boolean {
  if (a.instanceCount !== b.instanceCount || (a.maxBatchSize ?? 0) !== (b.maxBatchSize ?? 0)) return false;
  if (a.device.kind !== b.device.kind || (a.device.kind === 'gpu' && b.device.kind === 'gpu' && a.device.deviceId !== b.device.deviceId)) return false;
  const am = a.model;
  const bm = b.model;
  if ('path' in am) {
    if (!('path' in bm) || am.path !== bm.path) return false;
  } else if (!('bytes' in bm) || !Buffer.from(am.bytes.buffer, am.bytes.byteOffset, am.bytes.byteLength).equals(bm.bytes)) return false;
  const ao = a.options;
  const bo = b.options;
  return (
    ao.intraOpNumThreads === bo.intraOpNumThreads &&
    ao.interOpNumThreads === bo.interOpNumThreads &&
    ao.graphOptimizationLevel === bo.graphOptimizationLevel &&
    ao.enableCpuMemArena === bo.enableCpuMemArena &&
    ao.executionMode === bo.executionMode &&
    ao.enableMemPattern === bo.enableMemPattern
  );
}

/** All instances share the metadata; providers can differ if one CUDA init failed. */
function combinedInfo(infos: readonly SessionInfo[]): SessionInfo {
  const [first] = infos;
  if (first === undefined) throw new Error('a model needs at least one instance');
  const providers = [...new Set(infos.map((i) => i.executionProvider))];
  const fallbackReason = infos.find((i) => i.fallbackReason !== '')?.fallbackReason ?? '';
  return { ...first, executionProvider: providers.join(','), fallbackReason };
}
