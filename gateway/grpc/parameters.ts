import { invalidArgument } from '../../core/errors.js';
import { CLASSIFICATION_PARAMETER, type ClassCounts, classCountOf } from '../inference/classification.js';
import { type InferParameterValue } from '../inference/infer-request.js';
import { namesSharedMemory, refFromProto, type SharedOutputRequest } from '../shared-memory/shared-memory-tensors.js';
import { type InferParameter, type ModelInferRequest_InferRequestedOutputTensor } from '../../proto/gen/inference.js';

/** What most requests carry: no parameters (shared, so such a request allocates nothing here). */
const NO_PARAMETERS: Readonly<Record<string, InferParameterValue>> = Object.freeze({});

/** KServe's oneof parameters → plain values; unset entries are dropped. */
export function parametersFromProto(parameters: Readonly<Record<string, InferParameter>>): Readonly<Record<string, InferParameterValue>> {
  let out: Record<string, InferParameterValue> | undefined;
  for (const key in parameters) {
    const choice = parameters[key]?.parameterChoice;
    if (choice) (out ??= {})[key] = choice.value;
  }
  return out ?? NO_PARAMETERS;
}

/** A gRPC request's requested outputs: their names and what their parameters ask (one pass over them). */
export interface RequestedOutputs {
  readonly names: readonly string[];
  /** `classification` (an int64_param, as Triton's clients send it); undefined when none asks. */
  readonly classifications: ClassCounts | undefined;
  /** Those that name a shared memory region; undefined when none does. */
  readonly shared: readonly SharedOutputRequest[] | undefined;
}

/** What most requests ask for: every output, nothing more (shared: such a request allocates nothing here). */
const ALL_OUTPUTS: RequestedOutputs = Object.freeze({ names: Object.freeze([]), classifications: undefined, shared: undefined });

export function requestedOutputsFromProto(outputs: readonly ModelInferRequest_InferRequestedOutputTensor[], model: string): RequestedOutputs {
  if (outputs.length === 0) return ALL_OUTPUTS;
  let classifications: Map<string, number> | undefined;
  let shared: SharedOutputRequest[] | undefined;
  const names = outputs.map((o) => {
    const label = `model '${model}': output '${o.name}'`;
    const choice = o.parameters[CLASSIFICATION_PARAMETER]?.parameterChoice;
    if (choice !== undefined) {
      if (choice.$case !== 'int64Param' && choice.$case !== 'uint64Param') {
        throw invalidArgument(`${label}: parameter 'classification' must be an int64_param, got ${choice.$case.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`);
      }
      const k = classCountOf(choice.value, label);
      if (k > 0) (classifications ??= new Map()).set(o.name, k);
    }
    const ref = namesSharedMemory(o.parameters) ? refFromProto(o.parameters, label) : undefined;
    if (ref !== undefined) (shared ??= []).push({ name: o.name, ref, classified: choice !== undefined });
    return o.name;
  });
  return { names, classifications, shared };
}
