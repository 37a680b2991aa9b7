import { availableParallelism } from 'node:os';
import { type DeviceRequest } from './thread-protocol.js';

// Command line of the worker process:
//   node dist/worker/main.js --listen unix:/path/to.sock | 127.0.0.1:0
//     [--device cpu|gpu:N] [--worker-id ID] [--log-level info]
//     [--max-message-bytes N] [--shutdown-timeout-ms N] [--cores N]

export interface WorkerArgs {
  /** A grpc-js bind address: "unix:/path" or "host:port" (port 0 = any free port). */
  readonly listen: string;
  readonly device: DeviceRequest;
  readonly workerId: string;
  readonly logLevel: string;
  /** gRPC receive/send message limit (default 1 GiB). */
  readonly maxMessageBytes: number;
  /** How long SIGTERM waits for in-flight calls before forcing (default 30 s). */
  readonly shutdownTimeoutMs: number;
  /** Cores shared by this worker's instances (default: all the process may use). */
  readonly cores: number;
}

export const USAGE =
  'usage: worker --listen unix:/path.sock|HOST:PORT [--device cpu|gpu:N] [--worker-id ID] ' +
  '[--log-level trace|debug|info|warn|error] [--max-message-bytes N] [--shutdown-timeout-ms N] [--cores N]';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const FLAGS = ['--listen', '--device', '--worker-id', '--log-level', '--max-message-bytes', '--shutdown-timeout-ms', '--cores'];

export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseWorkerArgs(argv: readonly string[], pid = process.pid): WorkerArgs {
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (!FLAGS.includes(flag)) throw new UsageError(`unknown argument "${arg}"`);
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new UsageError(`${flag} needs a value`);
    values.set(flag, value);
  }
  const listen = values.get('--listen');
  if (listen === undefined || listen === '') throw new UsageError('--listen is required');
  const logLevel = values.get('--log-level') ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) throw new UsageError(`--log-level "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  return {
    listen,
    device: parseDevice(values.get('--device') ?? 'cpu'),
    workerId: values.get('--worker-id') ?? `worker-${pid}`,
    logLevel,
    maxMessageBytes: positiveInt('--max-message-bytes', values.get('--max-message-bytes'), 1024 ** 3, 2 ** 31 - 1),
    shutdownTimeoutMs: positiveInt('--shutdown-timeout-ms', values.get('--shutdown-timeout-ms'), 30_000),
    cores: positiveInt('--cores', values.get('--cores'), availableParallelism()),
  };
}

function parseDevice(value: string): DeviceRequest {
  if (value === 'cpu') return { kind: 'cpu' };
  const match = /^gpu(?::(\d+))?$/.exec(value);
  if (match === null) throw new UsageError(`--device "${value}" is not cpu, gpu or gpu:N`);
  return { kind: 'gpu', deviceId: Number(match[1] ?? 0) };
}

function positiveInt(flag: string, value: string | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0 || n > max) throw new UsageError(`${flag} "${value}" is not an integer in 1..${max}`);
  return n;
}
