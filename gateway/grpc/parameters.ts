import { invalidArgument } from '../../core/errors.js';
import { CLASSIFICATION_PARAMETER, type ClassCounts, classCountOf } from '../inference/classification.js';
import { type InferParameterValue } from '../inference/infer-request.js';
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

/**
 * The requested outputs' `classification` parameters (an int64_param, as
 * Triton's clients send it); undefined when none asks, as for most requests.
 */
export function classCountsFromProto(outputs: readonly ModelInferRequest_InferRequestedOutputTensor[], model: string): ClassCounts | undefined {
  let counts: Map<string, number> | undefined;
  for (const o of outputs) {
    const choice = o.parameters[CLASSIFICATION_PARAMETER]?.parameterChoice;
    if (choice === undefined) continue;
    const label = `model '${model}': output '${o.name}'`;
    if (choice.$case !== 'int64Param' && choice.$case !== 'uint64Param') {
      throw invalidArgument(`${label}: parameter 'classification' must be an int64_param, got ${choice.$case.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`);
    }
    const k = classCountOf(choice.value, label);
    if (k > 0) (counts ??= new Map()).set(o.name, k);
  }
  return counts;
}
