import { type ServerInterceptor, ServerInterceptingCall } from '@grpc/grpc-js';
import { type Logger } from 'pino';
import { type Admission } from '../inference/admission.js';
import { toServiceError } from './call-context.js';
import { authorizationOf } from './inference-service.js';

// grpc-js reads and decodes a unary call's whole message before its handler
// runs. For an inference call from a caller with no or an unknown key, or a
// tenant already certain to be over its request quota, that is wasted work
// a flood can make the gateway do at will, up to --max-message-bytes each.
// This interceptor answers those calls from their metadata, before the
// message is read; everything else goes on to the handler, where admission
// checks the call again in full (model access needs the model's name).

const MODEL_INFER = '/inference.GRPCInferenceService/ModelInfer';

export function earlyRefusals(admission: Admission, log: Logger): ServerInterceptor {
  return (method, call) => {
    if (method.path !== MODEL_INFER) return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, proceed) => {
            const refused = admission.refuseEarly({ protocol: 'grpc', op: 'infer', authorization: authorizationOf(metadata) });
            if (refused === undefined) {
              proceed(metadata);
              return;
            }
            const status = toServiceError(refused, log);
            call.sendStatus({ code: refused.code, details: status.details ?? refused.message, metadata: status.metadata ?? null });
          },
        });
      },
    });
  };
}
