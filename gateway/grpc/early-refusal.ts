import { type Metadata, type ServerInterceptor, ServerInterceptingCall } from '@grpc/grpc-js';
import { type Logger } from 'pino';
import { type Admission } from '../inference/admission.js';
import { type Tenant } from '../tenants/tenant.js';
import { authorizationOf, toServiceError } from './call-context.js';
import { refuseUnread } from './refuse-unread.js';
import { type StreamWindows } from './stream-window.js';

// grpc-js reads and decodes a unary call's whole message before its handler
// runs. For an inference call from a caller with no or an unknown key, or a
// tenant already certain to be over its request quota, that is wasted work
// a flood can make the gateway do at will, up to --max-message-bytes each.
// This interceptor answers those calls from their metadata, before the
// message is read; everything else goes on to the handler, where admission
// checks the call again in full (model access needs the model's name), with
// the tenant found here, so the key is hashed once per call.
//
// ModelStreamInfer gets the same check when the stream opens: a stream from
// a caller without a known key, or from a tenant already over its request
// quota, ends at once with that status (and, over quota, the retry hint in
// the trailers), before any of its messages is read. A stream that opens is
// admitted message by message as before, each with its key checked again,
// so a key revoked by a reload stops an open stream too.

const MODEL_INFER = '/inference.GRPCInferenceService/ModelInfer';
const MODEL_STREAM_INFER = '/inference.GRPCInferenceService/ModelStreamInfer';

/** Tenants identified here, by the call's metadata object (grpc-js hands the handler the same one). */
const identified = new WeakMap<Metadata, Tenant>();

/** The tenant of this call when its key was already checked here. */
export function identifiedTenant(metadata: Metadata): Tenant | undefined {
  return identified.get(metadata);
}

export function earlyRefusals(admission: Admission, log: Logger, windows: StreamWindows): ServerInterceptor {
  return (method, call) => {
    const unary = method.path === MODEL_INFER;
    if (!unary && method.path !== MODEL_STREAM_INFER) return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, proceed) => {
            const checked = admission.checkEarly({ protocol: 'grpc', op: 'infer', authorization: authorizationOf(metadata) });
            if (checked === undefined || 'tenant' in checked) {
              if (checked && unary) identified.set(metadata, checked.tenant);
              proceed(metadata);
              return;
            }
            const status = toServiceError(checked.refused, log);
            refuseUnread(call, { code: checked.refused.code, details: status.details ?? checked.refused.message, metadata: status.metadata ?? null }, windows);
          },
        });
      },
    });
  };
}
