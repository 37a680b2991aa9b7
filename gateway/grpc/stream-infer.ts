import { type handleBidiStreamingCall, type ServerDuplexStream } from '@grpc/grpc-js';
import { type Logger } from 'pino';
import { boundedMessage, isServingError } from '../../core/errors.js';
import { type ModelInferRequest, type ModelInferResponse, type ModelStreamInferResponse } from '../../proto/gen/inference.js';
import { type CallContext } from './call-context.js';
import { Cancellation } from '../../core/cancellation.js';
import { malformed } from './malformed-request.js';
import { type InflightGate, isHold, outcomeOfError, type ReleaseOutcome } from '../inference/inflight-gate.js';
import { requestBytes } from '../inference/grpc-inflight.js';

type Infer = (request: ModelInferRequest, context: CallContext) => Promise<ModelInferResponse>;

/**
 * ModelStreamInfer as Triton serves non-decoupled models: every request on
 * the stream gets one response, in completion order (clients match them by
 * `id`). A failed request answers `error_message` and the stream goes on.
 * Closing or cancelling the stream aborts what is still queued.
 * Each request holds its tensor bytes on the gateway's in-flight bound until
 * it is answered; past the bound it is answered RESOURCE_EXHAUSTED's words at
 * once (and dropped), as a unary call would be, and the stream goes on.
 */
export function streamInfer(infer: Infer, log: Logger, inflight?: InflightGate): handleBidiStreamingCall<ModelInferRequest, ModelStreamInferResponse> {
  return (call: ServerDuplexStream<ModelInferRequest, ModelStreamInferResponse>) => {
    const cancellation = new Cancellation();
    const d = call.getDeadline();
    const deadline = d instanceof Date ? d.getTime() : typeof d === 'number' && Number.isFinite(d) ? d : Infinity;
    const context: CallContext = { signal: cancellation, deadline, metadata: call.metadata };
    let pending = 0;
    let inputEnded = false;
    const finishIfDone = (): void => {
      if (inputEnded && pending === 0) call.end();
    };
    call.on('cancelled', cancellation.abort);
    call.on('error', cancellation.abort);
    call.on('data', (request: ModelInferRequest) => {
      const refused = malformed(request);
      if (refused) {
        call.write({ errorMessage: boundedMessage(refused.message), inferResponse: undefined });
        return;
      }
      const hold = inflight?.enter(requestBytes(request), undefined, context.deadline - Date.now());
      if (hold !== undefined && !isHold(hold)) {
        call.write({ errorMessage: boundedMessage(hold.message), inferResponse: undefined });
        return;
      }
      pending += 1;
      let outcome: ReleaseOutcome = 'failed';
      infer(request, context).then(
        (response) => {
          outcome = 'answered';
          call.write({ errorMessage: '', inferResponse: response });
        },
        (error: unknown) => {
          outcome = outcomeOfError(error, Number.isFinite(context.deadline));
          if (!isServingError(error)) log.error({ err: error }, 'unexpected error in stream infer');
          const message = isServingError(error) ? boundedMessage(error.message) : 'internal error';
          call.write({ errorMessage: message, inferResponse: undefined });
        },
      ).finally(() => {
        hold?.release(outcome);
        pending -= 1;
        finishIfDone();
      });
    });
    call.on('end', () => {
      inputEnded = true;
      finishIfDone();
    });
  };
}
