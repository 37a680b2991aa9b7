import { parseArgs } from 'node:util';
import { parseRedisUrl, RedisConfigError, type RedisSecretFlags, sentinelUrl } from '../core/redis-connection.js';
import { type ListenerTlsFiles, type WorkerTlsFiles, workerTlsFromFlags } from '../core/tls.js';
import { isLogLevel, LOG_LEVELS, type LogLevel } from '../core/log-levels.js';
import { MAX_SLO_MS } from './batching/slo-config.js';
import { type ModelControl, modelControlOf } from './repository/control-mode.js';
import { parseTraceConfig, TRACE_CONFIG_USAGE, type TraceConfig, TraceConfigError } from '../core/trace-config.js';
import { type CacheConfig, CacheConfigError, parseCacheConfig } from './cache/cache-config.js';
import { MAX_GATEWAY_PROCESSES } from './cluster/gateway-processes.js';

/** Everything `fabriek serve` can be told. Flag names follow tritonserver's where one exists. */
export interface ServeOptions {
  /** undefined only with a registry: the gateway serves the models its registered workers loaded. */
  readonly modelRepository: string | undefined;
  readonly grpcAddress: string;
  readonly grpcPort: number;
  /** HTTP/REST and metrics bind here (tritonserver's --http-address). */
  readonly httpAddress: string;
  readonly httpPort: number;
  readonly metricsPort: number;
  readonly allowHttp: boolean;
  readonly allowMetrics: boolean;
  /** Local worker processes; undefined = one per GPU, else one CPU worker. */
  readonly workers: number | undefined;
  /** GPU ids to use; undefined = detect with nvidia-smi. */
  readonly gpus: readonly number[] | undefined;
  readonly logLevel: LogLevel;
  readonly maxMessageBytes: number;
  readonly defaultMaxBatchSize: number;
  readonly maxQueueSize: number;
  /** SLO-aware batching for dynamically batched models without `batching_slo_ms` of their own; 0 = off. */
  readonly batchingSloMs: number;
  /** Request bytes the gateway holds in flight at most; past it new inferences get RESOURCE_EXHAUSTED / 429. */
  readonly maxInflightBytes: number;
  /** Bound on the time the bytes in flight take to drain at the recent answer rate; 0 = none. */
  readonly maxInflightWaitMs: number;
  readonly strictReadiness: boolean;
  readonly exitTimeoutSecs: number;
  /** --tls-poll-secs: how often the public listeners' TLS files are checked for a change (0 = only on SIGHUP). */
  readonly tlsPollSecs: number;
  /** --grpc-reflection: serve gRPC server reflection (grpcurl without .proto files). */
  readonly grpcReflection: boolean;
  /** --system-shared-memory: Triton's system shared memory extension (not with --tenants). */
  readonly systemSharedMemory: boolean;
  /** Redis URL of the worker registry (redis-sentinel:// when given as Sentinel flags); undefined = local workers only. */
  readonly registry: string | undefined;
  /** Redis for the tenant quotas when not the registry's (may be redis-cluster://); undefined = the registry's. */
  readonly quotaRedis: string | undefined;
  /** Where the registry's password and TLS files are (never the secrets themselves). */
  readonly registrySecrets: RedisSecretFlags;
  readonly registryNamespace: string;
  /** On SIGTERM: not ready at once, but still accepting for this long (load balancers move away). */
  readonly drainGraceSecs: number;
  /** How often the load reported to balancers (ORCA, /v2/health/load) is sampled; 0 = no reports. */
  readonly loadReportIntervalMs: number;
  /** TLS for gRPC (tritonserver's --grpc-use-ssl… flags); undefined = plaintext. */
  readonly grpcTls: ListenerTlsFiles | undefined;
  /** TLS for HTTP/REST and metrics (Fabriek's --http-use-ssl… flags); undefined = plaintext. */
  readonly httpTls: ListenerTlsFiles | undefined;
  /** Mutual TLS between gateways and workers (--worker-tls-*); undefined = plaintext. */
  readonly workerTls: WorkerTlsFiles | undefined;
  /** Tenants file (API keys, model access, quotas); undefined = open to every caller. */
  readonly tenants: string | undefined;
  /** Audit log: a file, or "-" for stdout; undefined = none. */
  readonly auditLog: string | undefined;
  /** Gateways sharing the tenant quotas when Redis cannot say (each enforces limit ÷ N). */
  readonly gatewayCountHint: number;
  /** A worker silent this long (no answer to pings) is lost; 0 = no liveness check. */
  readonly workerPingTimeoutMs: number;
  /** --model-control-mode, --load-model, --repository-poll-secs. */
  readonly modelControl: ModelControl;
  /** The response cache (tritonserver's --cache-config); undefined = none. */
  readonly cache: CacheConfig | undefined;
  /** OpenTelemetry tracing (tritonserver's --trace-config); undefined = off. */
  readonly trace: TraceConfig | undefined;
  /** --gateway-processes: a count, or auto (gateway/cluster/gateway-processes.ts); 1 with in-process workers. */
  readonly gatewayProcesses: number | 'auto';
  /** --local-workers: local workers in processes of their own, or in the gateway's process. */
  readonly localWorkers: LocalWorkersMode;
  /** --inline-run-us for the local workers (`fabriek worker`'s flag); undefined = their default. */
  readonly inlineRunUs: number | undefined;
}

export type LocalWorkersMode = 'process' | 'in-process';

/** `fabriek worker` flags that `fabriek serve` passes on to its local workers. */
export function localWorkerArgs(options: Pick<ServeOptions, 'inlineRunUs'>): string[] {
  return options.inlineRunUs === undefined ? [] : ['--inline-run-us', String(options.inlineRunUs)];
}

export class UsageError extends Error {
  override name = 'UsageError';
}

function integer(flag: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${flag}: expected an integer from ${min} to ${max}, got '${raw}'`);
  }
  return n;
}

function nonEmpty(flag: string, raw: string | undefined): string | undefined {
  if (raw === '') throw new UsageError(`--${flag}: expected a file name`);
  return raw;
}

function boolean(flag: string, raw: string | undefined, fallback: boolean): boolean {
  if (raw === undefined) return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new UsageError(`--${flag}: expected true or false, got '${raw}'`);
}

export const SERVE_USAGE = `Usage: fabriek serve --model-repository DIR [options]
       fabriek serve --registry URL [options]     (no repository: serve what registered workers loaded)

  --model-repository DIR      model repository (required unless --registry: without one the gateway
                              takes each model's config and signature from the workers' registry records)
  --grpc-address HOST         address the gRPC server binds (default 0.0.0.0)
  --grpc-port N               KServe v2 gRPC port (default 8001; 0 = any free port)
  --http-address HOST         address the HTTP and metrics servers bind (default 0.0.0.0)
  --http-port N               KServe v2 HTTP/REST port (default 8000; 0 = any free port)
  --metrics-port N            Prometheus /metrics port (default 8002; 0 = any free port)
  --allow-http BOOL           serve the HTTP/REST API (default true)
  --allow-metrics BOOL        serve /metrics (default true)
  --gateway-processes N|auto  gateway processes serving the same ports (node:cluster), sharing the
                              local workers (default auto: 1 on hosts with fewer than 8 cores, else
                              min(8, floor(cores / 4)); cores within a container's CPU quota);
                              1 = one process, as without the flag
  --workers N                 local workers (default: one per GPU, else 1;
                              0 with --registry: only registered workers)
  --local-workers MODE        process: each local worker in a process of its own, restarted if it
                              crashes (default); in-process: in the gateway's process, called
                              directly: less CPU per request and latency, but a crash in ONNX
                              Runtime ends the gateway; one gateway process
  --inline-run-us N           local workers: a CPU instance whose runs hold their thread at most N µs
                              runs on the worker's main thread (default 300; 0 = never; see fabriek
                              worker --help)
  --gpus 0,1                  GPUs to use, one worker each (default: all that nvidia-smi lists)
  --log-level LEVEL           fatal|error|warn|info|debug|trace|silent (default info)
  --max-message-bytes N       largest gRPC message accepted or sent (default 1073741824)
  --default-max-batch-size N  max_batch_size for batchable models without one (default 4)
  --max-queue-size N          requests waiting per model version (default 4096)
  --batching-slo-ms MS        SLO-aware batching for models with dynamic_batching and no
                              batching_slo_ms parameter of their own (default 0: off)
  --max-inflight-bytes N      request bytes held in flight by the gateway, all models (default 268435456);
                              past it new inferences are refused at once: RESOURCE_EXHAUSTED / HTTP 429
  --max-inflight-wait-ms MS   also refuse so when the bytes in flight would take longer than MS to drain
                              at the rate the gateway answered them lately (default 0: off)
  --grpc-reflection BOOL      serve gRPC server reflection, so grpcurl and similar tools list and call
                              the services without .proto files (default false)
  --system-shared-memory BOOL Triton's system shared memory: clients on this host register regions of
                              /dev/shm objects and send or receive tensors through them; the gateway
                              reads and writes any object a caller names, so not with --tenants
                              (default false)
  --strict-readiness BOOL     ready only when every model is READY (default true)
  --exit-timeout-secs N       time in-flight requests get on shutdown (default 30)
  --drain-grace-secs N        on SIGTERM, not ready at once but still accepting requests for N s,
                              so load balancers move away first (default 0)
  --load-report-interval-ms N how often the load reported to balancers is sampled: ORCA's
                              endpoint-load-metrics-bin trailer and OpenRcaService, and
                              GET /v2/health/load (default 1000; 0 = no reports)
  --registry URL              Redis worker registry: also use the workers registered there (fabriek
                              worker --registry …). redis://[user@]host:port[/db], rediss:// (TLS), or
                              redis-sentinel://host:port[,host:port…]/MASTER[/db] (follows failovers)
  --registry-sentinels H:P,…  Sentinel addresses, with --registry-sentinel-name NAME (instead of --registry)
  --registry-password-file F  the Redis password is this file's content (else $FABRIEK_REGISTRY_PASSWORD;
                              a password in the URL works too, but ps shows it)
  --registry-tls-ca FILE      CA the rediss:// server's certificate must chain to (default: system CAs)
  --registry-tls-cert FILE, --registry-tls-key FILE
                              client certificate and key for Redis servers with tls-auth-clients yes
  --quota-redis URL           Redis for the tenant quotas, if not the registry's: the same URL forms, or
                              redis-cluster://host:port[,host:port…] (Redis Cluster); same password and TLS
  --registry-namespace NAME   key prefix in Redis, shared with the workers (default fabriek)
  --worker-ping-timeout-ms N  a worker (local or registered) that answers nothing, not even the
                              gateway's pings (sent every min(N/3, 1000) ms), for N ms is lost: its
                              calls are retried elsewhere, a local one is killed and restarted
                              (default 3000; 0 = off, else 100 to 600000)
  --model-control-mode MODE   none (load every model at start; default), explicit (load only
                              --load-model ones; the rest through the repository API), poll
                              (load every model, then follow the repository on disk) or on-demand
                              (load a model at its first inference request; unload the least
                              recently used idle ones to stay within --model-memory-budget)
  --load-model NAME           with explicit: a model to load at start (repeatable; '*' = all)
  --repository-poll-secs N    with poll: seconds between rescans of the repository (default 15)
  --model-memory-budget SIZE  with on-demand: what the models may take per worker, bytes with a
                              unit (4GiB, 512MiB, 2GB) or a count (100models); a model's size is
                              its .onnx file plus 256 KiB (default: half the host's memory,
                              shared between the local workers)
  --trace-config SETTING      OpenTelemetry tracing, as tritonserver's flag (repeatable):
                              mode=opentelemetry, opentelemetry,url=URL (OTLP/HTTP protobuf,
                              default OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces or
                              http://localhost:4318/v1/traces), rate=N (sample 1 request in N;
                              0 = none), fraction=F (0..1); workers export to the same URL
  --cache-config CACHE,KEY=VALUE
                              response cache for models with response_cache { enable: true }, as
                              tritonserver's flag (repeatable; several KEY=VALUE in one flag too):
                              local,size=BYTES[,max_entry_bytes=N]   in-process LRU bounded by bytes
                              redis,host=H,port=P[,user=U,password=P,db=N,connect_timeout=MS,
                              socket_timeout=MS,ttl=SECONDS,max_entry_bytes=N,namespace=NAME]
                              shared by every gateway on that Redis (default ttl 3600, entries up to
                              1 MiB); when Redis fails, requests are served uncached

TLS (PEM files; the gRPC flags are tritonserver's, the HTTP ones Fabriek's and also cover metrics):
  --grpc-use-ssl BOOL         serve gRPC over TLS (default false)
  --grpc-use-ssl-mutual BOOL  also require a client certificate from --grpc-root-cert (implies TLS)
  --grpc-server-cert FILE     server certificate chain
  --grpc-server-key FILE      server private key
  --grpc-root-cert FILE       CA bundle that client certificates must chain to
  --http-use-ssl BOOL, --http-use-ssl-mutual BOOL, --http-server-cert FILE,
  --http-server-key FILE, --http-root-cert FILE
                              the same for HTTP/REST and /metrics
  --worker-tls-cert FILE, --worker-tls-key FILE, --worker-tls-ca FILE
                              mutual TLS between gateways and remote workers (all three or none)
  --tls-poll-secs N           seconds between checks of the gRPC and HTTP TLS files: changed files are
                              read, checked and put in force for new connections (default 10; 0 = only
                              on SIGHUP)
  --tenants FILE              tenants (API keys as SHA-256 hashes, model globs, quotas, weights), YAML or
                              JSON; turns authentication on. Without it the server is open to every caller.
                              Quotas are shared through the --registry Redis when given
  --audit-log FILE            one JSON line per request (tenant, model, status, bytes, latency); - = stdout
  --gateway-count-hint N      gateways sharing the quotas, for the local share (limit ÷ N) each enforces
                              while Redis is unreachable or absent (default 1; Redis tells when it can)
`;

export function parseServeOptions(argv: readonly string[]): ServeOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        'model-repository': { type: 'string' },
        'grpc-address': { type: 'string' },
        'grpc-port': { type: 'string' },
        'http-address': { type: 'string' },
        'http-port': { type: 'string' },
        'metrics-port': { type: 'string' },
        'allow-http': { type: 'string' },
        'allow-metrics': { type: 'string' },
        workers: { type: 'string' },
        'local-workers': { type: 'string' },
        'inline-run-us': { type: 'string' },
        gpus: { type: 'string' },
        'log-level': { type: 'string' },
        'max-message-bytes': { type: 'string' },
        'default-max-batch-size': { type: 'string' },
        'max-queue-size': { type: 'string' },
        'batching-slo-ms': { type: 'string' },
        'max-inflight-bytes': { type: 'string' },
        'max-inflight-wait-ms': { type: 'string' },
        'strict-readiness': { type: 'string' },
        'exit-timeout-secs': { type: 'string' },
        'tls-poll-secs': { type: 'string' },
        'grpc-reflection': { type: 'string' },
        'system-shared-memory': { type: 'string' },
        'load-report-interval-ms': { type: 'string' },
        'drain-grace-secs': { type: 'string' },
        registry: { type: 'string' },
        'registry-sentinels': { type: 'string' },
        'registry-sentinel-name': { type: 'string' },
        'registry-password-file': { type: 'string' },
        'registry-tls-ca': { type: 'string' },
        'registry-tls-cert': { type: 'string' },
        'registry-tls-key': { type: 'string' },
        'registry-namespace': { type: 'string' },
        'quota-redis': { type: 'string' },
        'grpc-use-ssl': { type: 'string' },
        'grpc-use-ssl-mutual': { type: 'string' },
        'grpc-server-cert': { type: 'string' },
        'grpc-server-key': { type: 'string' },
        'grpc-root-cert': { type: 'string' },
        'http-use-ssl': { type: 'string' },
        'http-use-ssl-mutual': { type: 'string' },
        'http-server-cert': { type: 'string' },
        'http-server-key': { type: 'string' },
        'http-root-cert': { type: 'string' },
        'worker-tls-cert': { type: 'string' },
        'worker-tls-key': { type: 'string' },
        'worker-tls-ca': { type: 'string' },
        tenants: { type: 'string' },
        'audit-log': { type: 'string' },
        'gateway-count-hint': { type: 'string' },
        'worker-ping-timeout-ms': { type: 'string' },
        'model-control-mode': { type: 'string' },
        'load-model': { type: 'string', multiple: true },
        'repository-poll-secs': { type: 'string' },
        'model-memory-budget': { type: 'string' },
        'cache-config': { type: 'string', multiple: true },
        'trace-config': { type: 'string', multiple: true },
        'gateway-processes': { type: 'string' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const repo = values['model-repository'];
  if (repo === '') throw new UsageError('--model-repository: expected a directory');
  const logLevel = values['log-level'] ?? 'info';
  if (!isLogLevel(logLevel)) {
    throw new UsageError(`--log-level: expected one of ${LOG_LEVELS.join(', ')}, got '${logLevel}'`);
  }
  const gpusRaw = values.gpus;
  let gpus: number[] | undefined;
  if (gpusRaw !== undefined) {
    gpus = gpusRaw === '' ? [] : gpusRaw.split(',').map((g) => integer('gpus', g.trim(), 0, 0, 1023));
  }
  const workersRaw = values.workers;
  const registry = registryUrl(values.registry, values['registry-sentinels'], values['registry-sentinel-name']);
  const registrySecrets: RedisSecretFlags = {
    passwordFile: nonEmpty('registry-password-file', values['registry-password-file']),
    tlsCa: nonEmpty('registry-tls-ca', values['registry-tls-ca']),
    tlsCert: nonEmpty('registry-tls-cert', values['registry-tls-cert']),
    tlsKey: nonEmpty('registry-tls-key', values['registry-tls-key']),
  };
  const quotaRedis = values['quota-redis'];
  if (quotaRedis !== undefined) {
    try {
      parseRedisUrl(quotaRedis);
    } catch (error) {
      if (error instanceof RedisConfigError) throw new UsageError(`--quota-redis: ${error.message}`);
      throw error;
    }
  }
  if (registry === undefined && quotaRedis === undefined) {
    const flags: Readonly<Record<string, string | readonly string[] | undefined>> = values;
    const stray = ['password-file', 'tls-ca', 'tls-cert', 'tls-key'].find((f) => flags[`registry-${f}`] !== undefined);
    if (stray) throw new UsageError(`--registry-${stray} needs --registry, --registry-sentinels or --quota-redis`);
  }
  if (repo === undefined) {
    if (registry === undefined) {
      throw new UsageError('--model-repository is required (or --registry: serve the models the registered workers loaded)');
    }
    if (workersRaw !== undefined && workersRaw !== '0') {
      throw new UsageError('--workers needs --model-repository: local workers load their models from it (without one the gateway serves registered workers only)');
    }
    const mode = values['model-control-mode'];
    if (mode !== undefined && mode !== 'none') {
      throw new UsageError(`--model-control-mode ${mode} needs --model-repository: without one the models are those the registered workers loaded`);
    }
  }
  const systemSharedMemory = boolean('system-shared-memory', values['system-shared-memory'], false);
  if (systemSharedMemory && values.tenants !== undefined) {
    throw new UsageError('--system-shared-memory: not with --tenants (a caller names any object in /dev/shm, which the gateway then reads and writes as itself)');
  }
  const registryNamespace = values['registry-namespace'] ?? 'fabriek';
  if (!/^[\w.-]+$/.test(registryNamespace)) {
    throw new UsageError(`--registry-namespace: only letters, digits, _ . - are allowed, got '${registryNamespace}'`);
  }
  return {
    modelRepository: repo,
    grpcAddress: values['grpc-address'] ?? '0.0.0.0',
    grpcPort: integer('grpc-port', values['grpc-port'], 8001, 0, 65535),
    httpAddress: values['http-address'] ?? '0.0.0.0',
    httpPort: integer('http-port', values['http-port'], 8000, 0, 65535),
    metricsPort: integer('metrics-port', values['metrics-port'], 8002, 0, 65535),
    allowHttp: boolean('allow-http', values['allow-http'], true),
    allowMetrics: boolean('allow-metrics', values['allow-metrics'], true),
    // No repository: nothing to load onto local workers.
    workers: repo === undefined ? 0 : workersRaw === undefined ? undefined : integer('workers', workersRaw, 1, registry === undefined ? 1 : 0, 1024),
    gpus,
    logLevel,
    maxMessageBytes: integer('max-message-bytes', values['max-message-bytes'], 1 << 30, 1 << 20, 2 ** 31 - 1),
    defaultMaxBatchSize: integer('default-max-batch-size', values['default-max-batch-size'], 4, 1, 1 << 20),
    maxQueueSize: integer('max-queue-size', values['max-queue-size'], 4096, 1, 1 << 24),
    batchingSloMs: integer('batching-slo-ms', values['batching-slo-ms'], 0, 0, MAX_SLO_MS),
    maxInflightBytes: integer('max-inflight-bytes', values['max-inflight-bytes'], 256 << 20, 1 << 20, 2 ** 44),
    maxInflightWaitMs: integer('max-inflight-wait-ms', values['max-inflight-wait-ms'], 0, 0, 3_600_000),
    strictReadiness: boolean('strict-readiness', values['strict-readiness'], true),
    grpcReflection: boolean('grpc-reflection', values['grpc-reflection'], false),
    systemSharedMemory,
    exitTimeoutSecs: integer('exit-timeout-secs', values['exit-timeout-secs'], 30, 0, 3600),
    tlsPollSecs: integer('tls-poll-secs', values['tls-poll-secs'], 10, 0, 86_400),
    drainGraceSecs: integer('drain-grace-secs', values['drain-grace-secs'], 0, 0, 3600),
    loadReportIntervalMs: integer('load-report-interval-ms', values['load-report-interval-ms'], 1000, 0, 3_600_000),
    registry,
    quotaRedis,
    registrySecrets,
    registryNamespace,
    grpcTls: listenerTls('grpc', values),
    httpTls: listenerTls('http', values),
    workerTls: workerTlsFromFlags(
      { cert: values['worker-tls-cert'], key: values['worker-tls-key'], ca: values['worker-tls-ca'] },
      (message) => new UsageError(message),
    ),
    tenants: nonEmpty('tenants', values.tenants),
    auditLog: nonEmpty('audit-log', values['audit-log']),
    gatewayCountHint: integer('gateway-count-hint', values['gateway-count-hint'], 1, 1, 10_000),
    workerPingTimeoutMs: pingTimeout(values['worker-ping-timeout-ms']),
    modelControl: modelControlOf(
      {
        mode: values['model-control-mode'],
        loadModel: values['load-model'],
        pollSecs: values['repository-poll-secs'],
        memoryBudget: values['model-memory-budget'],
      },
      (message) => new UsageError(message),
    ),
    cache: cacheConfig(values['cache-config'] ?? []),
    trace: traceConfig(values['trace-config'] ?? []),
    ...processesAndWorkers(values['gateway-processes'], values['local-workers']),
    inlineRunUs: values['inline-run-us'] === undefined ? undefined : integer('inline-run-us', values['inline-run-us'], 0, 0, 1_000_000),
  };
}

function processesAndWorkers(processes: string | undefined, workers: string | undefined): { gatewayProcesses: number | 'auto'; localWorkers: LocalWorkersMode } {
  if (workers !== undefined && workers !== 'process' && workers !== 'in-process') {
    throw new UsageError(`--local-workers "${workers}" is not "process" or "in-process"`);
  }
  const localWorkers = workers ?? 'process';
  const gateways = gatewayProcesses(processes);
  if (localWorkers === 'process') return { gatewayProcesses: gateways, localWorkers };
  // Each gateway process would hold its own copy of every model, and batch apart.
  if (gateways !== 'auto' && gateways > 1) throw new UsageError('--local-workers in-process runs in one gateway process: give --gateway-processes 1 or leave it out');
  return { gatewayProcesses: 1, localWorkers };
}

function gatewayProcesses(raw: string | undefined): number | 'auto' {
  if (raw === undefined || raw === 'auto') return 'auto';
  return integer('gateway-processes', raw, 1, 1, MAX_GATEWAY_PROCESSES);
}

/** The registry URL from --registry, or from the Sentinel flags; checked here so a typo is a usage error. */
function registryUrl(url: string | undefined, sentinels: string | undefined, name: string | undefined): string | undefined {
  try {
    if (sentinels !== undefined || name !== undefined) {
      if (url !== undefined) throw new UsageError('give --registry or --registry-sentinels with --registry-sentinel-name, not both');
      if (sentinels === undefined || name === undefined) throw new UsageError('--registry-sentinels and --registry-sentinel-name go together');
      return sentinelUrl(sentinels, name);
    }
    if (url === undefined) return undefined;
    if (parseRedisUrl(url).scheme === 'redis-cluster') {
      throw new UsageError('--registry: Redis Cluster cannot hold the worker registry (it needs SCAN and pub/sub on one node); use one Redis or Sentinel');
    }
    return url;
  } catch (error) {
    if (error instanceof RedisConfigError) throw new UsageError(`--registry: ${error.message}`);
    throw error;
  }
}

function traceConfig(flags: readonly string[]): TraceConfig | undefined {
  try {
    return parseTraceConfig(flags, process.env);
  } catch (error) {
    if (error instanceof TraceConfigError) throw new UsageError(`--trace-config: ${error.message}; expected ${TRACE_CONFIG_USAGE}`);
    throw error;
  }
}

function cacheConfig(flags: readonly string[]): CacheConfig | undefined {
  try {
    return parseCacheConfig(flags);
  } catch (error) {
    if (error instanceof CacheConfigError) throw new UsageError(error.message);
    throw error;
  }
}

/** 0 (off) or 100 ms to 10 min: below 100 ms a busy machine's scheduling hiccups would count as dead workers. */
function pingTimeout(raw: string | undefined): number {
  const ms = integer('worker-ping-timeout-ms', raw, 3_000, 0, 600_000);
  if (ms > 0 && ms < 100) throw new UsageError(`--worker-ping-timeout-ms: expected 0 (off) or 100 to 600000, got '${raw}'`);
  return ms;
}

/**
 * One listener's TLS flags, as tritonserver reads --grpc-use-ssl…: mutual
 * implies TLS. Certificate flags without TLS turned on are refused rather
 * than ignored, so a typo cannot leave a port in plaintext unnoticed.
 */
function listenerTls(prefix: 'grpc' | 'http', values: Readonly<Record<string, string | readonly string[] | undefined>>): ListenerTlsFiles | undefined {
  const flag = (name: string): string | undefined => {
    const value = values[`${prefix}-${name}`];
    return typeof value === 'string' ? value : undefined;
  };
  const mutual = boolean(`${prefix}-use-ssl-mutual`, flag('use-ssl-mutual'), false);
  const use = boolean(`${prefix}-use-ssl`, flag('use-ssl'), false) || mutual;
  const file = (name: string): { flag: string; path: string } | undefined => {
    const path = flag(name);
    if (path === '') throw new UsageError(`--${prefix}-${name}: expected a file path, got ''`);
    return path === undefined ? undefined : { flag: `--${prefix}-${name}`, path };
  };
  const cert = file('server-cert');
  const key = file('server-key');
  const rootCert = file('root-cert');
  if (!use) {
    const stray = [cert, key, rootCert].flatMap((f) => (f ? [f.flag] : []));
    if (stray.length > 0) throw new UsageError(`${stray.join(', ')} given without --${prefix}-use-ssl true`);
    return undefined;
  }
  const on = mutual ? `--${prefix}-use-ssl-mutual` : `--${prefix}-use-ssl`;
  if (!cert || !key) throw new UsageError(`${on} needs --${prefix}-server-cert and --${prefix}-server-key`);
  if (mutual && !rootCert) {
    throw new UsageError(`${on} needs --${prefix}-root-cert: the CA that client certificates must chain to`);
  }
  return { cert, key, rootCert, mutual };
}
