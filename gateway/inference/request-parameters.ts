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

/** A request without either parameter (most): shared, read only. */
const NONE: Readonly<SchedulingParameters> = Object.freeze({});

/** Triton's request parameters that steer scheduling: `priority` and `timeout` (µs). */
export function schedulingParameters(
  parameters: Readonly<Record<string, InferParameterValue>>,
  model: string,
): Readonly<SchedulingParameters> {
  const priority = parameters['priority'];
  const timeout = parameters['timeout'];
  if (priority === undefined && timeout === undefined) return NONE;
  const out: SchedulingParameters = {};
  if (priority !== undefined) {
    const p = nonNegativeInteger(priority, `model '${model}': parameter 'priority'`);
    if (p > 0) out.priority = p;
  }
  if (timeout !== undefined) {
    const t = nonNegativeInteger(timeout, `model '${model}': parameter 'timeout'`);
    if (t > 0) out.timeoutUs = t;
  }
  return out;
}
