import { type InferParameterValue } from '../inference/infer-request.js';
import { type InferParameter } from '../../proto/gen/inference.js';

/** KServe's oneof parameters → plain values; unset entries are dropped. */
export function parametersFromProto(
  parameters: Readonly<Record<string, InferParameter>>,
): Record<string, InferParameterValue> {
  const out: Record<string, InferParameterValue> = {};
  for (const [key, p] of Object.entries(parameters)) {
    const choice = p.parameterChoice;
    if (choice) out[key] = choice.value;
  }
  return out;
}
