import { availableParallelism, hostname } from 'node:os';
import { parseTraceConfig, TRACE_CONFIG_USAGE, type TraceConfig, TraceConfigError } from '../core/trace-config.js';
import { parseRedisUrl, RedisConfigError, type RedisSecretFlags, sentinelUrl } from '../core/redis-connection.js';
import { type WorkerTlsFiles, workerTlsFromFlags } from '../core/tls.js';
import { isLogLevel, LOG_LEVELS, type LogLevel } from '../core/log-levels.js';
import { defaultThreadCount, MAX_ORT_THREADS } from './thread-placement.js';
import { MAX_EXECUTIONS_AHEAD_PER_INSTANCE } from '../core/pipelining.js';
import { type DeviceRequest } from './thread-protocol.js';

// Command line of the worker process. Started by a gateway:
//   node dist/worker/main.js --listen unix:/path/to.sock | 127.0.0.1:0
//     [--device cpu|gpu:N] [--worker-id ID] [--log-level info]
//     [--max-message-bytes N] [--shutdown-timeout-ms N] [--cores N] [--ort-threads N] [--inline-run-us N]
// Standalone, registered in Redis (`fabriek worker`):
//   --registry redis://HOST:PORT --model-repository DIR [--listen HOST:PORT]
//     [--advertise-address HOST:PORT] [--gpu N] [--registry-ttl-secs 10]
//     [--drain-grace-secs 2] [--max-queued-per-instance 16]

export interface WorkerArgs {
  /** A grpc-js bind address: "unix:/path" or "host:port" (port 0 = any free port). */
  readonly listen: string;
  /** Where to export the spans of executions the gateway sampled (--trace-config); undefined = off. */
  readonly trace: TraceConfig | undefined;
  readonly device: DeviceRequest;
  readonly workerId: string;
  readonly logLevel: LogLevel;
  /** gRPC receive/send message limit (default 1 GiB). */
  readonly maxMessageBytes: number;
  /** How long SIGTERM waits for in-flight calls before forcing (default 30 s). */
  readonly shutdownTimeoutMs: number;
  /** Cores shared by this worker's instances (default: all the process may use). */
  readonly cores: number;
  /** ONNX Runtime threads the worker starts with (see defaultThreadCount). */
  readonly ortThreads: number;
  /** --inline-run-us: CPU instances whose runs take at most this many µs on the main thread run there; 0 = never. */
  readonly inlineRunUs: number;
  /** Standalone mode: register in this Redis and load the repository itself. */
  readonly registry: RegistryArgs | undefined;
  /** Executions that may wait per model instance (see ModelHost). */
  readonly queuedPerInstance: number;
  /**
   * Gateway processes of one `fabriek serve --gateway-processes N` that share
   * this worker (default 1): the queue per instance grows with them, and a
   * gateway connection that closes releases the models only it held.
   */
  readonly localGateways: number;
  /** Mutual TLS with the gateways (--worker-tls-*); undefined = plaintext. */
  readonly tls: WorkerTlsFiles | undefined;
  /** --tls-poll-secs: how often the TLS files are checked for a change (0 = only on SIGHUP). */
  readonly tlsPollSecs: number;
}

export interface RegistryArgs {
  /** redis://, rediss:// or redis-sentinel:// (also made from --registry-sentinels). */
  readonly url: string;
  /** Where the password and TLS files are; read at connect, never passed on a command line. */
  readonly secrets: RedisSecretFlags;
  readonly namespace: string;
  readonly modelRepository: string;
  /** host:port gateways dial; port 0 means "the port we bound". */
  readonly advertiseAddress: string | undefined;
  readonly ttlMs: number;
  /** After SIGTERM, how long the worker still serves while gateways move away. */
  readonly drainGraceMs: number;
}

export const USAGE = `usage: fabriek worker --registry redis://HOST:PORT --model-repository DIR [options]
       (or, started by a gateway: worker --listen unix:/path.sock|HOST:PORT [options])

  --registry URL               Redis to register in: redis://[user@]host:port[/db], rediss:// (TLS),
                               or redis-sentinel://host:port[,host:port…]/MASTER[/db] (follows failovers)
  --registry-sentinels H:P,…   Sentinel addresses, with --registry-sentinel-name NAME (instead of --registry)
  --registry-password-file F   the Redis password is this file's content (else $FABRIEK_REGISTRY_PASSWORD;
                               a password in the URL works too, but ps shows it)
  --registry-tls-ca FILE       CA the rediss:// server's certificate must chain to (default: system CAs)
  --registry-tls-cert FILE, --registry-tls-key FILE
                               client certificate and key for Redis servers with tls-auth-clients yes
  --registry-namespace NAME    key prefix in Redis, shared with the gateways (default fabriek)
  --model-repository DIR       models this worker loads and serves (every selected version)
  --listen HOST:PORT           where to serve the internal protocol (default 0.0.0.0:8010 with --registry)
  --advertise-address H:P      the address gateways dial (default: listen host, or this machine's
                               hostname when listening on 0.0.0.0, with the bound port)
  --device cpu|gpu:N           device of this worker (default cpu); --gpu N is gpu:N
  --worker-id ID               id in the registry (default HOSTNAME-PID)
  --registry-ttl-secs N        lease TTL; heartbeat every TTL/3 (default 10)
  --drain-grace-secs N         on SIGTERM: serve N s more while gateways move away (default 2)
  --max-queued-per-instance N  executions that may wait per instance (default 7, what the gateway that
                               started the worker sends ahead of short runs; 16 with --registry, since
                               several gateways send to one worker, one ahead each; 8N - 1 with
                               --local-gateways N)
  --local-gateways N           gateway processes of one fabriek serve --gateway-processes N sharing this
                               worker (set by the gateway; default 1)
  --worker-tls-cert FILE, --worker-tls-key FILE, --worker-tls-ca FILE
                               mutual TLS with the gateways (all three or none; TLS 1.3): this
                               worker's certificate (with a SAN for its advertised host), its key,
                               and the CA that gateway certificates must chain to
  --tls-poll-secs N            seconds between checks of those files: changed files are read, checked
                               and put in force for new connections (default 10; 0 = only on SIGHUP)
  --cores N                    cores shared by this worker's instances (default: all)
  --ort-threads N              ONNX Runtime threads, each hosting many sessions (default: --cores
                               on CPU, min(4, --cores) on a GPU; grows to a model's instance count)
  --inline-run-us N            a CPU instance whose runs hold their thread at most N µs (median of 16,
                               on its ONNX Runtime thread, then tried on the worker's main thread, where
                               they may also take as long as the hand-off to the thread did) runs on
                               the main thread, saving the hand-off both ways (default 300; 0: never)
  --max-message-bytes N        message limit (default 1 GiB)
  --shutdown-timeout-ms N      how long SIGTERM waits for in-flight batches (default 30000)
  --log-level LEVEL            trace|debug|info|warn|error (default info)
  --trace-config SETTING       OpenTelemetry, as fabriek serve (repeatable): mode=opentelemetry,
                               opentelemetry,url=URL; the worker traces only what gateways sampled`;

const FLAGS = [
  '--listen',
  '--device',
  '--gpu',
  '--worker-id',
  '--log-level',
  '--max-message-bytes',
  '--shutdown-timeout-ms',
  '--cores',
  '--ort-threads',
  '--inline-run-us',
  '--registry',
  '--registry-sentinels',
  '--registry-sentinel-name',
  '--registry-password-file',
  '--registry-tls-ca',
  '--registry-tls-cert',
  '--registry-tls-key',
  '--registry-namespace',
  '--model-repository',
  '--advertise-address',
  '--registry-ttl-secs',
  '--drain-grace-secs',
  '--max-queued-per-instance',
  '--local-gateways',
  '--worker-tls-cert',
  '--worker-tls-key',
  '--worker-tls-ca',
  '--tls-poll-secs',
  '--trace-config',
];

export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseWorkerArgs(argv: readonly string[], pid = process.pid, host = hostname()): WorkerArgs {
  const values = new Map<string, string>();
  const traceFlags: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (!FLAGS.includes(flag)) throw new UsageError(`unknown argument "${arg}"`);
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`${flag} needs a value`);
    if (flag === '--trace-config') traceFlags.push(value);
    else values.set(flag, value);
  }
  let trace: TraceConfig | undefined;
  try {
    trace = parseTraceConfig(traceFlags, process.env);
  } catch (error) {
    if (error instanceof TraceConfigError) throw new UsageError(`--trace-config: ${error.message}; expected ${TRACE_CONFIG_USAGE}`);
    throw error;
  }
  const registry = parseRegistry(values);
  const listen = values.get('--listen') ?? (registry ? '0.0.0.0:8010' : undefined);
  if (listen === undefined || listen === '') throw new UsageError('--listen is required (or --registry)');
  if (registry && listen.startsWith('unix:')) throw new UsageError('--listen must be HOST:PORT with --registry: gateways on other machines dial it');
  const logLevel = values.get('--log-level') ?? 'info';
  if (!isLogLevel(logLevel)) throw new UsageError(`--log-level "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  const gpu = values.get('--gpu');
  if (gpu !== undefined && values.has('--device')) throw new UsageError('give --gpu or --device, not both');
  const device = parseDevice(gpu !== undefined ? `gpu:${gpu}` : (values.get('--device') ?? 'cpu'));
  const cores = positiveInt('--cores', values.get('--cores'), availableParallelism());
  const localGateways = positiveInt('--local-gateways', values.get('--local-gateways'), 1, 1024);
  // Each gateway sends up to instances × (1 + MAX_EXECUTIONS_AHEAD_PER_INSTANCE) executions (short runs; core/pipelining.ts).
  const localQueue = localGateways * (1 + MAX_EXECUTIONS_AHEAD_PER_INSTANCE) - 1;
  return {
    listen,
    trace,
    device,
    workerId: values.get('--worker-id') ?? (registry ? `${host}-${pid}` : `worker-${pid}`),
    logLevel,
    maxMessageBytes: positiveInt('--max-message-bytes', values.get('--max-message-bytes'), 1024 ** 3, 2 ** 31 - 1),
    shutdownTimeoutMs: positiveInt('--shutdown-timeout-ms', values.get('--shutdown-timeout-ms'), 30_000),
    cores,
    ortThreads: positiveInt('--ort-threads', values.get('--ort-threads'), defaultThreadCount(device, cores), MAX_ORT_THREADS),
    inlineRunUs: intFlag('--inline-run-us', values.get('--inline-run-us'), DEFAULT_INLINE_RUN_US, 0, 1_000_000),
    registry,
    queuedPerInstance: positiveInt('--max-queued-per-instance', values.get('--max-queued-per-instance'), registry ? 16 : localQueue, 1024),
    localGateways,
    tls: workerTlsFromFlags(
      { cert: values.get('--worker-tls-cert'), key: values.get('--worker-tls-key'), ca: values.get('--worker-tls-ca') },
      (message) => new UsageError(message),
    ),
    tlsPollSecs: intFlag('--tls-poll-secs', values.get('--tls-poll-secs'), 10, 0, 86_400),
  };
}

/** --registry, or the URL the Sentinel flags make; a URL that does not parse is a usage error. */
function registryUrl(values: ReadonlyMap<string, string>): string | undefined {
  const url = values.get('--registry');
  const sentinels = values.get('--registry-sentinels');
  const name = values.get('--registry-sentinel-name');
  try {
    if (sentinels !== undefined || name !== undefined) {
      if (url !== undefined) throw new UsageError('give --registry or --registry-sentinels with --registry-sentinel-name, not both');
      if (sentinels === undefined || name === undefined) throw new UsageError('--registry-sentinels and --registry-sentinel-name go together');
      return sentinelUrl(sentinels, name);
    }
    if (url !== undefined && parseRedisUrl(url).scheme === 'redis-cluster') {
      throw new UsageError('--registry: Redis Cluster cannot hold the worker registry; use one Redis or Sentinel');
    }
    return url;
  } catch (error) {
    if (error instanceof RedisConfigError) throw new UsageError(`--registry: ${error.message}`);
    throw error;
  }
}

function parseRegistry(values: ReadonlyMap<string, string>): RegistryArgs | undefined {
  const url = registryUrl(values);
  const modelRepository = values.get('--model-repository');
  const registryOnly = [
    '--registry-namespace',
    '--advertise-address',
    '--registry-ttl-secs',
    '--drain-grace-secs',
    '--registry-password-file',
    '--registry-tls-ca',
    '--registry-tls-cert',
    '--registry-tls-key',
  ];
  if (url === undefined) {
    const stray = [...registryOnly, '--model-repository'].find((f) => values.has(f));
    if (stray) throw new UsageError(`${stray} needs --registry`);
    return undefined;
  }
  const file = (flag: string): string | undefined => {
    const path = values.get(flag);
    if (path === '') throw new UsageError(`${flag} needs a file path`);
    return path;
  };
  const secrets: RedisSecretFlags = {
    passwordFile: file('--registry-password-file'),
    tlsCa: file('--registry-tls-ca'),
    tlsCert: file('--registry-tls-cert'),
    tlsKey: file('--registry-tls-key'),
  };
  if (modelRepository === undefined || modelRepository === '') throw new UsageError('--registry needs --model-repository');
  const advertise = values.get('--advertise-address');
  if (advertise !== undefined && !/^[^\s:]+:\d+$|^\[[0-9a-fA-F:]+\]:\d+$/.test(advertise)) {
    throw new UsageError(`--advertise-address "${advertise}" is not HOST:PORT`);
  }
  const namespace = values.get('--registry-namespace') ?? 'fabriek';
  if (!/^[\w.-]+$/.test(namespace)) throw new UsageError(`--registry-namespace "${namespace}" may hold only letters, digits, _ . -`);
  const ttlSecs = positiveNumber('--registry-ttl-secs', values.get('--registry-ttl-secs'), 10);
  const graceSecs = positiveNumber('--drain-grace-secs', values.get('--drain-grace-secs'), 2, true);
  return {
    url,
    secrets,
    namespace,
    modelRepository,
    advertiseAddress: advertise,
    ttlMs: Math.round(ttlSecs * 1000),
    drainGraceMs: Math.round(graceSecs * 1000),
  };
}

function positiveNumber(flag: string, value: string | undefined, fallback: number, zeroOk = false): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || (!zeroOk && n === 0) || n > 3600) throw new UsageError(`${flag} "${value}" is not a number of seconds in ${zeroOk ? 0 : '(0'}..3600`);
  return n;
}

function parseDevice(value: string): DeviceRequest {
  if (value === 'cpu') return { kind: 'cpu' };
  const match = /^gpu(?::(\d+))?$/.exec(value);
  if (match === null) throw new UsageError(`--device "${value}" is not cpu, gpu or gpu:N`);
  return { kind: 'gpu', deviceId: Number(match[1] ?? 0) };
}

/** --inline-run-us: about what handing a run to an ORT thread and back costs in wall time on a busy host (see inline-runs.ts). */
export const DEFAULT_INLINE_RUN_US = 300;

function intFlag(flag: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${flag} "${value}" is not an integer in ${min}..${max}`);
  return n;
}

const positiveInt = (flag: string, value: string | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number => intFlag(flag, value, fallback, 1, max);
