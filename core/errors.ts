import { status as GrpcStatus } from '@grpc/grpc-js';

/**
 * The one error family of Fabriek. Every failure a client may see is a
 * ServingError with a gRPC status code and a message that says what was
 * wrong; `toGrpcStatus`/`toHttpStatus` are the only places that map them.
 * Anything else reaching a handler is an internal bug: logged, and answered
 * with a generic INTERNAL.
 */
export class ServingError extends Error {
  override name = 'ServingError';
  readonly code: GrpcStatus;
  /** When the client may try again (a quota): HTTP Retry-After, gRPC retry-after metadata. */
  readonly retryAfterMs: number | undefined;

  constructor(code: GrpcStatus, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options);
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

export const invalidArgument = (message: string): ServingError =>
  new ServingError(GrpcStatus.INVALID_ARGUMENT, message);
export const notFound = (message: string): ServingError => new ServingError(GrpcStatus.NOT_FOUND, message);
export const unavailable = (message: string, cause?: unknown): ServingError =>
  new ServingError(GrpcStatus.UNAVAILABLE, message, { cause });
export const resourceExhausted = (message: string, retryAfterMs?: number): ServingError =>
  new ServingError(GrpcStatus.RESOURCE_EXHAUSTED, message, retryAfterMs === undefined ? {} : { retryAfterMs });
export const unauthenticated = (message: string): ServingError => new ServingError(GrpcStatus.UNAUTHENTICATED, message);
export const permissionDenied = (message: string): ServingError =>
  new ServingError(GrpcStatus.PERMISSION_DENIED, message);
export const deadlineExceeded = (message: string): ServingError =>
  new ServingError(GrpcStatus.DEADLINE_EXCEEDED, message);
export const cancelled = (message: string): ServingError => new ServingError(GrpcStatus.CANCELLED, message);
export const unimplemented = (message: string): ServingError =>
  new ServingError(GrpcStatus.UNIMPLEMENTED, message);
export const internal = (message: string, cause?: unknown): ServingError =>
  new ServingError(GrpcStatus.INTERNAL, message, { cause });
export const failedPrecondition = (message: string): ServingError =>
  new ServingError(GrpcStatus.FAILED_PRECONDITION, message);

export function isServingError(error: unknown): error is ServingError {
  return error instanceof ServingError;
}

/** Whole seconds for a Retry-After header: at least 1, rounded up. */
export function retryAfterSeconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/** HTTP status for a gRPC code, as Triton's HTTP endpoint maps them. */
export function toHttpStatus(code: GrpcStatus): number {
  switch (code) {
    case GrpcStatus.OK:
      return 200;
    case GrpcStatus.NOT_FOUND:
      return 404;
    case GrpcStatus.UNAVAILABLE:
      return 503;
    case GrpcStatus.INTERNAL:
      return 500;
    case GrpcStatus.UNIMPLEMENTED:
      return 501;
    case GrpcStatus.UNAUTHENTICATED:
      return 401;
    case GrpcStatus.PERMISSION_DENIED:
      return 403;
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return 429;
    default:
      return 400;
  }
}
