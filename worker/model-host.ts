import { EXECUTIONS_AHEAD_PER_INSTANCE } from '../core/pipelining.js';
import { WorkerErrors, messageOf } from './errors.js';
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

export interface HostLogger {
  debug(details: object, message: string): void;
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface LoadSpec {
  readonly modelKey: string;
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
}

interface Slot {
  readonly instance: ModelInstance;
  /** Runs handed to the instance's thread (at most THREAD_PIPELINE_DEPTH). */
  running: number;
}

class LoadedModel {
  inFlight = 0;
  #drained: (() => void) | undefined;
  /** Executions waiting for an instance, oldest first; each gets a slot handed over. */
  readonly #waiting: Array<(slot: Slot) => void> = [];

  constructor(
    readonly key: string,
    readonly info: SessionInfo,
    readonly slots: readonly Slot[],
    /** Executions that may wait for an instance, per instance. */
    readonly queuedPerInstance: number,
  ) {}

  /**
   * An instance to run on now (an idle one first, else one whose thread can
   * take the next run early), a promise of one, or undefined when the model
   * has `instances × (1 + queuedPerInstance)` executions already.
   */
  takeSlot(): Slot | Promise<Slot> | undefined {
    if (this.inFlight >= this.slots.length * (1 + this.queuedPerInstance)) return undefined;
    let best: Slot | undefined;
    for (const s of this.slots) if (s.running < THREAD_PIPELINE_DEPTH && (best === undefined || s.running < best.running)) best = s;
    if (best) {
      best.running++;
      return best;
    }
    return new Promise<Slot>((resolve) => this.#waiting.push(resolve));
  }

  /** A run ended: its place in the thread goes to the oldest waiting execution. */
  giveBack(slot: Slot): void {
    slot.running--;
    const next = this.#waiting.shift();
    if (next) {
      slot.running++;
      next(slot);
    }
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

  load(spec: LoadSpec): Promise<SessionInfo> {
    return this.#serialized(spec.modelKey, () => this.#load(spec));
  }

  /**
   * Once earlier loads/unloads of the key are done, removes it (new Execute
   * calls get NOT_FOUND), waits for its in-flight runs, then frees it.
   */
  unload(key: string): Promise<void> {
    return this.#serialized(key, async () => {
      const model = this.#get(key);
      this.#models.delete(key);
      await this.#retire(model);
    });
  }

  /**
   * Runs a batch on a free instance, or after the executions queued before
   * it. Rejects at once with RESOURCE_EXHAUSTED when the instances and their
   * queue are full, NOT_FOUND for an unknown key, INTERNAL when ORT fails.
   */
  async execute(key: string, task: BatchTask, transfer: readonly ArrayBuffer[]): Promise<BatchOutput> {
    const model = this.#get(key);
    const taken = model.takeSlot();
    if (taken === undefined) throw WorkerErrors.allInstancesBusy(key, model.slots.length, model.queuedPerInstance);
    model.inFlight++;
    let slot: Slot | undefined;
    try {
      slot = await taken;
      return await slot.instance.run(task, transfer);
    } catch (error) {
      throw WorkerErrors.runFailed(key, messageOf(error), error);
    } finally {
      if (slot) model.giveBack(slot);
      model.runFinished();
    }
  }

  status(): ModelStatusInfo[] {
    return [...this.#models.values()].map((m) => ({
      modelKey: m.key,
      instanceCount: m.slots.length,
      busyInstances: m.slots.filter((s) => s.running > 0).length,
      executionProvider: m.info.executionProvider,
    }));
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

  async #load(spec: LoadSpec): Promise<SessionInfo> {
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
      instances.map((instance) => ({ instance, running: 0 })),
      this.#options.queuedPerInstance ?? EXECUTIONS_AHEAD_PER_INSTANCE,
    );
    const previous = this.#models.get(key);
    this.#models.set(key, model);
    // Debug: the gateway logs each model it loads; a worker may load thousands.
    this.#options.logger.debug(
      { modelKey: key, instances: instanceCount, intraOpNumThreads, provider: info.executionProvider, replaced: previous !== undefined },
      'model loaded',
    );
    if (info.fallbackReason !== '') {
      this.#options.logger.warn({ modelKey: key, reason: info.fallbackReason }, 'GPU requested, running on CPU');
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

/** All instances share the metadata; providers can differ if one CUDA init failed. */
function combinedInfo(infos: readonly SessionInfo[]): SessionInfo {
  const [first] = infos;
  if (first === undefined) throw new Error('a model needs at least one instance');
  const providers = [...new Set(infos.map((i) => i.executionProvider))];
  const fallbackReason = infos.find((i) => i.fallbackReason !== '')?.fallbackReason ?? '';
  return { ...first, executionProvider: providers.join(','), fallbackReason };
}
