import { Server, ServerCredentials } from '@grpc/grpc-js';
import { type Server as HttpServer } from 'node:http';
import { type Http2Server, type ServerHttp2Session } from 'node:http2';
import { Server as HttpsServer } from 'node:https';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { type Logger } from 'pino';
import { unavailable } from '../core/errors.js';
import { detectGpus, planLocalWorkers } from './devices.js';
import { describeCache } from './cache/cache-config.js';
import { LocalLru } from './cache/local-lru.js';
import { RedisCache } from './cache/redis-cache.js';
import { ResponseCache } from './cache/response-cache.js';
import { type ResponseStore } from './cache/response-store.js';
import { cachePolicyOf } from './cache/cache-policy.js';
import { createInferenceService, type ServerInfo } from './grpc/inference-service.js';
import { inferenceServiceDefinition } from './grpc/infer-codec.js';
import { withMalformedRequests } from './grpc/malformed-request.js';
import { createHttpServer } from './http/server.js';
import { earlyRefusals } from './grpc/early-refusal.js';
import { describeSession, useStreamTable } from './grpc/session-streams.js';
import { StreamWindows, WIDE_WINDOW_BYTES } from './grpc/stream-window.js';
import { ServerHealth, healthServiceDefinition } from './grpc/health-service.js';
import { addReflection } from './grpc/reflection.js';
import { serverReady } from './inference/model-queries.js';
import { DynamicBatcher } from './batching/dynamic-batcher.js';
import { Admission } from './inference/admission.js';
import { registerCacheMetrics } from './metrics/cache-metrics.js';
import { inflightBound } from './inference/grpc-inflight.js';
import { InflightGate } from './inference/inflight-gate.js';
import { MetricsRegistry } from './metrics/registry.js';
import { type QuotaState, TenantMetrics } from './metrics/tenant-metrics.js';
import { createMetricsServer } from './metrics/server.js';
import { createLogger } from './logger.js';
import { localWorkerArgs, type ServeOptions } from './options.js';
import { RegistryWatcher } from './registry/registry-watcher.js';
import { RemoteWorkers } from './registry/remote-workers.js';
import { ModelManager } from './repository/model-manager.js';
import { RepositoryPoller } from './repository/repository-poller.js';
import { LoadReporter } from './load/load-reporter.js';
import { type ModelControl } from './repository/control-mode.js';
import { defaultMemoryBudget } from './repository/memory-budget.js';
import { totalmem } from 'node:os';
import { startTracing, stopTracing, traceControl, WORKER_TRACE_URL_ENV } from '../core/tracing.js';
import { InProcessWorkers } from './scheduling/in-process-workers.js';
import { type LocalWorkers, WorkerSupervisor } from './scheduling/worker-supervisor.js';
import { type WorkerLink } from './scheduling/worker-link.js';
import { type GatewayChild } from './cluster/child.js';
import { DirectScheduler } from './scheduling/direct-scheduler.js';
import { batchingSchedulerOf, SequenceScheduler } from './scheduling/sequence-scheduler.js';
import { AuditLog } from './tenants/audit-log.js';
import { Authenticator } from './tenants/authenticator.js';
import { LocalQuota } from './tenants/local-quota.js';
import { type QuotaLimiter } from './tenants/quota.js';
import { RedisQuota } from './tenants/redis-quota.js';
import { loadTenantsFile, TenantsFileError } from './tenants/tenants-file.js';
import { FABRIEK_VERSION } from '../core/version.js';
import { StartupError } from '../core/startup-error.js';
import { type RedisTarget } from '../core/redis-connection.js';
import { resolveRedis } from './redis-targets.js';
import {
  httpsServerOptions,
  type ListenerTls,
  type ListenerTlsFiles,
  loadListenerTls,
  loadWorkerTls,
  ReloadableServerCredentials,
  secureContextOptions,
  tlsPaths,
  type WorkerTls,
} from '../core/tls.js';
import { type CertificateWatch, TlsReloader } from '../core/tls-reloader.js';
import { logControl } from './log-settings.js';
import { SystemSharedMemory } from './shared-memory/system-shared-memory.js';

/** Extensions of the KServe/Triton protocol this server implements. */
export const EXTENSIONS = ['classification', 'binary_tensor_data', 'model_configuration', 'model_repository', 'model_repository(unload_dependents)', 'schedule_policy', 'statistics', 'parameters', 'logging', 'trace'] as const;

export { StartupError };

export interface RunningGateway {
  readonly grpcPort: number;
  /** 0 when --allow-http false. */
  readonly httpPort: number;
  /** 0 when --allow-metrics false. */
  readonly metricsPort: number;
  readonly models: ModelManager;
  readonly supervisor: LocalWorkers;
  /** How callers are admitted, for the ready line: `open`, or the number of tenants. */
  readonly tenants: number | 'open';
  /** Stops accepting, finishes in-flight requests, stops workers. */
  shutdown(): Promise<void>;
}

/** The repository's absolute path; StartupError when it is missing or not a directory. */
export async function checkRepository(dir: string): Promise<string> {
  const path = resolve(dir);
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new StartupError(`model repository '${dir}' does not exist`);
  if (!info.isDirectory()) throw new StartupError(`model repository '${dir}' is not a directory`);
  return path;
}

function bindGrpc(server: Server, address: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolvePort, reject) => {
    server.bindAsync(address, credentials, (error, port) => {
      if (error) reject(new StartupError(`cannot listen for gRPC on ${address}: ${error.message}`));
      else resolvePort(port);
    });
  });
}

/**
 * Node's HTTP/2 windows are 64 KB, per stream and for the whole connection:
 * a 600 KB request needs ten window updates, each a round trip through both
 * event loops, and every stream on the connection shares the one 64 KB
 * connection window. On a busy machine that capped a connection at a few
 * requests a second while thousands waited, none whole before its deadline
 * (issue 15). grpc-js has no server option for it, so the window is set on
 * its HTTP/2 settings (before bind) and on each session as it opens. Both
 * reach into grpc-js 1.14's server fields; if they are missing, nothing changes.
 * A session whose calls are refused before their message is read narrows
 * its stream window again for a while (grpc/stream-window.ts).
 */
function widenFlowControl(server: Server): void {
  const internals = server as unknown as {
    commonServerOptions?: { settings?: Record<string, unknown> };
  };
  const common = internals.commonServerOptions;
  if (common) common.settings = { ...common.settings, initialWindowSize: WIDE_WINDOW_BYTES };
}

/**
 * After bind, on each new HTTP/2 session of the gRPC server: the wide
 * connection window too, and its streams in a table that lets a closed stream
 * go (grpc/session-streams.ts).
 */
function tuneSessions(server: Server, log: Logger, sessions: Set<ServerHttp2Session>): void {
  const servers = (server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
  if (servers === undefined) log.warn('grpc-js keeps its HTTP/2 servers elsewhere than 1.14 did: gRPC sessions keep the default flow-control window and stream Map');
  let warned = false;
  const tune = (session: ServerHttp2Session): void => {
    session.setLocalWindowSize(WIDE_WINDOW_BYTES);
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    if (!useStreamTable(session) && !warned) {
      warned = true;
      log.warn(`Node ${process.version} keeps an HTTP/2 session's streams otherwise than Node 20: gRPC sessions keep its stream Map, and with it closed calls until a full GC`);
    }
  };
  for (const h of servers?.keys() ?? []) h.on('session', tune);
}

function listenHttp(http: HttpServer | HttpsServer, host: string, port: number): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const onError = (error: Error): void => reject(new StartupError(`cannot listen for HTTP on ${host}:${port}: ${error.message}`));
    http.once('error', onError);
    http.listen(port, host, () => {
      http.off('error', onError);
      const address = http.address();
      resolvePort(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}

async function loadTls(files: ListenerTlsFiles | undefined, log: Logger): Promise<ListenerTls | undefined> {
  if (!files) return undefined;
  if (files.rootCert && !files.mutual) {
    const prefix = files.rootCert.flag.replace('-root-cert', '');
    log.warn(`${files.rootCert.flag} is used only with ${prefix}-use-ssl-mutual true; client certificates are not checked`);
  }
  return loadListenerTls(files);
}

interface TenantParts {
  readonly authenticator: Authenticator | undefined;
  readonly quota: QuotaLimiter | undefined;
  readonly state: () => QuotaState | undefined;
  readonly audit: AuditLog | undefined;
  readonly count: number | 'open';
}

/** Tenants file, quota store and audit log; a bad file or an audit log that cannot be opened stops the start. */
async function startTenants(options: ServeOptions, quotaTarget: RedisTarget | undefined, log: Logger, child: GatewayChild | undefined): Promise<TenantParts> {
  let audit: AuditLog | undefined;
  if (options.auditLog !== undefined) {
    try {
      audit = await AuditLog.open(options.auditLog, (error) => log.error({ err: error, file: options.auditLog }, 'cannot write the audit log'));
    } catch (error) {
      throw new StartupError(`cannot open the audit log '${options.auditLog}': ${(error as Error).message}`);
    }
  }
  if (options.tenants === undefined) {
    log.warn('no --tenants file: the server is open to every caller, without API keys or quotas (local development)');
    return { authenticator: undefined, quota: undefined, state: () => undefined, audit, count: 'open' };
  }
  let config;
  try {
    config = await loadTenantsFile(options.tenants);
  } catch (error) {
    await audit?.close();
    if (error instanceof TenantsFileError) throw new StartupError(error.message);
    throw error;
  }
  let quota: QuotaLimiter;
  let state: () => QuotaState;
  if (child) {
    // Several gateway processes: the primary holds the limiter (buckets or Redis), so the limits hold across them.
    quota = child.quota();
    state = () => child.quotaState ?? { store: 'local', gateways: options.gatewayCountHint };
  } else if (quotaTarget !== undefined) {
    const shared = new RedisQuota({ url: quotaTarget, namespace: options.registryNamespace, log, gatewayCountHint: options.gatewayCountHint });
    await shared.start();
    quota = shared;
    state = () => ({ store: shared.mode, gateways: shared.gateways });
  } else {
    quota = new LocalQuota({ gateways: () => options.gatewayCountHint });
    state = () => ({ store: 'local', gateways: options.gatewayCountHint });
  }
  log.info(
    { file: options.tenants, tenants: config.tenants.map((t) => t.name), quotas: quotaTarget !== undefined ? 'redis' : 'local' },
    'tenants: every model call needs an API key',
  );
  return { authenticator: new Authenticator(config), quota, state, audit, count: config.tenants.length };
}

/** What SIGHUP reads or opens again. */
interface HangupTargets {
  readonly tenantsFile: string | undefined;
  readonly authenticator: Authenticator | undefined;
  readonly audit: AuditLog | undefined;
  /** Filled once the listeners are up. */
  readonly tls: readonly CertificateWatch[];
}

/**
 * SIGHUP re-reads the tenants file (rotated keys, changed models, quotas,
 * weights and priorities apply to calls from then on) and the public
 * listeners' TLS files, and reopens the audit log by its name (after
 * logrotate moved it); a file that does not load leaves the previous one in
 * force. Tenants reloads run one at a time.
 */
function reloadOnHangup(targets: HangupTargets, log: Logger): () => void {
  let reloading = Promise.resolve();
  return () => {
    const { tenantsFile: file, authenticator, audit, tls } = targets;
    // Each listener's TLS files are read again; a failure keeps the certificate in force (core/tls-reloader.ts).
    for (const reloader of tls) void reloader.reload();
    audit?.reopen().then(
      () => log.info('audit log reopened'),
      (error: unknown) => log.error({ reason: error instanceof Error ? error.message : String(error) }, 'audit log not reopened: lines go on to the file open before'),
    );
    if (file === undefined || authenticator === undefined) {
      if (tls.length === 0 && audit === undefined) log.warn('SIGHUP: no --tenants file, TLS files or audit log to reload; ignored');
      return;
    }
    reloading = reloading.then(async () => {
      try {
        const config = await loadTenantsFile(file);
        authenticator.replace(config);
        log.info({ file, tenants: config.tenants.map((t) => t.name) }, 'tenants file reloaded');
      } catch (error) {
        const reason = error instanceof TenantsFileError ? error.message : error instanceof Error ? error.message : String(error);
        log.error({ file, reason }, 'tenants file not reloaded: the previous one stays in force');
      }
    });
  };
}

/** The response cache of --cache-config, its metrics wired; undefined without the flag. */
async function startResponseCache(options: ServeOptions, log: Logger, metrics: MetricsRegistry | undefined): Promise<ResponseCache | undefined> {
  const config = options.cache;
  if (!config) return undefined;
  let store: ResponseStore | undefined;
  const onError = metrics ? registerCacheMetrics(metrics.registry, () => store) : undefined;
  if (config.kind === 'local') store = new LocalLru(config.sizeBytes, config.maxEntryBytes);
  else {
    const redis = new RedisCache(config, { log, ...(onError ? { onError } : {}) });
    await redis.start();
    store = redis;
  }
  log.info(describeCache(config), 'response cache on for models with response_cache { enable: true }');
  return new ResponseCache(store);
}

/**
 * The composition root of a gateway: wires repository, workers, schedulers
 * and the gRPC service. `child`: this process is one of several gateway
 * processes (--gateway-processes N, gateway/cluster): it uses the primary's
 * workers and asks it for what the processes share.
 */
export async function startGateway(options: ServeOptions, log: Logger = createLogger(options.logLevel, 'fabriek'), child?: GatewayChild): Promise<RunningGateway> {
  // Without one (--registry only), the models are those the registered workers loaded.
  const repository = options.modelRepository === undefined ? undefined : await checkRepository(options.modelRepository);
  if (options.trace) {
    await startTracing(options.trace, 'fabriek-gateway', 'gateway');
    // Local workers inherit it (worker/main.ts): they export their spans to the same endpoint.
    process.env[WORKER_TRACE_URL_ENV] = options.trace.url;
    log.info({ url: options.trace.url, ratio: options.trace.ratio }, 'OpenTelemetry tracing on');
  }
  // Before any worker starts: a bad certificate should fail in a second, not after the models load.
  const grpcTls = await loadTls(options.grpcTls, log);
  const httpTls = await loadTls(options.httpTls, log);
  // Mutual TLS to registered workers; local workers talk over a unix socket and need none.
  const workerTls = options.workerTls ? await loadWorkerTls(options.workerTls) : undefined;
  if (workerTls && options.registry === undefined) log.warn('--worker-tls-* given without --registry: local workers use a unix socket, so it is not used');
  // Spread into each connection to a worker as it opens: rotated files (below) reach the connections opened after.
  const workerClientTls = workerTls ? { ...workerTls.client } : undefined;
  const redis = await resolveRedis(options, log);
  const registryTarget = redis.registry;
  const tenants = await startTenants(options, redis.quota, log, child);
  // Filled once the listeners are up; SIGHUP reads their files again.
  const tlsReloaders: CertificateWatch[] = [];
  const onHangup = reloadOnHangup({ tenantsFile: options.tenants, authenticator: tenants.authenticator, audit: tenants.audit, tls: tlsReloaders }, log);
  process.on('SIGHUP', onHangup);
  const metrics = options.allowMetrics ? new MetricsRegistry({ responseCache: options.cache !== undefined }) : undefined;
  const responseCache = await startResponseCache(options, log, metrics);
  // A child's workers are the primary's: it neither detects GPUs nor plans workers.
  const specs = child ? [] : planLocalWorkers(options.gpus ?? detectGpus(), options.workers);
  const workerCount = child ? child.workerCount : specs.length;
  // On demand without --model-memory-budget: half the host's memory, shared by the local workers.
  const control: ModelControl =
    options.modelControl.mode === 'on-demand' && options.modelControl.budget === undefined
      ? { mode: 'on-demand', budget: defaultMemoryBudget(totalmem(), workerCount) }
      : options.modelControl;
  const models = new ModelManager({
    repository,
    log,
    defaultMaxBatchSize: options.defaultMaxBatchSize,
    maxQueueSize: options.maxQueueSize,
    batchingSloMs: options.batchingSloMs,
    control,
    // Several gateway processes load on demand onto the same workers: the primary plans the host's budget.
    ...(child && child.processes > 1 && control.mode === 'on-demand' ? { onDemandCoordinator: child.onDemandCoordinator() } : {}),
    // Several gateway processes: each sequence of a stateful model is kept by one of them.
    ...(child && child.processes > 1 ? { sequenceProcesses: child.sequenceProcesses() } : {}),
    ...(metrics ? { metrics } : {}),
    ...(responseCache ? { responseCache } : {}),
  });
  if (metrics && child) child.shareMetrics(metrics.registry, models);
  metrics?.setPendingProvider(() =>
    models.list().flatMap((v) => (v.serving ? [{ model: v.name, version: String(v.version), pending: v.serving.scheduler.pending }] : [])),
  );
  // Several gateway processes: one of them polls, and what it applies reaches the others through the primary.
  const polls = control.mode === 'poll' && repository !== undefined && (child === undefined || child.polls);
  const poller = polls
    ? new RepositoryPoller({ directory: repository as string, intervalMs: control.pollSecs * 1000, models: child ? child.broadcastPolled(models) : models.polled, log })
    : undefined;
  // Before the scan: a change made while the models load is seen by the first poll.
  await poller?.baseline();
  metrics?.setCostProvider(() =>
    models.list().flatMap((v) => {
      const scheduler = v.serving && batchingSchedulerOf(v.serving.scheduler);
      if (!(scheduler instanceof DynamicBatcher || scheduler instanceof DirectScheduler)) return [];
      return scheduler.costs
        .entries()
        .flatMap(([kind, cost]) => cost.points().map((p) => ({ model: v.name, version: String(v.version), kind, rows: p.rows, seconds: (cost.estimateNs(p.rows) ?? 0) / 1e9 })));
    }),
  );

  metrics?.setSloProvider(() =>
    models.list().flatMap((v) => {
      const scheduler = v.serving?.scheduler;
      if (!(scheduler instanceof DynamicBatcher) || scheduler.sloNs === 0n) return [];
      return [
        {
          model: v.name,
          version: String(v.version),
          sloSeconds: Number(scheduler.sloNs) / 1e9,
          computedPastDeadline: scheduler.computedPastDeadline,
          fullBatchRows: scheduler.fullBatchRows,
        },
      ];
    }),
  );

  // Per worker only where there is a choice: a version on one worker has its model-level series.
  metrics?.setWorkerShareProvider(() =>
    models.list().flatMap((v) => {
      const slots = v.serving?.slots;
      // Asked before the views are built: a thousand models on one worker build nothing at each scrape.
      if (slots === undefined || slots.workers < 2) return [];
      return slots.placements().map((p) => ({
        model: v.name,
        version: String(v.version),
        worker: p.worker,
        sent: p.sent,
        out: p.busy,
        executionSeconds: p.execNs === undefined ? undefined : p.execNs / 1e9,
        othersWaitSeconds: p.othersNs === undefined ? undefined : p.othersNs / 1e9,
        computeRatio: p.computeRatio,
      }));
    }),
  );

  metrics?.setSequenceProvider(() =>
    models.list().flatMap((v) => {
      const scheduler = v.serving?.scheduler;
      if (!(scheduler instanceof SequenceScheduler)) return [];
      const { candidates, backlog } = scheduler.sequences;
      return [{ model: v.name, version: String(v.version), running: candidates, waiting: backlog, endedIdle: scheduler.endedIdle }];
    }),
  );

  const workersUp = new Set<string>();
  let remoteUp = 0;
  const countWorkers = (): void => metrics?.setWorkers({ up: workersUp.size + remoteUp, down: Math.max(0, workerCount - workersUp.size) });
  countWorkers();
  const workerEvents = {
    maxMessageBytes: options.maxMessageBytes,
    pingTimeoutMs: options.workerPingTimeoutMs,
    log,
    onUp: async (connection: WorkerLink) => {
      await models.addWorker(connection);
      workersUp.add(connection.endpoint.id);
      countWorkers();
    },
    onDown: (workerId: string) => {
      workersUp.delete(workerId);
      countWorkers();
      models.removeWorker(workerId);
    },
  };
  const supervisor: LocalWorkers = child
    ? child.workers(workerEvents)
    : options.localWorkers === 'in-process'
      ? new InProcessWorkers(specs, { ...workerEvents, workerArgs: localWorkerArgs(options) })
      : new WorkerSupervisor(specs, { ...workerEvents, logLevel: options.logLevel, workerArgs: localWorkerArgs(options) });
  child?.serve(models, log);
  // The scan (a stat per model directory) and the workers' start (a process
  // and its ONNX Runtime threads each) overlap: both take a second or more
  // with a thousand models. A worker that comes up first places nothing:
  // nothing is ready yet; loadAll loads everything once both are done.
  const scanned = models.scan();
  try {
    await Promise.all([scanned, supervisor.start()]);
  } catch (error) {
    await scanned.catch(() => undefined);
    await supervisor.stop();
    throw error;
  }
  await models.loadAll();
  poller?.start();
  if (!responseCache) {
    const wanting = models.list().filter((v) => v.serving && cachePolicyOf(v.serving.config).enabled);
    if (wanting.length > 0) log.warn({ models: wanting.map((v) => v.key) }, 'response_cache is enabled in these models but the server has no --cache-config: they run uncached');
  }

  // Workers registered in Redis by `fabriek worker --registry` (other machines).
  let registry: { watcher: RegistryWatcher; remote: RemoteWorkers } | undefined;
  if (options.registry !== undefined) {
    const remote = new RemoteWorkers({
      models,
      maxMessageBytes: options.maxMessageBytes,
      pingTimeoutMs: options.workerPingTimeoutMs,
      ...(workerClientTls ? { tls: workerClientTls } : {}),
      log,
      onChange: (up) => {
        remoteUp = up;
        countWorkers();
      },
    });
    const watcher = new RegistryWatcher({ url: registryTarget ?? options.registry, namespace: options.registryNamespace, log, listener: remote });
    await watcher.start();
    await remote.settled();
    registry = { watcher, remote };
    log.info({ registry: registryTarget?.display, workers: watcher.workers().length }, 'following the worker registry');
  }

  let draining = false;
  // Triton's system shared memory, with --system-shared-memory only (see the flag).
  const sharedMemory = options.systemSharedMemory ? new SystemSharedMemory(child ? { peers: child.sharedMemoryPeers() } : {}) : undefined;
  if (sharedMemory) child?.useSharedMemory(sharedMemory);
  const info: ServerInfo = {
    name: 'fabriek',
    version: FABRIEK_VERSION,
    extensions: sharedMemory ? [...EXTENSIONS, 'system_shared_memory'] : EXTENSIONS,
    isDraining: () => draining,
    strictReadiness: options.strictReadiness,
  };
  const admission = new Admission({
    ...(tenants.authenticator ? { authenticator: tenants.authenticator } : {}),
    ...(tenants.quota ? { quota: tenants.quota } : {}),
    ...(tenants.audit ? { audit: tenants.audit } : {}),
    ...(metrics ? { metrics: new TenantMetrics(metrics.registry, tenants.state) } : {}),
    knownModel: (name) => models.versionsOf(name).length > 0,
  });
  /** The gRPC server's open sessions: what a shutdown that reaches its timeout reports it waited for. */
  const grpcSessions = new Set<ServerHttp2Session>();
  const windows = new StreamWindows({ onError: (error) => log.debug({ err: error }, 'a gRPC session did not take its new stream window') });
  const inflight = new InflightGate(options.maxInflightBytes, { maxWaitMs: options.maxInflightWaitMs });
  metrics?.setInflightProvider(() => inflight);
  metrics?.setStreamWindowProvider(() => windows);
  const load = options.loadReportIntervalMs > 0 ? new LoadReporter(models, options.loadReportIntervalMs) : undefined;
  const server = new Server({
    // Channelz (grpc-js's per-call and per-socket counters for its admin service, which Fabriek
    // does not serve) costs a tracker object, closures and counter updates on every call.
    'grpc.enable_channelz': 0,
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.max_send_message_length': options.maxMessageBytes,
    // Metadata reaches the first interceptor first. With tenants, their check comes first: an unknown key or a
    // tenant over its quota takes no place at the gate, and the gate knows whose share a call counts against.
    interceptors: [...(admission.open ? [] : [earlyRefusals(admission, log, windows)]), inflightBound(inflight, log, windows)],
  });
  // Triton's logging extension; with several gateway processes a change reaches them all (and the primary, which
  // passes it to the local workers); a gateway of one process passes it to its own.
  const logging = logControl(log, child ? (level) => child.shareLogLevel(level) : async (level) => supervisor.setLogLevel(level));
  // Triton's trace extension; the same reach as the log level's.
  const tracing = traceControl(
    (from, to) => log.info({ from, to }, 'trace settings changed (TraceSetting)'),
    child ? (policy) => child.shareTracePolicy(policy) : undefined,
  );
  server.addService(
    withMalformedRequests(inferenceServiceDefinition()),
    createInferenceService(models, info, log, admission, load, inflight, logging, tracing, sharedMemory),
  );
  load?.addToServer(server);
  const health = new ServerHealth(() => serverReady(models, info));
  server.addService(healthServiceDefinition, health.handlers);
  if (options.grpcReflection) await addReflection(server);
  widenFlowControl(server);
  let grpcPort: number;
  try {
    // With TLS, credentials whose files can be replaced while serving (with mutual TLS a client certificate from the root cert is required).
    const reloadable = grpcTls ? new ReloadableServerCredentials(grpcTls) : undefined;
    grpcPort = await bindGrpc(server, `${options.grpcAddress}:${options.grpcPort}`, reloadable ?? ServerCredentials.createInsecure());
    const grpcFiles = options.grpcTls;
    if (grpcTls && grpcFiles && reloadable) {
      tlsReloaders.push(
        new TlsReloader({ listener: 'grpc', paths: tlsPaths(grpcFiles), loaded: grpcTls, load: () => loadListenerTls(grpcFiles), apply: (tls) => reloadable.reload(tls), log }),
      );
    }
    tuneSessions(server, log, grpcSessions);
  } catch (error) {
    await supervisor.stop();
    throw error;
  }
  let http: HttpServer | HttpsServer | undefined;
  let httpPort = 0;
  if (options.allowHttp) {
    http = createHttpServer(models, info, log, {
      maxBodyBytes: options.maxMessageBytes,
      admission,
      inflight,
      logging,
      tracing,
      ...(sharedMemory ? { sharedMemory } : {}),
      ...(load ? { load } : {}),
      ...(httpTls ? { tls: httpsServerOptions(httpTls) } : {}),
    });
    try {
      httpPort = await listenHttp(http, options.httpAddress, options.httpPort);
    } catch (error) {
      server.forceShutdown();
      await supervisor.stop();
      throw error;
    }
  }

  let metricsServer: HttpServer | HttpsServer | undefined;
  let metricsPort = 0;
  if (metrics) {
    // /metrics binds to --http-address beside the REST API, so it follows HTTP's TLS settings.
    // A child answers /metrics with every process's metrics, aggregated by the primary.
    metricsServer = createMetricsServer(metrics, httpTls ? httpsServerOptions(httpTls) : undefined, child ? () => child.metricsText() : undefined);
    try {
      metricsPort = await listenHttp(metricsServer, options.httpAddress, options.metricsPort);
    } catch (error) {
      server.forceShutdown();
      http?.close();
      await supervisor.stop();
      throw error;
    }
  }
  const httpFiles = options.httpTls;
  if (httpTls && httpFiles) {
    // HTTP/REST and /metrics present the same certificate.
    const servers = [http, metricsServer].filter((s): s is HttpsServer => s instanceof HttpsServer);
    const apply = (tls: ListenerTls): void => {
      for (const s of servers) s.setSecureContext(secureContextOptions(tls));
    };
    tlsReloaders.push(new TlsReloader({ listener: 'http', paths: tlsPaths(httpFiles), loaded: httpTls, load: () => loadListenerTls(httpFiles), apply, log }));
  }
  const workerFiles = options.workerTls;
  if (workerTls && workerFiles && workerClientTls && options.registry !== undefined) {
    const apply = (tls: WorkerTls): void => void Object.assign(workerClientTls, tls.client);
    tlsReloaders.push(new TlsReloader({ listener: 'worker', paths: tlsPaths(workerFiles), loaded: workerTls, load: () => loadWorkerTls(workerFiles), apply, log }));
  }
  await Promise.all(tlsReloaders.map((r) => r.baseline()));
  for (const r of tlsReloaders) r.start(options.tlsPollSecs * 1000);
  metrics?.setTlsProvider(() =>
    tlsReloaders.map((r) => ({ listener: r.listener, notAfterSeconds: r.current.notAfter.getTime() / 1000, reloads: r.reloads, failures: r.failures })),
  );

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    shuttingDown ??= (async () => {
      process.off('SIGHUP', onHangup);
      draining = true;
      // Watching balancers hear NOT_SERVING now, while requests are still served (the drain grace).
      health.refresh();
      await poller?.stop();
      load?.stop();
      windows.close();
      for (const r of tlsReloaders) r.stop();
      // Workers that exit from now on stay down: SIGTERM to the process group
      // reaches them too, and a worker restarted now would only be stopped again.
      supervisor.stopRestarting();
      if (options.drainGraceSecs > 0) {
        // Not ready, but still serving: load balancers see readiness drop and move away.
        log.info({ drainGraceSecs: options.drainGraceSecs }, 'shutting down: not ready; still accepting requests during the drain grace');
        await new Promise((r) => setTimeout(r, options.drainGraceSecs * 1000));
      }
      health.endAll();
      log.info('shutting down: no new requests; finishing those in flight');
      await new Promise<void>((done) => {
        let grpcOpen = true;
        let httpOpen = http !== undefined;
        const force = setTimeout(() => {
          // What held the graceful path, for whoever finds a shutdown that took this long.
          const waitingFor = { grpc: grpcOpen, http: httpOpen, grpcSessions: grpcSessions.size, sessions: [...grpcSessions].slice(0, 8).map((s) => describeSession(s)) };
          log.warn({ exitTimeoutSecs: options.exitTimeoutSecs, waitingFor }, 'exit timeout reached; cancelling remaining requests');
          server.forceShutdown();
          http?.closeAllConnections();
          done();
        }, options.exitTimeoutSecs * 1000);
        const closed = (): void => {
          if (grpcOpen || httpOpen) return;
          clearTimeout(force);
          done();
        };
        server.tryShutdown(() => {
          grpcOpen = false;
          closed();
        });
        http?.close(() => {
          httpOpen = false;
          closed();
        });
      });
      await models.stop(unavailable('server is shutting down'));
      await sharedMemory?.close();
      await admission.close();
      await responseCache?.close();
      await registry?.watcher.stop();
      registry?.remote.closeAll();
      await supervisor.stop();
      metricsServer?.closeAllConnections();
      metricsServer?.close();
      await stopTracing();
      log.info('stopped');
    })();
    return shuttingDown;
  };

  return { grpcPort, httpPort, metricsPort, models, supervisor, tenants: tenants.count, shutdown };
}
