import { status as GrpcStatus } from '@grpc/grpc-js';
import { isServingError } from '../../core/errors.js';
import { isShed } from '../batching/shedding.js';

/**
 * Triton's `reason` label values for nv_inference_request_failure, and
 * Fabriek's SHED: requests failed before they ran because they could not
 * finish before their deadline, or would have waited over half of it behind
 * a standing queue (gateway/batching/shedding.ts).
 */
export type FailureReason = 'REJECTED' | 'CANCELED' | 'BACKEND' | 'OTHER' | 'SHED';

/**
 * Classifies a failed request the way Triton labels it. Queue full and queue
 * timeout are rejections; UNAVAILABLE that names a worker is the backend
 * dying under the request, so it counts as BACKEND.
 */
export function failureReason(error: unknown): FailureReason {
  if (!isServingError(error)) return 'OTHER';
  if (isShed(error)) return 'SHED';
  switch (error.code) {
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return 'REJECTED';
    case GrpcStatus.UNAVAILABLE:
      return /\bworker\b/i.test(error.message) ? 'BACKEND' : 'REJECTED';
    case GrpcStatus.CANCELLED:
    case GrpcStatus.DEADLINE_EXCEEDED:
      return 'CANCELED';
    case GrpcStatus.INTERNAL:
    case GrpcStatus.UNKNOWN:
      return 'BACKEND';
    default:
      return 'OTHER';
  }
}
