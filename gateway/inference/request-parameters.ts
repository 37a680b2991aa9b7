import { invalidArgument } from '../../core/errors.js';
import { type InferParameterValue } from './infer-request.js';

export interface SchedulingParameters {
  priority?: number;
  timeoutUs?: number;
}

function nonNegativeInteger(value: InferParameterValue, what: string): number {
  const n = typeof value === 'bigint' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw invalidArgument(`${what}: expected a non-negative integer, got ${JSON.stringify(String(value))}`);
  }
  return n;
}

/** Triton's request parameters that steer scheduling: `priority` and `timeout` (µs). */
export function schedulingParameters(
  parameters: Readonly<Record<string, InferParameterValue>>,
  model: string,
): SchedulingParameters {
  const out: SchedulingParameters = {};
  const priority = parameters['priority'];
  if (priority !== undefined) {
    const p = nonNegativeInteger(priority, `model '${model}': parameter 'priority'`);
    if (p > 0) out.priority = p;
  }
  const timeout = parameters['timeout'];
  if (timeout !== undefined) {
    const t = nonNegativeInteger(timeout, `model '${model}': parameter 'timeout'`);
    if (t > 0) out.timeoutUs = t;
  }
  return out;
}
