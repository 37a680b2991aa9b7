import { type InferParameterValue } from '../inference/infer-request.js';
import { type InferParameter } from '../../proto/gen/inference.js';

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
