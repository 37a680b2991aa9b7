import { status as GrpcStatus } from '@grpc/grpc-js';
import { type InferenceError } from '../../client/errors.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';

/** The error a call must fail with; throws when it succeeds. */
export async function failure(p: Promise<unknown>): Promise<InferenceError> {
  try {
    await p;
  } catch (error) {
    return error as InferenceError;
  }
  throw new Error('expected the call to fail');
}

/** 'OK', or the gRPC status name the call failed with. */
export async function outcomeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (error) {
    return GrpcStatus[(error as InferenceError).code] ?? 'UNKNOWN';
  }
}

/** A ModelInferRequest of zeros: FP32 inputs of shape [1, elements], raw. */
export function zerosRequest(model: string, inputs: readonly string[], elements: number, version = ''): ModelInferRequest {
  return {
    modelName: model,
    modelVersion: version,
    id: '',
    parameters: {},
    inputs: inputs.map((name) => ({ name, datatype: 'FP32', shape: [1n, BigInt(elements)], parameters: {}, contents: undefined })),
    outputs: [],
    rawInputContents: inputs.map(() => Buffer.alloc(elements * 4)),
  };
}
