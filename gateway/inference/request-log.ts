import { type Logger } from 'pino';
import { isServingError } from '../../core/errors.js';
import { status as GrpcStatus } from '@grpc/grpc-js';

let sequence = 0;

/** The id logged for a request: the client's `id` when given, else a generated one. */
export function requestIdOf(clientId: string): string {
  if (clientId !== '') return clientId;
  sequence = (sequence + 1) % Number.MAX_SAFE_INTEGER;
  return `r${process.pid.toString(36)}-${sequence.toString(36)}`;
}

/**
 * One debug line per request (model, version, rows, status, duration, id),
 * never tensor data. Checked for level first: at info and above it costs a
 * branch, not an object.
 */
export function logRequest(
  log: Logger | undefined,
  fields: { reqId: string; protocol: 'grpc' | 'http'; model: string; version: string; startNs: bigint },
  error?: unknown,
): void {
  if (!log?.isLevelEnabled('debug')) return;
  const ms = Number(process.hrtime.bigint() - fields.startNs) / 1e6;
  const status = error === undefined ? 'OK' : isServingError(error) ? (GrpcStatus[error.code] ?? 'UNKNOWN') : 'INTERNAL';
  const { startNs: _startNs, ...rest } = fields;
  log.debug({ ...rest, status, ms, ...(error instanceof Error ? { error: error.message } : {}) }, 'request');
}
