import { type Logger } from 'pino';
import { failedPrecondition, invalidArgument, notFound, unavailable } from '../../core/errors.js';
import { type CancelSignal } from '../../core/cancellation.js';
import { instanceKindOf } from '../../core/kind-costs.js';
import { completeConfig } from '../../models/config/complete.js';
import { batchesRequests, ConfigError, dynamicBatchingIn, ensembleIn, sequenceBatchingIn } from '../../models/config/model-config.js';
import { type ModelSignature } from '../../core/signature.js';
import { type ModelConfig } from '../../proto/gen/model_config.js';
import { EnsembleScheduler } from '../ensemble/ensemble-scheduler.js';
import { ensembleSignature, planEnsemble } from '../ensemble/ensemble-plan.js';
import { onnxRuntimeOptions } from '../../models/config/onnxruntime-options.js';
import { ENSEMBLE_PLATFORM, type ModelEntry, scanRepository } from '../../models/repository/scan.js';
import { type HostedModel } from '../../core/worker-record.js';
import { type LoadModelResponse, type TensorSpec } from '../../proto/gen/worker.js';
import { DynamicBatcher } from '../batching/dynamic-batcher.js';
import { batchingPolicyFromConfig } from '../batching/policy.js';
import { batchingSloMs, withBatchingSlo } from '../batching/slo-config.js';
import { Dispatcher } from '../scheduling/dispatcher.js';
import { DirectScheduler } from '../scheduling/direct-scheduler.js';
import { type Scheduler } from '../scheduling/execution.js';
import { type SequenceProcesses, SequenceScheduler } from '../scheduling/sequence-scheduler.js';
import { initialStates, sequenceBatchingPolicy } from '../scheduling/sequence-states.js';
import { InstanceSlots } from '../scheduling/instance-slots.js';
import { isWorkerLost } from '../scheduling/worker-connection.js';
import { type WorkerLink } from '../scheduling/worker-link.js';
import { type ResponseCache } from '../cache/response-cache.js';
import { NO_LABELS, type OutputLabels, readLabels } from '../inference/classification.js';
import { type MetricsRegistry } from '../metrics/registry.js';
import { ModelVersionStatistics } from '../stats/model-statistics.js';
import { drainScheduler, type LoadParameters, prepareLoad, removeUpload, type UnloadParameters, versionsOf } from './model-loader.js';
import { type ModelVersion } from './model-version.js';
import { planInstances, type WorkerPlan } from '../../models/repository/placement.js';
import { loadsAtStart, type ModelControl } from './control-mode.js';
import { withDependents, withSteps } from './ensemble-dependencies.js';
import { type PolledModels } from './repository-poller.js';
import { runWarmup, warmupNeedsFiles, warmupSamples } from './warmup.js';
import { entryFromRecord, sameConfig, versionFromRecord, withVersion } from '../registry/record-models.js';
import { totalmem } from 'node:os';
import { ModelBudgetMetrics, ModelLoadMetrics } from '../metrics/model-load-metrics.js';
import { defaultMemoryBudget } from './memory-budget.js';
import { type OnDemandCoordinator, OnDemandLoader, type Release } from './on-demand-loader.js';
import { type RepositoryChange } from '../cluster/messages.js';
import { type ModelStatistics } from '../../proto/gen/inference.js';
import { VERSION_TRAFFIC, VersionTraffic, type VersionWeight, versionTrafficOf } from './version-traffic.js';

export interface ModelManagerOptions {
  /** undefined: no repository of its own (--registry only); models come from the workers' records. */
  readonly repository: string | undefined;
  /** Several gateway processes: which keeps each sequence of a stateful model, and how to reach it. */
  readonly sequenceProcesses?: SequenceProcesses;
  readonly log: Logger;
  /** max_batch_size given to batchable models whose config does not set one. */
  readonly defaultMaxBatchSize: number;
  /** Bound of each model's request queue. */
  readonly maxQueueSize: number;
  /** --batching-slo-ms: the SLO-aware mode for dynamically batched models without their own `batching_slo_ms` (0 = off). */
  readonly batchingSloMs?: number;
  /** Prometheus metrics; every loaded version gets a sink. */
  readonly metrics?: MetricsRegistry;
  /** --model-control-mode (default none: everything loads at start, the repository API may change it). */
  readonly control?: ModelControl;
  /** On demand with several gateway processes: the host's budget, planned by the primary. */
  readonly onDemandCoordinator?: OnDemandCoordinator;
  /** The response cache (--cache-config); undefined = none, models with response_cache run uncached. */
  readonly responseCache?: ResponseCache;
}

/** Reason of a version that --model-control-mode explicit did not load at start. */
export const NOT_LOADED = 'not loaded (--model-control-mode explicit: load it through the repository API)';

/** Reason of a version --model-control-mode on-demand has not loaded (yet, or any more). */
export const NOT_LOADED_ON_DEMAND = 'not loaded (--model-control-mode on-demand: the first inference request loads it)';

/** Why an ensemble does not serve in on-demand mode. */
export const ENSEMBLE_ON_DEMAND =
  'ensembles are not served in --model-control-mode on-demand (their steps would be loaded and evicted one by one); use none, explicit or poll';

/** A version held for one request (on-demand mode): release it when the request is over. */
export interface HeldVersion {
  readonly version: ModelVersion;
  readonly release: Release;
}

const NO_RELEASE: Release = () => undefined;

/**
 * The model lifecycle of one gateway: scans the repository, loads each
 * selected version onto the workers its instance groups place it on,
 * completes its config from what ONNX Runtime reports, and answers "which
 * ready version serves this request". A model that fails is UNAVAILABLE
 * with the reason; the others still serve.
 */
/** Why a version waits: nothing hosts it yet (a remote worker joining makes it ready). */
const NO_WORKER = 'no worker is available to host it';

/** A worker from the registry: it loaded its models itself; the gateway only sends it batches. */
interface RemoteWorker {
  readonly connection: WorkerLink;
  /** key → what it hosts; empty while it drains. */
  readonly models: ReadonlyMap<string, HostedModel>;
}

export class ModelManager {
  readonly #options: ModelManagerOptions;
  /** Local workers: the gateway loads models onto them (placement). */
  readonly #workers = new Map<string, WorkerLink>();
  /** Registered remote workers: they serve what they loaded. */
  readonly #remote = new Map<string, RemoteWorker>();
  /** Keys remote workers offer that this repository lacks (warned once). */
  readonly #unknownRemoteKeys = new Set<string>();
  /** Without a repository: models whose workers publish differing configs (warned once). */
  readonly #configConflicts = new Set<string>();
  /** name → versions, in ascending version order. */
  readonly #models = new Map<string, ModelVersion[]>();
  readonly #entries = new Map<string, ModelEntry>();
  /** name → temp dir of uploaded files it serves from. */
  readonly #uploads = new Map<string, string>();
  /** name → tail of its load/unload chain: one at a time per name. */
  readonly #ops = new Map<string, Promise<unknown>>();
  /** Connections whose liveness check this manager follows. */
  readonly #watched = new WeakSet<WorkerLink>();
  /** Connections being probed after a failure (one probe loop each). */
  readonly #probing = new WeakSet<WorkerLink>();
  /**
   * Versions whose load failed because a local worker died or was killed
   * under it (not because of the model): loaded again when a worker joins.
   */
  readonly #lostLoads = new Set<ModelVersion>();
  /** Models with version_traffic: their weights (as text, to tell a change) and router. */
  readonly #traffic = new Map<string, { readonly key: string; readonly traffic: VersionTraffic }>();
  /** --model-control-mode on-demand: loads at first request, evicts under the budget. */
  readonly #onDemand: OnDemandLoader | undefined;
  /** Requests ended by versions since unloaded (their statistics went with them). */
  #retiredRequests = 0;
  /**
   * Models loaded only because an ensemble needed them (Triton's models not
   * "explicitly loaded"): unloading the ensemble with `unload_dependents`
   * unloads them too. An explicit load of one takes it out.
   */
  readonly #dependencyOnly = new Set<string>();
  /** The models an ensemble's steps name, by its config as last read. */
  readonly #stepsOf = (name: string): readonly string[] => stepModels(this.#entries.get(name)?.config);

  constructor(options: ModelManagerOptions) {
    this.#options = options;
    const control = options.control;
    if (control?.mode === 'on-demand') {
      const budget = control.budget ?? defaultMemoryBudget(totalmem(), 1);
      let loader: OnDemandLoader | undefined;
      const registry = options.metrics?.registry;
      const coordinator = options.onDemandCoordinator;
      loader = new OnDemandLoader({
        budget,
        log: options.log,
        ...(registry ? { metrics: new ModelLoadMetrics(registry) } : {}),
        // With a coordinator, the primary keeps the budget's metrics for the host.
        ...(registry && !coordinator ? { budgetMetrics: new ModelBudgetMetrics(registry, budget, () => loader?.usage() ?? []) } : {}),
        ...(coordinator ? { coordinator } : {}),
        host: {
          placement: (v) => planInstances(this.#entries.get(v.name)?.config?.instanceGroup ?? [], [...this.#workers.values()].map((w) => w.endpoint)).map((p) => p.workerId),
          load: (v) =>
            this.#oneAtATime(v.name, async () => {
              // The repository API may have replaced or loaded it while this waited its turn.
              if (v.state === 'READY' || this.#models.get(v.name)?.includes(v) !== true) return;
              await this.#load(v, 'debug');
            }),
          evict: (v) =>
            this.#oneAtATime(v.name, async () => {
              if (v.state !== 'READY') return;
              await this.#retire(v, false);
              v.reason = NOT_LOADED_ON_DEMAND;
            }),
        },
      });
      this.#onDemand = loader;
    }
  }

  /** In on-demand mode: the budget per worker; undefined in the other modes. */
  get onDemand(): OnDemandLoader | undefined {
    return this.#onDemand;
  }

  /**
   * On-demand mode: the version that serves (name, version), loaded first
   * if it is not, and held (never evicted) until `release`. The request's
   * signal ends its wait for a load, not the load.
   */
  acquire(name: string, version: string, context: { readonly signal: CancelSignal; readonly deadline: number }): HeldVersion | Promise<HeldVersion> {
    const loader = this.#onDemand;
    if (!loader) return { version: this.resolve(name, version), release: NO_RELEASE };
    const versions = this.#models.get(name);
    if (!versions) throw notFound(`model '${name}' is not in the repository`);
    let chosen: ModelVersion | undefined;
    if (version === '') {
      chosen = [...versions].reverse().find((v) => v.state === 'READY') ?? versions[versions.length - 1];
    } else if (/^\d+$/.test(version)) {
      chosen = versions.find((v) => v.version === Number(version));
    }
    if (!chosen) throw notFound(`model '${name}' has no version '${version}'`);
    if (chosen.state !== 'READY') {
      if (this.#isEnsemble(name)) throw unavailable(`model '${name}': ${ENSEMBLE_ON_DEMAND}`);
      if (this.#entries.get(name)?.error !== undefined || chosen.modelPath === '') {
        throw unavailable(`model '${chosen.key}' is ${chosen.state}${chosen.reason ? `: ${chosen.reason}` : ''}`);
      }
    }
    const v = chosen;
    const held = loader.acquire(v, context.signal, context.deadline);
    // A loaded model is held without a promise: this is per request.
    return typeof held === 'function' ? { version: v, release: held } : held.then((release) => ({ version: v, release }));
  }

  /**
   * On demand, metadata and config of a model not loaded come from its
   * load (clients such as perf_analyzer ask for metadata before the first
   * request): this loads it as a request would. Nothing in the other modes.
   */
  async loadForQuery(name: string, version: string, context: { readonly signal: CancelSignal; readonly deadline: number }): Promise<void> {
    if (!this.#onDemand) return;
    (await this.acquire(name, version, context)).release();
  }

  /** False for a gateway started with --registry and no --model-repository. */
  get hasRepository(): boolean {
    return this.#options.repository !== undefined;
  }

  /** The server's response cache, for the inference pipeline. */
  get responseCache(): ResponseCache | undefined {
    return this.#options.responseCache;
  }

  /** Reads the repository; throws when the repository itself is unusable. */
  async scan(): Promise<void> {
    if (this.#options.repository === undefined) return;
    const scan = await scanRepository(this.#options.repository);
    for (const entry of scan.models) {
      this.#entries.set(entry.name, entry);
      this.#entryTraffic(entry);
      for (const w of entry.warnings) this.#options.log.warn({ model: entry.name }, w);
      const versions = versionsOf(entry);
      this.#models.set(entry.name, versions);
      if (entry.error) this.#options.log.error({ model: entry.name, reason: entry.error }, 'model unavailable');
    }
  }

  /**
   * Loads every model that is not yet loaded (in explicit mode, those named
   * by --load-model); never throws for one model's failure. One summary line
   * at info (a repository may hold thousands of models; each one's line is at
   * debug, failures at error).
   */
  async loadAll(): Promise<void> {
    const started = Date.now();
    const control = this.#options.control ?? { mode: 'none' };
    const all = [...this.#models.values()].flat().filter((v) => v.state === 'UNKNOWN');
    // --load-model of an ensemble loads its steps too, as dependencies (Triton).
    const named = control.mode === 'explicit' && control.startup !== 'all' ? control.startup : undefined;
    const starting = named && new Set(withSteps(named, this.#stepsOf));
    for (const name of starting ?? []) if (!named?.has(name)) this.#dependencyOnly.add(name);
    for (const v of all) {
      if (starting ? starting.has(v.name) : loadsAtStart(control, v.name)) continue;
      v.state = 'UNAVAILABLE';
      v.reason = control.mode !== 'on-demand' ? NOT_LOADED : this.#isEnsemble(v.name) ? ENSEMBLE_ON_DEMAND : NOT_LOADED_ON_DEMAND;
    }
    if (control.mode === 'on-demand') {
      const budget = this.#onDemand?.budget;
      this.#options.log.info({ models: all.length, budget }, 'on-demand: no model loaded at start; each loads at its first inference request');
      return;
    }
    const pending = all.filter((v) => v.state === 'UNKNOWN');
    // Ensembles last: their steps must be loaded to be checked against.
    await Promise.all(pending.filter((v) => !this.#isEnsemble(v.name)).map((v) => this.#load(v, 'debug')));
    for (const v of this.#ensemblesInOrder(pending)) await this.#load(v, 'debug');
    const ready = pending.filter((v) => v.state === 'READY').length;
    this.#options.log.info({ ready, failed: pending.length - ready, ms: Date.now() - started }, 'models loaded');
  }

  #isEnsemble(name: string): boolean {
    return this.#entries.get(name)?.config?.platform === ENSEMBLE_PLATFORM;
  }

  /** Ensembles ordered so that one whose steps include another ensemble comes after it. */
  #ensemblesInOrder(versions: readonly ModelVersion[]): ModelVersion[] {
    const ensembles = versions.filter((v) => this.#isEnsemble(v.name));
    const steps = (v: ModelVersion): string[] => ensembleIn(this.#entries.get(v.name)?.config)?.step.map((st) => st.modelName) ?? [];
    const placed = new Set<string>();
    const order: ModelVersion[] = [];
    // A cycle between ensembles is reported by each one's load; they are appended as they are.
    for (let pass = 0; pass <= ensembles.length && order.length < ensembles.length; pass++) {
      for (const v of ensembles) {
        if (order.includes(v)) continue;
        const waiting = steps(v).some((m) => this.#isEnsemble(m) && m !== v.name && !placed.has(m) && ensembles.some((e) => e.name === m));
        if (waiting && pass < ensembles.length) continue;
        order.push(v);
        placed.add(v.name);
      }
    }
    return order;
  }

  /**
   * After a model loaded or unloaded: each ready or waiting ensemble is
   * checked again against its steps as they are now, so it turns
   * UNAVAILABLE when a step is unloaded and READY when it is back.
   */
  async #refreshEnsembles(changed: string): Promise<void> {
    if (this.#onDemand) return;
    for (const versions of this.#models.values()) {
      for (const v of versions) {
        if (v.name === changed || !this.#isEnsemble(v.name)) continue;
        // Ready ones, and those that failed their check (not those unloaded on purpose).
        if (v.state !== 'READY' && !(v.state === 'UNAVAILABLE' && v.reason !== 'unloaded' && v.reason !== NOT_LOADED)) continue;
        const steps = ensembleIn(this.#entries.get(v.name)?.config)?.step ?? [];
        if (steps.some((st) => st.modelName === changed)) await this.#load(v);
      }
    }
  }

  /** An ensemble's version: checked against its steps' signatures, served by an EnsembleScheduler. */
  #loadEnsemble(v: ModelVersion, entry: ModelEntry, labels: OutputLabels): void {
    const config = entry.config as ModelConfig;
    const file = entry.configFile ?? `model "${v.name}"`;
    const signature = ensembleSignature(v.name, String(v.version), config, file);
    const scheduling = ensembleIn(config);
    if (!scheduling) throw new ConfigError(file, 'ensemble_scheduling', 'expected the steps of platform "ensemble", got none');
    const plan = planEnsemble(signature, scheduling, (model, version) => this.#stepSignature(model, version), file);
    const slots = new InstanceSlots();
    const previous = v.serving;
    v.serving = {
      config: { ...config, name: v.name },
      signature,
      slots,
      dispatcher: new Dispatcher(v.key, slots),
      scheduler: new EnsembleScheduler(
        v.name,
        plan,
        (model, version) => {
          const step = this.resolve(model, version).serving;
          if (!step) throw unavailable(`model '${model}' is not serving`);
          return step;
        },
        this.#options.responseCache,
      ),
      // Statistics and metrics carry on across re-checks.
      stats: previous?.stats ?? new ModelVersionStatistics(this.#options.metrics?.forVersion(v.name, String(v.version))),
      plans: [],
      kinds: new Map(),
      executionProvider: `ensemble of ${plan.models.join(', ')}`,
      labels,
    };
    v.state = 'READY';
    v.reason = '';
    this.#options.log.info({ model: v.name, version: v.version, steps: plan.steps.length, models: plan.models }, 'ensemble ready');
  }

  #stepSignature(model: string, version: string): ModelSignature | string {
    const versions = this.#models.get(model);
    if (!versions) return 'is not in the repository';
    try {
      const v = this.resolve(model, version);
      return v.serving?.signature ?? `is ${v.state}`;
    } catch (error) {
      return `is not ready: ${(error as Error).message}`;
    }
  }

  /**
   * A worker joined (or restarted): load onto it what it should host (the
   * ready versions placed on it), and load again the versions whose load a
   * lost worker cut short. After a crash or a liveness kill, the models of
   * the dead worker go back to READY without an operator.
   */
  async addWorker(worker: WorkerLink): Promise<void> {
    this.#workers.set(worker.endpoint.id, worker);
    this.#watch(worker);
    const ready = [...this.#models.values()].flat().filter((v) => v.state === 'READY' && v.serving);
    const cut = [...this.#lostLoads].filter((v) => v.state === 'UNAVAILABLE' && this.#models.get(v.name)?.includes(v) === true);
    this.#lostLoads.clear();
    if (cut.length > 0) this.#options.log.warn({ worker: worker.endpoint.id, models: cut.length }, 'loading again the models whose load a lost worker cut short');
    await Promise.all([
      ...ready.map((v) => this.#placeOn(v, worker)),
      // A load or unload of the same name that came meanwhile wins: only a version still cut short loads.
      ...cut.map((v) =>
        this.#oneAtATime(v.name, async () => {
          if (v.state === 'UNAVAILABLE' && this.#models.get(v.name)?.includes(v) === true) await this.#load(v, 'debug');
        }),
      ),
    ]);
    // An ensemble checked while its steps were cut short is checked again now.
    for (const name of new Set(cut.map((v) => v.name))) await this.#refreshEnsembles(name);
  }

  /** A worker left: its slots go; its running executions fail and may be retried elsewhere. */
  removeWorker(workerId: string): void {
    this.#workers.delete(workerId);
    this.#remote.delete(workerId);
    for (const v of [...this.#models.values()].flat()) {
      v.serving?.slots.remove(workerId);
      this.#checkHosted(v);
    }
  }

  /**
   * A version served only by registered workers, the last of which left, is
   * not ready: new requests get UNAVAILABLE at once (a client or balancer can
   * go elsewhere) instead of waiting for a worker. It keeps its scheduler and
   * statistics, and is ready again when a worker hosting it registers.
   * Versions on local workers stay ready while the supervisor restarts them.
   */
  #checkHosted(v: ModelVersion): void {
    if (v.state !== 'READY' || !v.serving || v.serving.plans.length > 0 || v.serving.slots.workers > 0) return;
    // An ensemble has no workers of its own: it follows its steps (#refreshEnsembles).
    if (this.#isEnsemble(v.name)) return;
    v.state = 'UNAVAILABLE';
    v.reason = NO_WORKER;
    this.#options.log.warn({ model: v.name, version: v.version }, 'no registered worker hosts this version any more; not ready until one does');
  }

  /**
   * A registered worker joined, or changed what it hosts: its instances
   * become slots of the versions it hosts. A version that waited for a
   * worker is made ready from the signature the worker reports; the config
   * (batching, limits) still comes from this gateway's repository.
   */
  async setRemoteWorker(connection: WorkerLink, hosted: readonly HostedModel[]): Promise<void> {
    const id = connection.endpoint.id;
    const models = new Map(hosted.map((m) => [m.key, m]));
    this.#remote.set(id, { connection, models });
    this.#watch(connection);
    if (this.#options.repository === undefined) for (const m of hosted) this.#adopt(m, id);
    const waiting: ModelVersion[] = [];
    for (const v of this.list()) {
      const model = models.get(v.key);
      if (!model) {
        v.serving?.slots.remove(id);
        this.#checkHosted(v);
      } else if (v.state === 'READY' && v.serving) {
        v.serving.slots.add(connection, model.instances, instanceKindOf(model.executionProvider));
      } else if (v.state === 'UNAVAILABLE' && v.reason === NO_WORKER && v.serving) {
        v.serving.slots.add(connection, model.instances, instanceKindOf(model.executionProvider));
        v.state = 'READY';
        v.reason = '';
        this.#options.log.info({ model: v.name, version: v.version, worker: id }, 'a registered worker hosts this version again; ready');
      } else if (v.state === 'UNKNOWN' || (v.state === 'UNAVAILABLE' && v.reason === NO_WORKER)) {
        waiting.push(v);
      }
    }
    for (const key of models.keys()) {
      if (this.list().some((v) => v.key === key) || this.#unknownRemoteKeys.has(key)) continue;
      this.#unknownRemoteKeys.add(key);
      this.#options.log.warn({ worker: id, model: key }, "a registered worker serves a model version this gateway's repository does not select; ignored");
    }
    await Promise.all(
      waiting.map((v) =>
        this.#oneAtATime(v.name, async () => {
          if (this.#remote.get(id)?.connection !== connection) return;
          const model = models.get(v.key);
          if (v.state === 'READY' && v.serving) v.serving.slots.add(connection, model?.instances ?? 1, instanceKindOf(model?.executionProvider));
          else if (v.state === 'UNKNOWN' || (v.state === 'UNAVAILABLE' && v.reason === NO_WORKER)) await this.#load(v);
        }),
      ),
    );
  }

  /**
   * Without a repository, a model version a registered worker serves becomes
   * known from its record. While any version of the model serves, its config
   * stays the one it was loaded with (a worker that publishes another is
   * warned about once); when none does (its workers left, a new release of
   * them joins), the joining worker's config replaces it.
   */
  #adopt(model: HostedModel, workerId: string): void {
    let entry = this.#entries.get(model.name);
    const versions = this.#models.get(model.name) ?? [];
    if (entry && !sameConfig(entry, model)) {
      if (versions.some((v) => v.state === 'READY' || v.state === 'LOADING')) {
        if (!this.#configConflicts.has(model.name)) {
          this.#configConflicts.add(model.name);
          this.#options.log.warn(
            { model: model.name, worker: workerId, using: entry.configFile ?? 'no config.pbtxt' },
            'registered workers publish different configs for this model; the gateway keeps the one it serves with',
          );
        }
      } else {
        this.#options.log.info({ model: model.name, worker: workerId }, "no worker serves this model; taking the joining worker's config");
        entry = undefined;
        this.#configConflicts.delete(model.name);
        // Their scheduler was built for the old config: the next load builds another.
        for (const v of versions) {
          if (v.serving) this.#options.metrics?.removeVersion(v.name, String(v.version));
          this.#dropServing(v);
          v.state = 'UNAVAILABLE';
          v.reason = NO_WORKER;
        }
      }
    }
    if (!entry) {
      entry = entryFromRecord(model, workerId);
      this.#entries.set(model.name, entry);
      this.#entryTraffic(entry);
      if (entry.error !== undefined) {
        this.#options.log.error({ model: model.name, worker: workerId, reason: entry.error }, 'model unavailable');
        for (const v of versions) {
          v.state = 'UNAVAILABLE';
          v.reason = entry.error;
        }
      }
    }
    if (versions.some((v) => v.version === model.version)) return;
    this.#models.set(model.name, withVersion(versions, versionFromRecord(model, entry)));
  }

  /** An unresponsive worker (liveness check) is handled as one that failed to answer a call. */
  #watch(connection: WorkerLink): void {
    if (this.#watched.has(connection)) return;
    this.#watched.add(connection);
    connection.onUnresponsive(() => {
      // A replaced connection (a worker that left and re-joined under its id) says nothing about the new one.
      if (this.#isCurrent(connection.endpoint.id, connection)) this.#workerSuspect(connection.endpoint.id);
    });
  }

  /** Is `worker` still the connection this manager uses for `workerId`? */
  #isCurrent(workerId: string, worker: WorkerLink): boolean {
    return this.#workers.get(workerId) === worker || this.#remote.get(workerId)?.connection === worker;
  }

  /**
   * A worker failed to answer, or its liveness check gave up. Take it out of
   * every model's slots now, then probe it with status calls (500 ms, then
   * backing off to 5 s) until it answers (a broken connection or a worker
   * that was stopped and resumed: its slots come back) or it is no longer
   * this manager's (a local worker restarted through addWorker, a registered
   * one left when its lease expired, or re-joined with a new connection).
   */
  #workerSuspect(workerId: string): void {
    const worker = this.#workers.get(workerId) ?? this.#remote.get(workerId)?.connection;
    for (const v of this.list()) v.serving?.slots.remove(workerId);
    if (!worker || this.#probing.has(worker)) return;
    this.#probing.add(worker);
    let failures = 0;
    const probe = (delayMs: number): void => {
      setTimeout(() => {
        if (!this.#isCurrent(workerId, worker)) {
          this.#probing.delete(worker);
          return;
        }
        worker.status(2_000).then(
          () => {
            this.#probing.delete(worker);
            if (!this.#isCurrent(workerId, worker)) return;
            const remote = this.#remote.get(workerId);
            for (const v of this.list()) {
              const hosted = remote?.models.get(v.key);
              const instances = hosted?.instances ?? v.serving?.plans.find((p) => p.workerId === workerId)?.instanceCount;
              if (instances !== undefined && v.state === 'READY' && !v.serving?.slots.has(workerId)) {
                v.serving?.slots.add(worker, instances, hosted ? instanceKindOf(hosted.executionProvider) : v.serving.kinds.get(workerId));
              }
            }
            this.#options.log.warn({ worker: workerId }, 'worker answered again after a failure; back in service');
          },
          () => {
            if (failures++ === 0) this.#options.log.warn({ worker: workerId }, 'worker lost; probing until it answers, restarts or leaves');
            probe(Math.min(5_000, 1_000 * 2 ** Math.min(failures - 1, 3)));
          },
        );
      }, delayMs).unref();
    };
    probe(500);
  }

  /**
   * The version an inference request gets: the one it names, else, for a
   * model with version_traffic, the next by its weights among those serving
   * (on demand: among those the repository has, which load when asked), else
   * the latest ready one.
   */
  route(name: string, version: string): ModelVersion {
    return this.resolve(name, this.routedVersion(name, version));
  }

  /** route's choice as a version string ('' = the latest), for callers that load it first (on demand). */
  routedVersion(name: string, version: string): string {
    if (version !== '') return version;
    const traffic = this.#traffic.get(name)?.traffic;
    if (traffic === undefined) return '';
    const versions = this.#models.get(name) ?? [];
    const onDemand = this.#onDemand !== undefined;
    const picked = traffic.pick((n) => versions.some((v) => v.version === n && (onDemand || v.state === 'READY')));
    return picked === undefined ? '' : String(picked);
  }

  /**
   * A model's version_traffic as its config says, from the moment it is
   * listed: on demand, its versions load when the router picks them. A
   * malformed value, or one on a sequence model, fails each version's load
   * with the reason; no router meanwhile.
   */
  #entryTraffic(entry: ModelEntry): void {
    let weights: readonly VersionWeight[] | undefined;
    try {
      weights = entry.config && !sequenceBatchingIn(entry.config) ? versionTrafficOf(entry.config) : undefined;
    } catch {
      weights = undefined;
    }
    this.#setTraffic(entry.name, weights);
  }

  /** Keeps a model's version_traffic router while its weights stay the same (its round robin goes on). */
  #setTraffic(name: string, weights: readonly VersionWeight[] | undefined): void {
    const key = weights?.map((w) => `${w.version}:${w.weight}`).join(',');
    if (key === undefined) this.#traffic.delete(name);
    else if (this.#traffic.get(name)?.key !== key) this.#traffic.set(name, { key, traffic: new VersionTraffic(weights ?? []) });
  }

  /** The version that serves (name, version); "" = latest ready. */
  resolve(name: string, version: string): ModelVersion {
    const versions = this.#models.get(name);
    if (!versions) throw notFound(`model '${name}' is not in the repository`);
    let chosen: ModelVersion | undefined;
    if (version === '') {
      chosen = [...versions].reverse().find((v) => v.state === 'READY');
      if (!chosen) {
        const last = versions[versions.length - 1];
        throw unavailable(`model '${name}' has no ready version${last?.reason ? `: ${last.reason}` : ''}`);
      }
    } else {
      if (!/^\d+$/.test(version)) throw notFound(`model '${name}' has no version '${version}'`);
      chosen = versions.find((v) => v.version === Number(version));
      if (!chosen) throw notFound(`model '${name}' has no version '${version}'`);
      if (chosen.state !== 'READY') {
        throw unavailable(`model '${name}' version ${version} is ${chosen.state}${chosen.reason ? `: ${chosen.reason}` : ''}`);
      }
    }
    return chosen;
  }

  /** Every version of every model, for RepositoryIndex. */
  list(): ModelVersion[] {
    return [...this.#models.keys()].sort().flatMap((n) => this.#models.get(n) ?? []);
  }

  versionsOf(name: string): ModelVersion[] {
    return this.#models.get(name) ?? [];
  }

  /** Every model version that should load has loaded (or failed for good). */
  allSettled(): boolean {
    return this.list().every((v) => v.state === 'READY' || v.state === 'UNAVAILABLE');
  }

  /** Stops every scheduler: queued requests fail with `reason`, running ones finish. */
  async stop(reason: Error): Promise<void> {
    await Promise.all(this.list().map((v) => v.serving?.scheduler.stop(reason)));
  }

  /**
   * RepositoryModelLoad: rescans the model (or takes uploaded files and a
   * config override), loads the selected versions while the old ones still
   * serve, then swaps and retires the old ones once their requests finish.
   * Throws INVALID_ARGUMENT with the reason when a version fails to load.
   */
  async load(name: string, params: LoadParameters): Promise<void> {
    this.#refuseWhenPolling();
    const repository = this.#refuseWithoutRepository();
    await this.#loadWithSteps(repository, name, params);
    await this.onRepositoryChange?.({ op: 'load', name, config: params.config, files: params.files });
  }

  /**
   * RepositoryModelUnload: new requests fail at once, those already queued or
   * running finish, then UNAVAILABLE "unloaded". `dependents` (Triton's
   * `unload_dependents`): an ensemble's steps loaded only for it, and used by
   * no other loaded ensemble, unload with it (ensemble-dependencies.ts).
   */
  async unload(name: string, o: Partial<UnloadParameters> = {}): Promise<void> {
    this.#refuseWhenPolling();
    this.#refuseWithoutRepository();
    const loaded = new Set(this.list().filter((v) => v.state === 'READY' || v.state === 'LOADING').map((v) => v.name));
    const names = o.dependents === true ? withDependents(name, this.#stepsOf, loaded, this.#dependencyOnly) : [name];
    for (const n of names) {
      await this.#unloadModel(n);
      await this.onRepositoryChange?.({ op: 'unload', name: n });
    }
  }

  /**
   * With several gateway processes: called after a repository API load or
   * unload succeeded here, and resolved once the other processes applied it
   * too (so a client sees the change on any connection once answered).
   */
  onRepositoryChange: ((change: RepositoryChange) => Promise<void>) | undefined;

  /**
   * With several gateway processes: ModelStatistics summed over them
   * (gateway/cluster); undefined: this process's own, as one gateway.
   */
  clusterStatistics: ((name: string, version: string) => Promise<ModelStatistics[]>) | undefined;

  /** A change another gateway process made through the repository API, applied here the same way. */
  applyRepositoryChange(change: RepositoryChange): Promise<void> {
    if (change.op === 'unload') return this.#unloadModel(change.name);
    return this.#loadWithSteps(this.#refuseWithoutRepository(), change.name, { files: change.files, ...(change.config !== undefined ? { config: change.config } : {}) });
  }

  /** How the repository poller (--model-control-mode poll) applies what changed on disk. */
  readonly polled: PolledModels = {
    load: (name) => this.#loadModel(this.#refuseWithoutRepository(), name, { files: new Map() }),
    unload: (name) => this.#unloadModel(name),
  };

  /** Triton's rule and words: with polling, the repository on disk is the one source of truth. */
  #refuseWhenPolling(): void {
    if (this.#options.control?.mode === 'poll') throw unavailable('explicit model load / unload is not allowed if polling is enabled');
  }

  /** The repository the API loads from; a gateway without one serves what the registered workers loaded. */
  #refuseWithoutRepository(): string {
    const repository = this.#options.repository;
    if (repository === undefined) {
      throw failedPrecondition(
        'this gateway has no model repository (started with --registry and no --model-repository): it serves the models its registered workers loaded; load or unload them on the workers',
      );
    }
    return repository;
  }

  /** An explicit load: `name`, and first, as Triton does, its steps that no version of serves (as dependencies). */
  async #loadWithSteps(repository: string, name: string, params: LoadParameters): Promise<void> {
    this.#dependencyOnly.delete(name);
    await this.#loadModel(repository, name, params, new Set([name]));
  }

  /**
   * `loading`: with the ensembles whose load asked for this one (a cycle is
   * cut there, and reported by the ensemble's own check); undefined: the
   * steps are not loaded (the poller, which loads every model anyway).
   */
  #loadModel(repository: string, name: string, params: LoadParameters, loading?: ReadonlySet<string>): Promise<void> {
    return this.#oneAtATime(name, async () => {
      const { entry, uploadDir } = await prepareLoad(repository, name, params);
      for (const w of entry.warnings) this.#options.log.warn({ model: name }, w);
      if (loading) await this.#loadSteps(repository, name, entry, loading);
      this.#entries.set(name, entry);
      this.#entryTraffic(entry);
      const next = versionsOf(entry);
      await Promise.all(next.filter((v) => v.state === 'UNKNOWN').map((v) => this.#load(v)));
      const previous = this.#models.get(name) ?? [];
      this.#models.set(name, next);
      const oldUpload = this.#uploads.get(name);
      if (uploadDir === undefined) this.#uploads.delete(name);
      else this.#uploads.set(name, uploadDir);
      // A key the new set serves again was replaced in place on the workers: keep it there.
      const kept = (v: ModelVersion): boolean => next.some((n) => n.key === v.key && n.state === 'READY');
      await Promise.all(previous.map((v) => this.#retire(v, kept(v))));
      if (oldUpload !== uploadDir) await removeUpload(oldUpload);
      // On demand: what the repository API loads is pinned (never evicted) until it unloads it.
      await this.#onDemand?.pin(name, next);
      const failed = next.find((v) => v.state !== 'READY');
      if (failed) throw invalidArgument(`failed to load '${name}': ${failed.reason}`);
      this.#options.log.info({ model: name, versions: next.map((v) => v.version) }, 'model loaded');
    }).finally(() => this.#refreshEnsembles(name));
  }

  /** The steps of the ensemble `entry` that no version serves, loaded as dependencies (each rescanned, like every load). */
  async #loadSteps(repository: string, name: string, entry: ModelEntry, loading: ReadonlySet<string>): Promise<void> {
    for (const step of new Set(stepModels(entry.config))) {
      if (loading.has(step) || this.#models.get(step)?.some((v) => v.state === 'READY')) continue;
      try {
        await this.#loadModel(repository, step, { files: new Map() }, new Set([...loading, step]));
      } catch (error) {
        throw invalidArgument(`failed to load '${name}': step '${step}': ${error instanceof Error ? error.message : String(error)}`);
      }
      this.#dependencyOnly.add(step);
      this.#options.log.info({ model: step, ensemble: name }, 'model loaded as a step of an ensemble');
    }
  }

  #unloadModel(name: string): Promise<void> {
    this.#dependencyOnly.delete(name);
    return this.#oneAtATime(name, async () => {
      const versions = this.#models.get(name);
      if (!versions) throw notFound(`failed to unload '${name}': no model with that name`);
      await Promise.all(versions.map((v) => this.#retire(v, false)));
      this.#onDemand?.forget(name);
      await removeUpload(this.#uploads.get(name));
      this.#uploads.delete(name);
      this.#options.log.info({ model: name }, 'model unloaded');
    }).finally(() => this.#refreshEnsembles(name));
  }

  #oneAtATime<T>(name: string, run: () => Promise<T>): Promise<T> {
    const result = (this.#ops.get(name) ?? Promise.resolve()).then(run);
    const tail = result.catch(() => undefined);
    this.#ops.set(name, tail);
    void tail.then(() => {
      if (this.#ops.get(name) === tail) this.#ops.delete(name);
    });
    return result;
  }

  /** Takes a version out of service: UNLOADING (resolve refuses it), drain, unload unless `keepOnWorkers`. */
  async #retire(v: ModelVersion, keepOnWorkers: boolean): Promise<void> {
    const serving = v.serving;
    if (v.state === 'READY') v.state = 'UNLOADING';
    await drainScheduler(v, unavailable(`model '${v.key}' was unloaded`));
    if (serving && !keepOnWorkers) {
      await Promise.allSettled(serving.plans.map((p) => this.#workers.get(p.workerId)?.unloadModel(v.key)));
      this.#options.metrics?.removeVersion(v.name, String(v.version));
    }
    v.state = 'UNAVAILABLE';
    v.reason = 'unloaded';
    this.#dropServing(v);
  }

  /** Takes away a version's serving state; its statistics go with it, so its requests are counted here first. */
  #dropServing(v: ModelVersion): void {
    this.#retiredRequests += v.serving?.stats.loadCounts().requests ?? 0;
    v.serving = undefined;
  }

  /** Inference requests ended (answered or failed) by this gateway, including those of versions unloaded since. */
  requestsEnded(): number {
    let n = this.#retiredRequests;
    for (const v of this.list()) n += v.serving?.stats.loadCounts().requests ?? 0;
    return n;
  }

  /** `readyLevel`: the level of its 'model ready' line (debug in bulk loads, which log a summary). */
  async #load(v: ModelVersion, readyLevel: 'info' | 'debug' = 'info'): Promise<void> {
    const { log } = this.#options;
    this.#lostLoads.delete(v);
    const entry = this.#entries.get(v.name);
    if (!entry) return;
    if (this.#isEnsemble(v.name)) {
      try {
        this.#loadEnsemble(v, entry, await this.#labels(v, entry));
      } catch (error) {
        v.state = 'UNAVAILABLE';
        v.reason = error instanceof Error ? error.message : String(error);
        log.error({ model: v.name, version: v.version, reason: v.reason }, 'ensemble not available');
      }
      return;
    }
    v.state = 'LOADING';
    const workers = [...this.#workers.values()];
    const plans = planInstances(entry.config?.instanceGroup ?? [], workers.map((w) => w.endpoint));
    const remote = [...this.#remote.values()].flatMap((r) => {
      const model = r.models.get(v.key);
      return model ? [{ connection: r.connection, model }] : [];
    });
    try {
      if (plans.length === 0 && remote.length === 0) throw new Error(NO_WORKER);
      // Before the workers load it: a label file that cannot be read fails the load, as in Triton.
      const labels = await this.#labels(v, entry);
      const loaded = await Promise.all(plans.map((p) => this.#loadOnWorker(v, p)));
      const first: Pick<LoadModelResponse, 'inputs' | 'outputs'> | undefined =
        loaded[0] ?? (remote[0] ? { inputs: remote[0].model.inputs.map(toTensorSpec), outputs: remote[0].model.outputs.map(toTensorSpec) } : undefined);
      if (!first) throw new Error(NO_WORKER);
      const file = entry.configFile;
      const completed = completeConfig({
        name: v.name,
        config: entry.config,
        present: entry.present,
        ...(file ? { file } : {}),
        inputs: first.inputs,
        outputs: first.outputs,
        defaultMaxBatchSize: this.#options.defaultMaxBatchSize,
      });
      const { signature, sequence, batchIo } = completed;
      const sequenceBatching = sequenceBatchingIn(completed.config);
      // A sequence model batches across its sequences as Triton's `oldest` strategy does.
      const batching = dynamicBatchingIn(completed.config) ?? (sequenceBatching && sequenceBatchingPolicy(sequenceBatching));
      const batched = batching !== undefined && completed.config.maxBatchSize > 0;
      const sloMs = batched && !sequence ? batchingSloMs(completed.config, this.#options.batchingSloMs ?? 0) : 0;
      const traffic = versionTrafficOf(completed.config);
      if (traffic && sequence) {
        throw new RangeError(
          `parameter '${VERSION_TRAFFIC}': expected none on a sequence model: a sequence's requests must reach the version that keeps its state (requests name their version instead)`,
        );
      }
      const config = withBatchingSlo(completed.config, sloMs);
      const slots = new InstanceSlots();
      const dispatcher = new Dispatcher(v.key, slots, (workerId) => this.#workerSuspect(workerId));
      const stats = new ModelVersionStatistics(this.#options.metrics?.forVersion(v.name, String(v.version)));
      let scheduler: Scheduler =
        batched
          ? new DynamicBatcher({
              modelKey: v.key,
              slots,
              dispatcher,
              policy: batchingPolicyFromConfig(config.maxBatchSize, batching, this.#options.maxQueueSize),
              observer: stats,
              sloNs: BigInt(Math.round(sloMs * 1e6)),
              batchIo,
            })
          : new DirectScheduler({ modelKey: v.key, slots, dispatcher, maxQueueSize: this.#options.maxQueueSize, observer: stats, batchIo, batched: config.maxBatchSize > 0 });
      if (sequence) {
        scheduler = new SequenceScheduler({
          modelName: v.name,
          version: v.version,
          plan: sequence,
          batching: config.maxBatchSize > 0,
          // Triton's direct strategy: a slot per batch row of each instance serving it now.
          maxCandidates: sequence.maxCandidates > 0 ? sequence.maxCandidates : () => Math.max(1, config.maxBatchSize) * Math.max(1, slots.instanceCount),
          initialStates: await initialStates(sequence, entry.directory, file ?? `model "${v.name}"`, config.maxBatchSize > 0),
          inner: scheduler,
          log,
          ...(this.#options.sequenceProcesses ? { processes: this.#options.sequenceProcesses } : {}),
        });
      }
      const providers = new Set([...loaded.map(describeProvider), ...remote.map((r) => r.model.executionProvider)]);
      const kinds = new Map(plans.map((p, i) => [p.workerId, instanceKindOf(loaded[i]?.executionProvider)]));
      v.serving = {
        config,
        signature: { ...signature, version: String(v.version) },
        slots,
        dispatcher,
        scheduler,
        stats,
        plans,
        kinds,
        executionProvider: [...providers].join(', '),
        labels,
        ...(batchIo ? { batchIo } : {}),
      };
      plans.forEach((p) => {
        const worker = this.#workers.get(p.workerId);
        if (worker) slots.add(worker, p.instanceCount, kinds.get(p.workerId));
      });
      // Remote workers as they are now: one may have joined or left while this loaded.
      for (const r of this.#remote.values()) {
        const model = r.models.get(v.key);
        if (model) slots.add(r.connection, model.instances, instanceKindOf(model.executionProvider));
      }
      // A gateway without a repository has no warmup/ files to read.
      const fileless = entry.directory === '' && warmupNeedsFiles(config);
      if (fileless) log.warn({ model: v.name, version: v.version }, 'model_warmup reads data files this gateway (no --model-repository) does not have; skipped');
      const samples = fileless ? [] : await warmupSamples(config, v.serving.signature, entry.directory, file ?? `model "${v.name}"`);
      if (samples.length > 0) {
        const started = performance.now();
        // Nothing runs yet: every instance is idle.
        await runWarmup(v.serving, samples, slots.idle);
        log.info({ model: v.name, version: v.version, samples: samples.length, ms: Math.round(performance.now() - started) }, 'model warmed up');
      }
      this.#setTraffic(v.name, traffic);
      // A listed version the repository does not have gets no requests: most likely a typo, so said once per load.
      const absent = traffic?.filter((w) => w.weight > 0 && !(this.#models.get(v.name) ?? []).some((m) => m.version === w.version)) ?? [];
      if (absent.length > 0) {
        log.warn({ model: v.name, versions: absent.map((w) => w.version) }, `${VERSION_TRAFFIC} lists versions the repository does not have; their share goes to the others`);
      }
      v.state = 'READY';
      v.reason = '';
      log[readyLevel](
        {
          model: v.name,
          version: v.version,
          instances: plans.reduce((n, p) => n + p.instanceCount, 0),
          remoteInstances: remote.reduce((n, r) => n + r.model.instances, 0),
          provider: v.serving.executionProvider,
        },
        'model ready',
      );
    } catch (error) {
      v.state = 'UNAVAILABLE';
      v.reason = error instanceof Error ? error.message : String(error);
      // On demand, the next request loads it again (after the back-off): nothing to remember.
      if ((isWorkerLost(error) || error instanceof WorkerGoneError) && !this.#onDemand) {
        // The worker died under the load (a crash, or a liveness kill): nothing is wrong with the model.
        this.#lostLoads.add(v);
        v.reason += '; it loads again when the worker is back';
      }
      if (v.reason === NO_WORKER && this.#remote.size === 0) log.warn({ model: v.name, version: v.version }, 'model waits for a worker to host it');
      else log.error({ model: v.name, version: v.version, reason: v.reason }, 'model failed to load');
      await Promise.allSettled(plans.map((p) => this.#workers.get(p.workerId)?.unloadModel(v.key)));
    }
  }

  /** The outputs' labels for classification (classification.ts), from the model's directory. */
  async #labels(v: ModelVersion, entry: ModelEntry): Promise<OutputLabels> {
    const config = entry.config;
    if (config === undefined) return NO_LABELS;
    if (entry.directory === '') {
      // A gateway without a repository has no label files to read; classification answers without labels.
      if (config.output.some((o) => o.labelFilename !== '')) {
        this.#options.log.warn({ model: v.name, version: v.version }, 'label_filename names a file this gateway (no --model-repository) does not have; classes are answered without labels');
      }
      return NO_LABELS;
    }
    return readLabels(config, entry.directory, entry.configFile ?? `model "${v.name}"`);
  }

  async #loadOnWorker(v: ModelVersion, plan: WorkerPlan): Promise<LoadModelResponse> {
    const worker = this.#workers.get(plan.workerId);
    if (!worker) throw new WorkerGoneError(`worker ${plan.workerId} went away`);
    const entry = this.#entries.get(v.name);
    // A bad tuning parameter fails the load with the file and parameter named.
    const sessionOptions = onnxRuntimeOptions(entry?.config, entry?.configFile ?? `model "${v.name}"`);
    const response = await worker.loadModel({
      modelKey: v.key,
      modelPath: v.modelPath,
      modelBytes: Buffer.alloc(0),
      instanceCount: plan.instanceCount,
      deviceKind: plan.deviceKind,
      deviceId: plan.deviceId,
      sessionOptions,
      // The worker merges waiting executions up to it (only when every input and output batches on dim 0);
      // a model without dynamic or sequence batching runs each request alone, as in Triton.
      maxBatchSize: batchesRequests(entry?.config) ? maxBatchSizeOf(entry, this.#options.defaultMaxBatchSize) : 0,
    });
    if (response.fallbackReason) {
      this.#options.log.warn(
        { model: v.name, version: v.version, worker: plan.workerId, reason: response.fallbackReason },
        'GPU requested but the model runs on CPU',
      );
    }
    return response;
  }

  /** Re-places a ready version on a worker that (re)joined. */
  async #placeOn(v: ModelVersion, worker: WorkerLink): Promise<void> {
    const serving = v.serving;
    if (!serving) return;
    const plan = serving.plans.find((p) => p.workerId === worker.endpoint.id);
    if (!plan) return;
    try {
      const response = await this.#loadOnWorker(v, plan);
      const kind = instanceKindOf(response.executionProvider);
      serving.kinds.set(worker.endpoint.id, kind);
      serving.slots.add(worker, plan.instanceCount, kind);
    } catch (error) {
      this.#options.log.error({ model: v.key, worker: worker.endpoint.id, err: error }, 'reload on worker failed');
    }
  }
}

/** max_batch_size as completeConfig will resolve it: the config's when set, else the default (0 for a model that cannot batch, which the worker sees). */
function maxBatchSizeOf(entry: ModelEntry | undefined, fallback: number): number {
  const config = entry?.config;
  const isSet = config !== undefined && (entry?.present ? entry.present.has('max_batch_size') : config.maxBatchSize !== 0);
  return isSet ? config.maxBatchSize : fallback;
}

/** The worker a load was placed on left before the load was sent. */
class WorkerGoneError extends Error {
  override name = 'WorkerGoneError';
}

function toTensorSpec(spec: HostedModel['inputs'][number]): TensorSpec {
  return { name: spec.name, datatype: spec.datatype, shape: spec.shape.map(BigInt), dimNames: spec.dimNames };
}

function describeProvider(r: LoadModelResponse): string {
  return r.fallbackReason ? `${r.executionProvider} (GPU unavailable: ${r.fallbackReason})` : r.executionProvider;
}

/** The models an ensemble's steps name ([] for a model that is no ensemble). */
function stepModels(config: ModelConfig | undefined): readonly string[] {
  return ensembleIn(config)?.step.map((s) => s.modelName) ?? [];
}
