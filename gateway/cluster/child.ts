import { AggregatorRegistry, Gauge, type Registry } from 'prom-client';
import { type Logger } from 'pino';
import { modelStatistics } from '../inference/model-queries.js';
import { type ModelManager } from '../repository/model-manager.js';
import { WorkerConnection } from '../scheduling/worker-connection.js';
import { type WorkerEndpoint, type WorkerLink } from '../scheduling/worker-link.js';
import { type QuotaHolder, QuotaExceededError, type QuotaLimiter, type QuotaRelease } from '../tenants/quota.js';
import { hasQuotas } from '../tenants/tenant.js';
import { type PolledModels } from '../repository/repository-poller.js';
import { type OnDemandCoordinator } from '../repository/on-demand-loader.js';
import {
  type Ask,
  type ChildRequest,
  INDEX_ENV,
  isOurs,
  type RepositoryChange,
  type OthersStatistics,
  PROCESSES_ENV,
  type ReadySummary,
  type SequenceJobWire,
  type SequenceResultWire,
  type ToChild,
  type ToPrimary,
  fromWire,
  toWire,
  WORKERS_ENV,
} from './messages.js';
import { sumStatistics } from './sum-statistics.js';
import { type LocalWorkers } from '../scheduling/worker-supervisor.js';
import { type LogLevel } from '../../core/log-levels.js';
import { type TracePolicy } from '../../core/trace-policy.js';
import { type SharedMemoryPeers, type SystemSharedMemory } from '../shared-memory/system-shared-memory.js';
import { setTracePolicy } from '../../core/tracing.js';
import { Cancellation } from '../../core/cancellation.js';
import { type Tensor } from '../../core/tensor.js';
import { takeArrayBuffer } from '../../worker/tensor-bytes.js';
import { unavailable } from '../../core/errors.js';
import { abortError, type InferJob, type JobResult, type SequenceFlags } from '../scheduling/execution.js';
import { type SequenceProcesses, SequenceScheduler } from '../scheduling/sequence-scheduler.js';

// A gateway child of `fabriek serve --gateway-processes N` (node:cluster):
// a whole gateway, except that it connects to the primary's local workers
// instead of starting its own, and asks the primary (IPC) for what must be
// the same in every process: /metrics, statistics, repository changes, local
// tenant quotas and, on demand, room in the host's memory budget; and it runs
// the requests of a stateful model's sequence in the process that keeps it.

export interface PrimaryWorkersOptions {
  readonly maxMessageBytes: number;
  readonly pingTimeoutMs?: number;
  readonly log: Logger;
  readonly onUp: (connection: WorkerLink) => Promise<void>;
  readonly onDown: (workerId: string, reason: string) => void;
}

export class GatewayChild {
  readonly processes: number;
  /** This child's place among the N (0…N-1); a re-forked child takes the place of the one that died. */
  readonly index: number;
  /** The primary's workers as last heard (env at fork, then worker-up/down), also before `workers()` is called. */
  readonly #endpoints = new Map<string, WorkerEndpoint>();
  readonly #asks = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  #nextAsk = 1;
  #requests: ((request: ChildRequest) => Promise<unknown>) | undefined;
  #workerEvents: ((message: ToChild) => void) | undefined;
  #quota: PrimaryQuota | undefined;
  #quotaState: { readonly store: 'redis' | 'local'; readonly gateways: number } | undefined;
  /** --system-shared-memory: this process's regions (useSharedMemory). */
  #sharedMemory: SystemSharedMemory | undefined;

  constructor() {
    for (const e of JSON.parse(process.env[WORKERS_ENV] ?? '[]') as WorkerEndpoint[]) this.#endpoints.set(e.id, e);
    this.processes = Number(process.env[PROCESSES_ENV] ?? '1');
    this.index = Number(process.env[INDEX_ENV] ?? '0');
    process.on('message', (message: unknown) => {
      if (isOurs<ToChild>(message)) this.#receive(message);
    });
  }

  #send(message: ToPrimary): void {
    process.send?.(message);
  }

  #receive(message: ToChild): void {
    switch (message.kind) {
      case 'reply': {
        const ask = this.#asks.get(message.id);
        if (!ask) return;
        this.#asks.delete(message.id);
        if (message.error) ask.reject(fromWire(message.error));
        else ask.resolve(message.value);
        return;
      }
      case 'request': {
        const handle = this.#requests;
        const answer = handle ? handle(message.request) : Promise.reject(new Error('this gateway process is not serving yet'));
        answer.then(
          (value) => this.#send({ fabriek: 1, kind: 'reply', id: message.id, value }),
          (error: unknown) => this.#send({ fabriek: 1, kind: 'reply', id: message.id, error: toWire(error) }),
        );
        return;
      }
      case 'quota-state':
        // The primary changed stores: its refusals were of the other one (a share starts afresh, Redis is the truth again).
        if (this.#quotaState !== undefined && this.#quotaState.store !== message.store) this.#quota?.forgetRefusals();
        this.#quotaState = { store: message.store, gateways: message.gateways };
        return;
      case 'quota-refused': {
        const error = fromWire(message.error);
        if (error instanceof QuotaExceededError) this.#quota?.refused(error, message.retryAfterMs);
        return;
      }
      default:
        // Kept even while this process starts: a worker restarted meanwhile is reached at its new address.
        if (message.kind === 'worker-up') this.#endpoints.set(message.endpoint.id, message.endpoint);
        else this.#endpoints.delete(message.id);
        this.#workerEvents?.(message);
    }
  }

  /** `onAnswer` runs as the answer is handled, before any later message from the primary (the promise settles later). */
  ask(ask: Ask, onAnswer?: () => void): Promise<unknown> {
    const id = this.#nextAsk++;
    return new Promise((resolve, reject) => {
      this.#asks.set(id, {
        resolve: (value) => {
          onAnswer?.();
          resolve(value);
        },
        reject,
      });
      this.#send({ fabriek: 1, kind: 'ask', id, ask });
    });
  }

  /** How many local workers the primary runs. */
  get workerCount(): number {
    return this.#endpoints.size;
  }

  /**
   * Connections to the primary's workers (what WorkerSupervisor is to a single
   * gateway); a worker the primary restarts comes back as one that rejoined.
   */
  workers(options: PrimaryWorkersOptions): LocalWorkers {
    const connections = new Map<string, WorkerConnection>();
    let started = false;
    let stopped = false;
    const connect = (endpoint: WorkerEndpoint): WorkerConnection => {
      const c = new WorkerConnection(endpoint, {
        maxMessageBytes: options.maxMessageBytes,
        ...(options.pingTimeoutMs ? { pingTimeoutMs: options.pingTimeoutMs } : {}),
      });
      connections.set(endpoint.id, c);
      return c;
    };
    const down = (id: string, reason: string): void => {
      const c = connections.get(id);
      if (!c) return;
      connections.delete(id);
      c.close();
      options.onDown(id, reason);
    };
    this.#workerEvents = (message) => {
      // Before start, the endpoints above are what start connects to.
      if (stopped || !started) return;
      if (message.kind === 'worker-down') down(message.id, message.reason);
      else if (message.kind === 'worker-up') {
        down(message.endpoint.id, `worker ${message.endpoint.id} restarted`);
        options.log.info({ worker: message.endpoint.id, address: message.endpoint.address }, 'worker (re)joined');
        options.onUp(connect(message.endpoint)).catch((error: unknown) => options.log.error({ worker: message.endpoint.id, err: error }, 'worker rejoin failed'));
      }
    };
    return {
      start: async () => {
        started = true;
        await Promise.all([...this.#endpoints.values()].map((e) => options.onUp(connect(e))));
      },
      stop: async () => {
        stopped = true;
        for (const c of connections.values()) c.close();
        connections.clear();
      },
      stopRestarting: () => {
        stopped = true;
      },
      // The primary runs the workers: it sets their level when this process shares a change (shareLogLevel).
      setLogLevel: () => undefined,
      pids: () => new Map(),
    };
  }

  /**
   * Lets the primary collect this process's metrics for /metrics (prom-client's
   * cluster messages), with one gauge of its own: the requests this process
   * ended (read from the models' statistics at scrape time, plus those of
   * versions unloaded since), by pid.
   */
  shareMetrics(registry: Registry, models: ModelManager): void {
    new Gauge({
      name: 'fabriek_gateway_process_requests',
      help: 'Inference requests ended (answered or failed) by each gateway process (--gateway-processes), by pid',
      labelNames: ['pid'],
      registers: [registry],
      collect() {
        this.set({ pid: String(process.pid) }, models.requestsEnded());
      },
    });
    AggregatorRegistry.setRegistries([registry]);
    // Its constructor adds the listener that answers the primary.
    new AggregatorRegistry();
  }

  /** /metrics text aggregated over every gateway process (by the primary). */
  async metricsText(): Promise<string> {
    return String(await this.ask({ op: 'metrics' }));
  }

  /** Wires the model manager: statistics summed over the processes, repository changes sent to the others, their changes applied here. */
  serve(models: ModelManager, log: Logger): void {
    models.clusterStatistics = async (name, version) => {
      const own = modelStatistics(models, name, version);
      const others = (await this.ask({ op: 'stats', name, version })) as OthersStatistics;
      return sumStatistics(own, others);
    };
    models.onRepositoryChange = async (change) => {
      await this.ask({ op: 'repository', change });
    };
    this.#requests = async (request) => {
      switch (request.op) {
        case 'stats':
          try {
            return modelStatistics(models, request.name, request.version);
          } catch {
            return [];
          }
        case 'budget-residents':
          return models.onDemand?.report() ?? [];
        case 'budget-evict':
          return (await models.onDemand?.evictIfIdle(request.key)) ?? true;
        case 'repository':
          log.info({ model: request.change.name, op: request.change.op }, 'repository change from another gateway process');
          await models.applyRepositoryChange(request.change);
          return undefined;
        case 'log-level':
          log.level = request.level;
          return undefined;
        case 'trace-policy':
          setTracePolicy(request.policy);
          return undefined;
        case 'shared-memory':
          await this.#sharedMemory?.apply(request.change);
          return undefined;
        case 'sequence-infer':
          return runKeptSequence(models, request.job);
        case 'sequence-drop': {
          const scheduler = models.resolve(request.model, String(request.version)).serving?.scheduler;
          if (scheduler instanceof SequenceScheduler) scheduler.drop(request.key);
          return undefined;
        }
      }
    };
  }

  /** Several processes: a sequence of a stateful model is kept by the one that took its START, as the primary records. */
  sequenceProcesses(): SequenceProcesses {
    return {
      claim: async (model, version, key) => {
        await this.ask({ op: 'sequence-claim', key, model, version });
      },
      forward: (model, version, key, job) => this.#forwardSequence(model, version, key, job),
      ended: (key) => {
        this.ask({ op: 'sequence-ended', key }).catch(() => undefined);
      },
    };
  }

  async #forwardSequence(model: string, version: number, key: string, job: InferJob): Promise<JobResult> {
    if (job.signal.aborted) throw abortError(`${model}/${version}`, Date.now(), job.deadline, 'before the request ran');
    const t = job.tenant;
    const wire: SequenceJobWire = {
      model,
      version,
      inputs: job.inputs.map(ownBytes),
      outputs: job.outputs,
      deadline: job.deadline,
      batchSize: job.batchSize,
      priority: job.priority,
      timeoutUs: job.timeoutUs,
      tenant: t && { name: t.name, weight: t.weight, queueShare: t.queueShare },
      sequence: job.sequence as SequenceFlags,
    };
    // The caller may go first; the request still runs where its sequence is kept, so the state stays whole.
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(abortError(`${model}/${version}`, Date.now(), job.deadline, 'while another gateway process ran it'));
      job.signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      const r = (await Promise.race([this.ask({ op: 'sequence-infer', key, job: wire }), aborted])) as SequenceResultWire;
      return { outputs: r.outputs, queueNs: r.queueNs, ...(r.batchRows !== undefined ? { batchRows: r.batchRows } : {}), execution: { ...r.execution, outputs: r.outputs } };
    } finally {
      if (onAbort) job.signal.removeEventListener('abort', onAbort);
      aborted.catch(() => undefined);
    }
  }

  /** On demand: the host's budget, planned by the primary, instead of one of this process's own. */
  onDemandCoordinator(): OnDemandCoordinator {
    return {
      reserve: async (need, granted) => {
        await this.ask({ op: 'budget-reserve', need }, granted);
      },
      settled: (key) => {
        this.ask({ op: 'budget-settled', key }).catch(() => undefined);
      },
    };
  }

  /** In --model-control-mode poll, child 0 polls the repository; the others hear of its changes. */
  get polls(): boolean {
    return this.index === 0;
  }

  /**
   * The polling child's PolledModels: each change it applies (even one that
   * fails, which the others then fail alike) is applied by the others before
   * the next.
   */
  broadcastPolled(models: ModelManager): PolledModels {
    const then = async (apply: Promise<void>, change: RepositoryChange): Promise<void> => {
      try {
        await apply;
      } finally {
        await this.ask({ op: 'repository', change }).catch(() => undefined);
      }
    };
    return {
      load: (name) => then(models.polled.load(name), { op: 'load', name, config: undefined, files: new Map() }),
      unload: (name) => then(models.polled.unload(name), { op: 'unload', name }),
    };
  }

  /** LogSettings changed this process's level: the primary and the other processes take it too. */
  async shareLogLevel(level: LogLevel): Promise<void> {
    await this.ask({ op: 'log-level', level });
  }

  /** TraceSetting changed what this process samples: the other processes sample so too. */
  async shareTracePolicy(policy: TracePolicy): Promise<void> {
    await this.ask({ op: 'trace-policy', policy });
  }

  /** System shared memory: names claimed at the primary, changes made here passed on to the other processes. */
  sharedMemoryPeers(): SharedMemoryPeers {
    return {
      claim: async (name) => {
        await this.ask({ op: 'shared-memory-claim', name, claim: true });
      },
      unclaim: async (name) => {
        await this.ask({ op: 'shared-memory-claim', name, claim: false });
      },
      changed: async (change) => {
        await this.ask({ op: 'shared-memory', change });
      },
    };
  }

  /** This process's regions, which the other processes' changes are applied to. */
  useSharedMemory(regions: SystemSharedMemory): void {
    this.#sharedMemory = regions;
  }

  ready(summary: ReadySummary): void {
    this.#send({ fabriek: 1, kind: 'ready', summary });
  }

  /** Where the primary counts quotas, as it last said (undefined before it did). */
  get quotaState(): { readonly store: 'redis' | 'local'; readonly gateways: number } | undefined {
    return this.#quotaState;
  }

  /** Tenant quotas held by the primary, so that they hold across the processes. */
  quota(): QuotaLimiter {
    this.#quota = new PrimaryQuota(this);
    return this.#quota;
  }
}

/**
 * Quotas with several gateway processes: the primary holds the limiter (the
 * buckets, or the Redis store and this host's share while Redis is away); a
 * child asks it for each request of a tenant that has quotas (one IPC round
 * trip), and for nothing else.
 */
class PrimaryQuota implements QuotaLimiter {
  readonly #child: GatewayChild;
  /** Tenants the primary refused for their request rate, until when (monotonic ms): refused early here. */
  readonly #refused = new Map<string, { until: number; error: QuotaExceededError }>();

  constructor(child: GatewayChild) {
    this.#child = child;
  }

  /** Local and synchronous: a tenant whose rate the primary refused is refused again until its retry-after has passed. */
  precheck(tenant: QuotaHolder): void {
    const refused = this.#refused.get(tenant.name);
    if (refused === undefined) return;
    const left = refused.until - performance.now();
    if (left <= 0) {
      this.#refused.delete(tenant.name);
      return;
    }
    const e = refused.error;
    throw new QuotaExceededError(e.tenant, e.limit, e.message, Math.ceil(left));
  }

  forgetRefusals(): void {
    this.#refused.clear();
  }

  /** The primary refused the tenant's request rate (here or in another child): refuse it early until then. */
  refused(error: QuotaExceededError, retryAfterMs: number): void {
    this.#refused.set(error.tenant, { until: performance.now() + retryAfterMs, error });
  }

  async acquire(tenant: QuotaHolder, items: number): Promise<QuotaRelease> {
    if (!hasQuotas(tenant.quotas)) return NO_RELEASE;
    const grant = (await this.#child.ask({ op: 'quota-acquire', tenant: tenant.name, quotas: tenant.quotas, items })) as number;
    if (grant === 0) return NO_RELEASE;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#child.ask({ op: 'quota-release', grant }).catch(() => undefined);
    };
  }

  async close(): Promise<void> {}
}

const NO_RELEASE: QuotaRelease = () => undefined;

/** Runs a request another process handed over, in this process's scheduler of its version, with its deadline. */
async function runKeptSequence(models: ModelManager, job: SequenceJobWire): Promise<SequenceResultWire> {
  const v = models.resolve(job.model, String(job.version));
  const scheduler = v.serving?.scheduler;
  if (!(scheduler instanceof SequenceScheduler)) throw unavailable(`model '${v.key}' has no sequence scheduler in this gateway process`);
  const signal = new Cancellation();
  const timer = Number.isFinite(job.deadline) ? setTimeout(signal.abort, Math.max(0, job.deadline - Date.now())) : undefined;
  try {
    const r = await scheduler.enqueueHere({
      inputs: job.inputs,
      outputs: job.outputs,
      signal,
      deadline: job.deadline,
      batchSize: job.batchSize,
      priority: job.priority,
      timeoutUs: job.timeoutUs,
      ...(job.tenant ? { tenant: job.tenant } : {}),
      sequence: job.sequence,
    });
    const { outputs: _outputs, ...execution } = r.execution;
    return { outputs: r.outputs.map(ownBytes), queueNs: r.queueNs, batchRows: r.batchRows, execution };
  } finally {
    if (timer) clearTimeout(timer);
  }
}

/**
 * A tensor whose bytes are a buffer of their own. IPC's serializer writes a
 * view's whole ArrayBuffer: a request's input is a view of its socket chunk
 * or body, an output a view of its batch's answer.
 */
function ownBytes(t: Tensor): Tensor {
  const buffer = takeArrayBuffer(t.data);
  return buffer === t.data.buffer ? t : { ...t, data: new Uint8Array(buffer) };
}
