import { status as GrpcStatus } from '@grpc/grpc-js';

/** gRPC status name → code, e.g. 'UNAVAILABLE' → 14. */
export type StatusName = keyof typeof GrpcStatus;

/**
 * Every failure the clients report, over gRPC and HTTP alike: the gRPC
 * status code (HTTP statuses are mapped back as Triton maps them forward),
 * its name, and the server's message. `details` repeats the message, as
 * grpc-js's ServiceError has it, so code written against grpc-js keeps working.
 */
export class InferenceError extends Error {
  override name = 'InferenceError';
  /** gRPC status code (`status.UNAVAILABLE` = 14, …). */
  readonly code: GrpcStatus;
  /** The HTTP status, when the error came from the HTTP client's server answer. */
  readonly httpStatus: number | undefined;
  /** The message alone, without the code prefix. */
  readonly details: string;
  /** How long the server asks the client to wait before retrying (over quota): gRPC `grpc-retry-pushback-ms` / `retry-after`, HTTP `Retry-After`. */
  readonly retryAfterMs: number | undefined;

  constructor(code: GrpcStatus, details: string, options: { httpStatus?: number; retryAfterMs?: number; cause?: unknown } = {}) {
    super(`${statusName(code)}: ${details}`, { cause: options.cause });
    this.code = code;
    this.details = details;
    this.httpStatus = options.httpStatus;
    this.retryAfterMs = options.retryAfterMs;
  }

  /** 'UNAVAILABLE', 'INVALID_ARGUMENT', … */
  get codeName(): string {
    return statusName(this.code);
  }
}

export function statusName(code: number): string {
  return GrpcStatus[code] ?? `CODE_${code}`;
}

export function isInferenceError(error: unknown): error is InferenceError {
  return error instanceof InferenceError;
}

/** A grpc-js ServiceError (or anything with a numeric code) as an InferenceError. */
export function fromGrpcError(error: unknown): InferenceError {
  if (error instanceof InferenceError) return error;
  const e = error as { code?: unknown; details?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === 'number' ? e.code : GrpcStatus.UNKNOWN;
  const details = typeof e?.details === 'string' && e.details !== '' ? e.details : typeof e?.message === 'string' ? e.message : String(error);
  const retryAfterMs = retryAfterOf(error);
  return new InferenceError(code, details, { cause: error, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });
}

/** The server's retry hint in a grpc-js error's trailers, in ms. */
function retryAfterOf(error: unknown): number | undefined {
  const metadata = (error as { metadata?: { get?: (key: string) => unknown[] } } | undefined)?.metadata;
  if (typeof metadata?.get !== 'function') return undefined;
  const pushback = Number(metadata.get('grpc-retry-pushback-ms')[0]);
  if (Number.isFinite(pushback) && pushback >= 0) return pushback;
  const seconds = Number(metadata.get('retry-after')[0]);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}

/** The inverse of Triton's gRPC → HTTP status mapping (400 is INVALID_ARGUMENT, its catch-all). */
export function grpcCodeOfHttpStatus(httpStatus: number): GrpcStatus {
  switch (httpStatus) {
    case 400:
      return GrpcStatus.INVALID_ARGUMENT;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.NOT_FOUND;
    case 408:
    case 504:
      return GrpcStatus.DEADLINE_EXCEEDED;
    case 413:
    case 429:
      return GrpcStatus.RESOURCE_EXHAUSTED;
    case 499:
      return GrpcStatus.CANCELLED;
    case 500:
      return GrpcStatus.INTERNAL;
    case 501:
      return GrpcStatus.UNIMPLEMENTED;
    case 502:
    case 503:
      return GrpcStatus.UNAVAILABLE;
    default:
      return httpStatus >= 500 ? GrpcStatus.INTERNAL : GrpcStatus.UNKNOWN;
  }
}

/** A problem with the caller's arguments, found before anything was sent. */
export const invalidInput = (message: string): InferenceError => new InferenceError(GrpcStatus.INVALID_ARGUMENT, message);
