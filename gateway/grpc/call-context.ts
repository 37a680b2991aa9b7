import {
  type Deadline,
  type Metadata,
  type ServerUnaryCall,
  type handleUnaryCall,
  type sendUnaryData,
  type ServiceError,
  status as GrpcStatus,
  Metadata as GrpcMetadata,
} from '@grpc/grpc-js';
import { type Logger } from 'pino';
import { boundedMessage, isServingError, retryAfterSeconds } from '../../core/errors.js';
import { malformed } from './malformed-request.js';
import { type LoadReporter } from '../load/load-reporter.js';
import { Cancellation, type CancelSignal } from '../../core/cancellation.js';

/** The `authorization` metadata value (the key travels as in HTTP: `Bearer KEY`). */
export function authorizationOf(metadata: Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  return typeof value === 'string' ? value : undefined;
}

/** What a handler knows about its call: small, protocol-neutral (HTTP builds the same). */
export interface CallContext {
  /** Aborted when the client cancels or its deadline passes. */
  readonly signal: CancelSignal;
  /** Absolute deadline in ms since the epoch (performance-independent); Infinity when none. */
  readonly deadline: number;
  readonly metadata: Metadata;
}

export type UnaryHandler<Req, Res> = (request: Req, context: CallContext) => Promise<Res>;

/** A call's deadline in ms since the epoch; Infinity when it has none. */
export function deadlineOf(call: { getDeadline(): Deadline }): number {
  const d = call.getDeadline();
  if (d instanceof Date) return d.getTime();
  return typeof d === 'number' && Number.isFinite(d) ? d : Infinity;
}

/**
 * Turns an error into the status a client sees. The single place where
 * errors become gRPC statuses: serving errors keep their code and message;
 * anything else is a bug, logged with its stack and answered INTERNAL.
 */
export function toServiceError(error: unknown, log: Logger): Partial<ServiceError> {
  if (isServingError(error)) {
    const metadata = new GrpcMetadata();
    if (error.retryAfterMs !== undefined) {
      // HTTP's header, and the pushback gRPC clients with a retry policy obey.
      metadata.set('retry-after', String(retryAfterSeconds(error.retryAfterMs)));
      metadata.set('grpc-retry-pushback-ms', String(Math.ceil(error.retryAfterMs)));
    }
    return { code: error.code, details: boundedMessage(error.message), metadata };
  }
  log.error({ err: error }, 'unexpected error in handler');
  return { code: GrpcStatus.INTERNAL, details: 'internal error', metadata: new GrpcMetadata() };
}

/** Adapts a promise-returning handler to grpc-js, with cancellation and deadline. */
export function unary<Req, Res>(handler: UnaryHandler<Req, Res>, log: Logger, load?: LoadReporter): handleUnaryCall<Req, Res> {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
    const refused = malformed(call.request);
    if (refused) {
      callback(toServiceError(refused, log));
      return;
    }
    const cancellation = new Cancellation();
    const deadline = deadlineOf(call);
    let timer: NodeJS.Timeout | undefined;
    // Not removed once answered: a cancel after the answer aborts nothing
    // that still listens, and the listener goes with the call.
    call.on('cancelled', cancellation.abort);
    if (Number.isFinite(deadline)) {
      // grpc-js also cancels at the deadline; our own timer makes the abort
      // reason explicit and does not depend on that.
      timer = setTimeout(cancellation.abort, Math.max(0, deadline - Date.now()));
    }
    const context: CallContext = {
      signal: cancellation,
      deadline,
      metadata: call.metadata,
    };
    handler(call.request, context).then(
      (response) => {
        if (timer) clearTimeout(timer);
        if (load) callback(null, response, load.trailer);
        else callback(null, response);
      },
      (error: unknown) => {
        if (timer) clearTimeout(timer);
        const serviceError = toServiceError(error, log);
        if (load && serviceError.metadata) load.addTo(serviceError.metadata);
        callback(serviceError);
      },
    );
  };
}
