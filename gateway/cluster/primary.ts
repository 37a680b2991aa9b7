import cluster, { type Worker as ClusterWorker } from 'node:cluster';
import { totalmem } from 'node:os';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import { type Logger } from 'pino';
import { detectGpus, planLocalWorkers } from '../devices.js';
import { localWorkerArgs, type ServeOptions } from '../options.js';
import { checkRepository } from '../main.js';
import { WorkerSupervisor } from '../scheduling/worker-supervisor.js';
import { type WorkerEndpoint } from '../scheduling/worker-link.js';
import { type ModelStatus } from '../../proto/gen/worker.js';
import { LocalQuota } from '../tenants/local-quota.js';
import { NO_RELEASE, QuotaExceededError, type QuotaLimiter, type QuotaRelease } from '../tenants/quota.js';
import { RedisQuota } from '../tenants/redis-quota.js';
import { resolveRedis } from '../redis-targets.js';
import { PASSWORD_ENV } from '../../core/redis-connection.js';
import { type Ask, type ChildRequest, INDEX_ENV, isOurs, PROCESSES_ENV, type ReadySummary, type ToChild, type ToPrimary, fromWire, toWire, WORKERS_ENV } from './messages.js';
import { WORKER_TRACE_URL_ENV } from '../../core/tracing.js';
import { invalidArgument, unavailable } from '../../core/errors.js';
import { defaultMemoryBudget, type MemoryBudget } from '../repository/memory-budget.js';
import { type ResidentReport } from '../repository/on-demand-loader.js';
import { type LoadedUsage, ModelBudgetMetrics } from '../metrics/model-load-metrics.js';
import { type BudgetHolders, HostBudget } from './host-budget.js';
import { type LogLevel } from '../../core/log-levels.js';
import { type TracePolicy } from '../../core/trace-policy.js';
import { alreadyExists, type SharedMemoryChange } from '../shared-memory/system-shared-memory.js';
import { SequenceHolders } from './sequence-holders.js';

// The primary of `fabriek serve --gateway-processes N` (N > 1). It serves
// nothing itself: it starts and supervises the local workers once (the
// WorkerSupervisor a single gateway runs), forks N gateway children that
// share the listening ports (node:cluster hands them the connections) and
// connect to those workers, tells them when a worker restarts, answers their
// asks (aggregated /metrics, statistics of the others, repository changes to
// the others, tenant quota buckets, on demand the host's memory budget),
// re-forks a child that dies, and on SIGTERM drains every child before it
// stops the workers.

export interface RunningPrimary {
  /** The ready summary of the first child (ports, models). */
  readonly summary: ReadySummary;
  readonly childPids: () => number[];
  shutdown(signal: string): Promise<void>;
}

/** How long a child may take to report ready. */
const CHILD_START_MS = 10 * 60_000;

export async function startPrimary(options: ServeOptions, processes: number, log: Logger): Promise<RunningPrimary> {
  // Before any worker starts: a missing repository fails here, as it does for one gateway.
  if (options.modelRepository !== undefined) await checkRepository(options.modelRepository);
  cluster.setupPrimary({ serialization: 'advanced' });
  // The Redis password from the environment: for the gateway children (each reaches the registry), never the workers.
  const password = process.env[PASSWORD_ENV];
  delete process.env[PASSWORD_ENV];
  // Before any worker starts, as for one gateway: a secrets file that cannot be read stops the start.
  const quotaTarget = options.tenants === undefined ? undefined : (await resolveRedis(options, log, { [PASSWORD_ENV]: password })).quota;
  // The workers are this process's children: they export their spans where the gateways do.
  if (options.trace) process.env[WORKER_TRACE_URL_ENV] = options.trace.url;
  // Its constructor adds the listener for the children's metrics answers.
  const aggregator = new AggregatorRegistry();
  const endpoints = new Map<string, WorkerEndpoint>();
  const children = new Set<ClusterWorker>();
  let stopping = false;

  const broadcast = (message: ToChild): void => {
    for (const c of children) if (c.isConnected()) c.send(message);
  };

  const specs = planLocalWorkers(options.gpus ?? detectGpus(), options.workers);
  const supervisor = new WorkerSupervisor(specs, {
    maxMessageBytes: options.maxMessageBytes,
    pingTimeoutMs: options.workerPingTimeoutMs,
    logLevel: options.logLevel,
    log,
    // Each worker's queue per instance grows with the gateways sending to it.
    workerArgs: ['--local-gateways', String(processes), ...localWorkerArgs(options)],
    onUp: async (connection) => {
      // The primary sends the worker nothing, but its connection is the one whose liveness check
      // kills a hung worker (--worker-ping-timeout-ms): open it, so the check runs.
      await connection.status().catch(() => undefined);
      endpoints.set(connection.endpoint.id, connection.endpoint);
      broadcast({ fabriek: 1, kind: 'worker-up', endpoint: connection.endpoint });
    },
    onDown: (id, reason) => {
      endpoints.delete(id);
      broadcast({ fabriek: 1, kind: 'worker-down', id, reason });
    },
  });
  await supervisor.start();
  const workerMetrics = workerRunMetrics(supervisor);

  // Requests the primary makes of children (stats, repository changes), by id.
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let nextRequest = 1;
  const request = (child: ClusterWorker, body: ChildRequest, timeoutMs: number): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = nextRequest++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`gateway process ${child.process.pid} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      child.send({ fabriek: 1, kind: 'request', id, request: body } satisfies ToChild);
    });
  /** The level LogSettings last set (undefined: --log-level still), for processes forked after it. */
  let logLevel: LogLevel | undefined;
  /** The system shared memory regions registered, for processes forked after them. */
  const sharedRegions = new Map<string, SharedMemoryChange>();
  /** Sequences of stateful models and the process that keeps each. */
  const sequenceHolders = new SequenceHolders<ClusterWorker>((c) => c.isConnected());
  /** Region names a process is registering now (claimed before it opens the object), and which. */
  const claims = new Map<string, ClusterWorker>();
  /** What TraceSetting last set (undefined: --trace-config still), for processes forked after it. */
  let tracePolicy: TracePolicy | undefined;
  const others = (from: ClusterWorker): ClusterWorker[] => [...children].filter((c) => c !== from && c.isConnected() && ready.has(c));

  // Tenant quotas for every child, grants by id: in Redis (this host is one gateway there, and enforces its share
  // for all its processes while Redis is away), or buckets here.
  let quotaState: ToChild | undefined;
  const shared =
    quotaTarget === undefined
      ? undefined
      : new RedisQuota({
          url: quotaTarget,
          namespace: options.registryNamespace,
          log,
          gatewayCountHint: options.gatewayCountHint,
          onState: (store, gateways) => broadcast((quotaState = { fabriek: 1, kind: 'quota-state', store, gateways })),
        });
  await shared?.start();
  const quota: QuotaLimiter = shared ?? new LocalQuota({ gateways: () => options.gatewayCountHint });
  const grants = new Map<number, { release: QuotaRelease; child: ClusterWorker }>();
  let nextGrant = 1;

  // A tenant over its request rate is refused early by every child until it may retry: one message per refusal window.
  const refusedUntil = new Map<string, number>();
  const refusedRate = (error: unknown): void => {
    if (!(error instanceof QuotaExceededError) || error.limit !== 'requests' || error.retryAfterMs === undefined) return;
    const now = performance.now();
    if ((refusedUntil.get(error.tenant) ?? 0) > now) return;
    refusedUntil.set(error.tenant, now + error.retryAfterMs);
    broadcast({ fabriek: 1, kind: 'quota-refused', error: toWire(error), retryAfterMs: error.retryAfterMs });
  };

  // On demand: one budget for the host, whatever the process that loads (host-budget.ts).
  function hostBudget(budget: MemoryBudget): { budget: HostBudget; registry: Registry } {
    const holders: BudgetHolders = {
      residents: async () => {
        const serving = [...children].filter((c) => c.isConnected() && ready.has(c));
        const lists = await Promise.all(
          serving.map(async (c) => {
            try {
              return [c.id, (await request(c, { op: 'budget-residents' }, 10_000)) as ResidentReport[]] as const;
            } catch (error) {
              throw unavailable(`cannot plan the on-demand budget: gateway process ${c.process.pid} did not say what it holds (${(error as Error).message})`);
            }
          }),
        );
        return new Map(lists);
      },
      evict: async (holder, key) => {
        const c = cluster.workers?.[holder];
        // Gone: the worker dropped what its connection held.
        if (c === undefined || !c.isConnected()) return true;
        return (await request(c, { op: 'budget-evict', key }, 60_000)) as boolean;
      },
    };
    const registry = new Registry();
    let usage: Promise<LoadedUsage[]> | undefined;
    const host: HostBudget = new HostBudget({
      budget,
      holders,
      log,
      // One round of asks per scrape, shared by the gauges.
      metrics: new ModelBudgetMetrics(registry, budget, () => (usage ??= host.usage().finally(() => setImmediate(() => (usage = undefined))))),
    });
    return { budget: host, registry };
  }
  const onDemand = options.modelControl.mode === 'on-demand' ? hostBudget(options.modelControl.budget ?? defaultMemoryBudget(totalmem(), specs.length)) : undefined;

  const answer = async (from: ClusterWorker, ask: Ask): Promise<unknown> => {
    switch (ask.op) {
      case 'metrics':
        // The children's metrics summed, and the workers' runs (merging across the children) once.
        return (await aggregator.clusterMetrics()) + (await workerMetrics.metrics()) + ((await onDemand?.registry.metrics()) ?? '');
      case 'stats': {
        const lists = await Promise.allSettled(others(from).map((c) => request(c, { op: 'stats', name: ask.name, version: ask.version }, 5_000)));
        return lists.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      }
      case 'log-level': {
        // Kept for processes forked later, which start at --log-level.
        logLevel = ask.level;
        log.level = ask.level;
        supervisor.setLogLevel(ask.level);
        await Promise.allSettled(others(from).map((c) => request(c, { op: 'log-level', level: ask.level }, 5_000)));
        return undefined;
      }
      case 'trace-policy': {
        // Kept for processes forked later; the primary itself traces nothing.
        tracePolicy = ask.policy;
        await Promise.allSettled(others(from).map((c) => request(c, { op: 'trace-policy', policy: ask.policy }, 5_000)));
        return undefined;
      }
      case 'shared-memory-claim': {
        // One registration of a name at a time across the processes, as one gateway's map would allow.
        if (!ask.claim) {
          if (claims.get(ask.name) === from) claims.delete(ask.name);
          return undefined;
        }
        if (sharedRegions.has(ask.name) || claims.has(ask.name)) throw alreadyExists(ask.name);
        claims.set(ask.name, from);
        return undefined;
      }
      case 'shared-memory': {
        // Kept for processes forked later; each process opens the objects itself.
        const change = ask.change;
        if (change.op === 'register') claims.delete(change.name);
        if (change.op === 'register') sharedRegions.set(change.name, change);
        else if (change.name === '') sharedRegions.clear();
        else sharedRegions.delete(change.name);
        const results = await Promise.allSettled(others(from).map((c) => request(c, { op: 'shared-memory', change }, 10_000)));
        for (const r of results) if (r.status === 'rejected') log.warn({ region: change.name, op: change.op, reason: String(r.reason) }, 'a gateway process did not apply a shared memory change');
        return undefined;
      }
      case 'sequence-claim': {
        // The process that took the START keeps the sequence; one that kept it before ends its own first.
        await sequenceHolders.claim(ask.key, from, (before) => request(before, { op: 'sequence-drop', key: ask.key, model: ask.model, version: ask.version }, 10_000));
        return undefined;
      }
      case 'sequence-ended':
        sequenceHolders.ended(ask.key, from);
        return undefined;
      case 'sequence-infer': {
        const holder = sequenceHolders.holder(ask.key);
        if (holder === undefined || !holder.isConnected() || !ready.has(holder)) {
          // Kept nowhere (never started, ended, or lost with a process that died): Triton's words.
          const { job } = ask;
          throw invalidArgument(`inference request for sequence ${String(job.sequence.id)} to model '${job.model}' must specify the START flag on the first request of the sequence`);
        }
        // Its own deadline ends it there; without one it may wait in the sequences' backlog for long.
        const limitMs = Number.isFinite(ask.job.deadline) ? Math.max(1_000, ask.job.deadline - Date.now() + 5_000) : 60 * 60_000;
        return request(holder, { op: 'sequence-infer', job: ask.job }, limitMs);
      }
      case 'repository': {
        const results = await Promise.allSettled(others(from).map((c) => request(c, { op: 'repository', change: ask.change }, 10 * 60_000)));
        for (const r of results) if (r.status === 'rejected') log.warn({ model: ask.change.name, op: ask.change.op, reason: String(r.reason) }, 'a gateway process did not apply a repository change');
        return undefined;
      }
      case 'quota-acquire': {
        const tenant = { name: ask.tenant, quotas: ask.quotas };
        let release: QuotaRelease;
        try {
          release = await quota.acquire(tenant, ask.items);
        } catch (error) {
          refusedRate(error);
          throw error;
        }
        // The bucket now empty: children refuse the next ones early, as one gateway's precheck would.
        try {
          quota.precheck(tenant);
        } catch (error) {
          refusedRate(error);
        }
        // No concurrency limit: nothing to release, no grant to remember.
        if (release === NO_RELEASE) return 0;
        const id = nextGrant++;
        grants.set(id, { release, child: from });
        return id;
      }
      case 'quota-release': {
        grants.get(ask.grant)?.release();
        grants.delete(ask.grant);
        return undefined;
      }
      case 'budget-reserve':
        if (!onDemand) throw unavailable('the primary plans no on-demand budget (--model-control-mode is not on-demand)');
        return onDemand.budget.reserve(from.id, ask.need);
      case 'budget-settled':
        onDemand?.budget.settled(from.id, ask.key);
        return undefined;
    }
  };

  const ready = new Map<ClusterWorker, ReadySummary>();
  let firstReady: ((summary: ReadySummary) => void) | undefined;
  const allReady = new Promise<ReadySummary>((resolve) => {
    firstReady = resolve;
  });
  let summary: ReadySummary | undefined;

  cluster.on('message', (child: ClusterWorker, message: unknown) => {
    if (!isOurs<ToPrimary>(message)) return;
    if (message.kind === 'ready') {
      ready.set(child, message.summary);
      summary ??= message.summary;
      if (quotaState) child.send(quotaState);
      if (logLevel !== undefined) request(child, { op: 'log-level', level: logLevel }, 5_000).catch(() => undefined);
      if (tracePolicy !== undefined) request(child, { op: 'trace-policy', policy: tracePolicy }, 5_000).catch(() => undefined);
      for (const change of sharedRegions.values()) request(child, { op: 'shared-memory', change }, 10_000).catch(() => undefined);
      log.info({ pid: child.process.pid, processes: ready.size }, 'gateway process ready');
      if (ready.size >= processes) firstReady?.(summary);
      return;
    }
    if (message.kind === 'reply') {
      const p = pending.get(message.id);
      if (!p) return;
      pending.delete(message.id);
      if (message.error) p.reject(fromWire(message.error));
      else p.resolve(message.value);
      return;
    }
    answer(child, message.ask).then(
      (value) => {
        if (child.isConnected()) child.send({ fabriek: 1, kind: 'reply', id: message.id, value } satisfies ToChild);
      },
      (error: unknown) => {
        if (child.isConnected()) child.send({ fabriek: 1, kind: 'reply', id: message.id, error: toWire(error) } satisfies ToChild);
      },
    );
  });

  const places = new Map<ClusterWorker, number>();
  const fork = (index: number): ClusterWorker => {
    const child = cluster.fork({
      [WORKERS_ENV]: JSON.stringify([...endpoints.values()]),
      [PROCESSES_ENV]: String(processes),
      [INDEX_ENV]: String(index),
      ...(password === undefined ? {} : { [PASSWORD_ENV]: password }),
    });
    children.add(child);
    places.set(child, index);
    return child;
  };

  let restarts = 0;
  let startFailure: ((error: Error) => void) | undefined;
  const startFailed = new Promise<never>((_, reject) => {
    startFailure = reject;
  });
  startFailed.catch(() => undefined);
  cluster.on('exit', (child: ClusterWorker, code: number | null, signal: string | null) => {
    children.delete(child);
    const wasReady = ready.delete(child);
    const place = places.get(child) ?? 0;
    places.delete(child);
    // Concurrency it held for requests that died with it.
    for (const [id, g] of grants) {
      if (g.child !== child) continue;
      g.release();
      grants.delete(id);
    }
    onDemand?.budget.gone(child.id);
    for (const [name, holder] of claims) if (holder === child) claims.delete(name);
    sequenceHolders.forget(child);
    if (stopping) return;
    if (summary === undefined && !wasReady) {
      // A child that fails to start (bad repository, port in use) fails the start, as one gateway would.
      startFailure?.(new Error(`a gateway process exited before it was ready (code ${code}, signal ${signal})`));
      return;
    }
    const delay = Math.min(5_000, 100 * 2 ** Math.min(restarts++, 6));
    log.error({ pid: child.process.pid, code, signal, restartInMs: delay }, 'gateway process exited; forking a new one');
    setTimeout(() => {
      if (!stopping) fork(place);
    }, delay).unref();
  });

  for (let i = 0; i < processes; i++) fork(i);
  let startTimer: NodeJS.Timeout | undefined;
  try {
    summary = await Promise.race([
      allReady,
      startFailed,
      new Promise<never>((_, reject) => {
        startTimer = setTimeout(() => reject(new Error(`gateway processes not ready within ${CHILD_START_MS} ms`)), CHILD_START_MS);
      }),
    ]);
  } catch (error) {
    stopping = true;
    for (const c of children) c.process.kill('SIGKILL');
    await supervisor.stop();
    await shared?.close();
    throw error;
  } finally {
    clearTimeout(startTimer);
  }

  // SIGHUP re-reads the tenants file in a gateway: each child does it (a primary without a handler would die of it).
  const hangup = (): void => {
    log.info({ processes: children.size }, 'SIGHUP: passed on to every gateway process');
    for (const c of children) c.process.kill('SIGHUP');
  };
  process.on('SIGHUP', hangup);

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (signal: string): Promise<void> => {
    shuttingDown ??= (async () => {
      process.off('SIGHUP', hangup);
      stopping = true;
      supervisor.stopRestarting();
      log.info({ signal, processes: children.size }, 'shutting down: draining every gateway process, then the workers');
      // Children drain within --drain-grace-secs + --exit-timeout-secs; a little more, then they are killed.
      const limitMs = (options.drainGraceSecs + options.exitTimeoutSecs) * 1000 + 5_000;
      await Promise.all(
        [...children].map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.isDead()) return resolve();
              const kill = setTimeout(() => c.process.kill('SIGKILL'), limitMs);
              c.once('exit', () => {
                clearTimeout(kill);
                resolve();
              });
              // A signal, not IPC: the same path as SIGTERM to the process group.
              // Sent once: a child already signalled (the group) ignores the repeat.
              c.process.kill('SIGTERM');
            }),
        ),
      );
      await supervisor.stop();
      await shared?.close();
      log.info('stopped');
    })();
    return shuttingDown;
  };

  return { summary, childPids: () => [...children].flatMap((c) => (c.process.pid === undefined ? [] : [c.process.pid])), shutdown };
}

/**
 * The workers' own counts of runs, from their Status at scrape time: how
 * many runs merged executions, and how many of those carried executions of
 * several gateway processes. Shown once, beside the children's metrics.
 */
function workerRunMetrics(supervisor: WorkerSupervisor): Registry {
  const registry = new Registry();
  const labelNames = ['worker', 'model', 'version'] as const;
  type Row = ModelStatus & { readonly worker: string };
  let rows: Promise<Row[]> | undefined;
  // One Status per worker per scrape, shared by the metrics below.
  const read = (): Promise<Row[]> =>
    (rows ??= Promise.all(
      supervisor.connections().map((c) =>
        c.status(2_000).then(
          (s) => s.models.map((m) => ({ ...m, worker: c.endpoint.id })),
          () => [],
        ),
      ),
    )
      .then((lists) => lists.flat())
      .finally(() => setImmediate(() => (rows = undefined))));
  const labels = (r: Row): { worker: string; model: string; version: string } => {
    const i = r.modelKey.lastIndexOf('/');
    return { worker: r.worker, model: r.modelKey.slice(0, i), version: r.modelKey.slice(i + 1) };
  };
  const counter = (name: string, help: string, pick: (r: Row) => bigint): void => {
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        for (const r of await read()) this.inc(labels(r), Number(pick(r)));
      },
    });
  };
  counter('fabriek_worker_runs_total', 'ONNX Runtime runs of the model in the worker (merged executions count once)', (r) => r.runs);
  counter('fabriek_worker_merged_runs_total', 'Runs that merged several executions waiting for the same instance', (r) => r.mergedRuns);
  counter('fabriek_worker_merged_executions_total', 'Executions answered from merged runs', (r) => r.mergedCalls);
  counter('fabriek_worker_cross_gateway_runs_total', 'Merged runs that carried executions of several gateway processes', (r) => r.crossConnectionRuns);
  new Gauge({
    name: 'fabriek_worker_largest_merged_rows',
    help: 'Rows (dim 0) of the largest merged run since the model loaded',
    labelNames,
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of await read()) this.set(labels(r), r.maxMergedRows);
    },
  });
  return registry;
}
