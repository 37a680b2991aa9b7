import { status } from '@grpc/grpc-js';
import {
  internal,
  invalidArgument,
  notFound,
  resourceExhausted,
  unavailable,
  ServingError,
} from '../core/errors.js';

// Every error message the worker sends to the gateway is made here.

export const WorkerErrors = {
  modelNotLoaded: (key: string): ServingError => notFound(`model "${key}" is not loaded on this worker`),

  allInstancesBusy: (key: string, count: number, queuedPerInstance: number): ServingError =>
    resourceExhausted(
      `model "${key}": all ${count} instance(s) are busy and their queue is full; a worker accepts at most ${count * (1 + queuedPerInstance)} concurrent Execute calls for this model`,
    ),

  draining: (workerId: string): ServingError =>
    unavailable(`worker ${workerId} is draining and takes no new batches`),

  loadFailed: (key: string, reason: string, cause?: unknown): ServingError =>
    new ServingError(status.FAILED_PRECONDITION, `model "${key}" failed to load: ${reason}`, { cause }),

  runFailed: (key: string, reason: string, cause?: unknown): ServingError =>
    internal(`model "${key}": ONNX Runtime run failed: ${reason}`, cause),

  badLoadRequest: (key: string, problem: string): ServingError =>
    invalidArgument(`LoadModel "${key}": ${problem}`),

  badExecuteRequest: (key: string, problem: string): ServingError =>
    invalidArgument(`Execute "${key}": ${problem}`),
} as const;

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
