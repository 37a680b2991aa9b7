import { type ServerInterceptor, ServerInterceptingCall, status as GrpcStatus } from '@grpc/grpc-js';
import { type Logger } from 'pino';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { deadlineOf, toServiceError } from '../grpc/call-context.js';
import { identifiedTenant } from '../grpc/early-refusal.js';
import { malformed } from '../grpc/malformed-request.js';
import { refuseUnread } from '../grpc/refuse-unread.js';
import { type StreamWindows } from '../grpc/stream-window.js';
import { type InflightGate, type InflightHold, failedLate, isHold } from './inflight-gate.js';
import { BYTE_SIZE } from '../shared-memory/shared-memory-tensors.js';

// The in-flight byte bound for gRPC ModelInfer. grpc-js reads a unary call's
// whole message before the handler runs, so the gate is asked from the
// call's metadata (the message is not read when it refuses); the call counts
// as a typical request until its message arrives, then as its tensor bytes,
// until its status is sent.

const MODEL_INFER = '/inference.GRPCInferenceService/ModelInfer';

/** Tensor bytes of a decoded request: raw contents plus typed contents at their element width. */
export function requestBytes(request: ModelInferRequest): number {
  let n = 0;
  for (const raw of request.rawInputContents) n += raw.byteLength;
  for (const input of request.inputs) {
    // An input in system shared memory: the gateway reads its bytes into memory of its own.
    n += sharedBytesOf(input.parameters);
    const c = input.contents;
    if (!c) continue;
    n += 8 * (c.int64Contents.length + c.uint64Contents.length + c.fp64Contents.length);
    n += 4 * (c.intContents.length + c.uintContents.length + c.fp32Contents.length) + c.boolContents.length;
    for (const b of c.bytesContents) n += b.byteLength;
  }
  return n;
}

/** The bytes an input's `shared_memory_byte_size` names (0 without one, or with one not a whole number). */
function sharedBytesOf(parameters: ModelInferRequest['inputs'][number]['parameters']): number {
  const choice = parameters[BYTE_SIZE]?.parameterChoice;
  if (choice?.$case !== 'int64Param' && choice?.$case !== 'uint64Param') return 0;
  const n = Number(choice.value);
  return Number.isSafeInteger(n) && n > 0 ? n : 0;
}

export function inflightBound(gate: InflightGate, log: Logger, windows: StreamWindows): ServerInterceptor {
  return (method, call) => {
    if (method.path !== MODEL_INFER) return new ServerInterceptingCall(call);
    let hold: InflightHold | undefined;
    /** The call's deadline (ms since the epoch; Infinity: none), read once its metadata is in. */
    let deadline = Infinity;
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, proceed) => {
            deadline = deadlineOf(call);
            // The tenant matters to the shares of the soft bounds (learned from late releases, --max-inflight-wait-ms).
            // The ms it has left (Infinity without a deadline): the learned bound holds callers by it.
            const entered = gate.enter(undefined, identifiedTenant(metadata), deadline - Date.now());
            if (isHold(entered)) {
              hold = entered;
              proceed(metadata);
              return;
            }
            const status = toServiceError(entered, log);
            refuseUnread(call, { code: entered.code, details: status.details ?? entered.message, metadata: status.metadata ?? null }, windows);
          },
          onReceiveMessage: (message, proceed) => {
            // Bytes that did not decode arrive as a MalformedRequest (answered INVALID_ARGUMENT by the handler).
            if (malformed(message) === undefined) hold?.settle(requestBytes(message as ModelInferRequest));
            proceed(message);
          },
          // Cancelled at its deadline (grpc-js ends such a call itself, past the interceptors): admitted for nothing.
          onCancel: () => hold?.release(deadline <= Date.now() ? 'late' : 'failed'),
        });
      },
      sendStatus: (status, next) => {
        hold?.release(status.code === GrpcStatus.OK ? 'answered' : failedLate(status.code, status.details, Number.isFinite(deadline)) ? 'late' : 'failed');
        next(status);
      },
    });
  };
}
