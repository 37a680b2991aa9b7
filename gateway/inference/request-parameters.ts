import { invalidArgument } from '../../core/errors.js';
import { type SequenceFlags } from '../scheduling/execution.js';
import { type InferParameterValue } from './infer-request.js';

export interface SchedulingParameters {
  priority?: number;
  timeoutUs?: number;
  /** `sequence_id` (with `sequence_start`, `sequence_end`): for a stateful model's sequence scheduler. */
  sequence?: SequenceFlags;
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

const UINT64_MAX = 2n ** 64n - 1n;

/** `sequence_id`: an unsigned 64-bit integer or a string, as Triton's clients send it. */
function correlationId(value: InferParameterValue, model: string): bigint | string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isInteger(value) && value > Number.MAX_SAFE_INTEGER) {
    // A JSON number past 2^53 reached us rounded (JSON.parse): its exact value is gone.
    throw invalidArgument(
      `model '${model}': parameter 'sequence_id': ${value} is past 2^53 - 1 (${Number.MAX_SAFE_INTEGER}), where a JSON number loses its exact value; send such an ID as a string, or over gRPC as a uint64_param`,
    );
  }
  const n = typeof value === 'bigint' ? value : typeof value === 'number' && Number.isSafeInteger(value) ? BigInt(value) : undefined;
  if (n === undefined || n < 0n || n > UINT64_MAX) {
    throw invalidArgument(`model '${model}': parameter 'sequence_id': expected an unsigned 64-bit integer or a string, got ${JSON.stringify(String(value))}`);
  }
  return n;
}

function flag(value: InferParameterValue | undefined, what: string, model: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw invalidArgument(`model '${model}': parameter '${what}': expected a boolean, got ${JSON.stringify(String(value))}`);
  return value;
}

/** Triton's request parameters that steer scheduling: `priority`, `timeout` (µs) and the sequence's. */
export function schedulingParameters(
  parameters: Readonly<Record<string, InferParameterValue>>,
  model: string,
): Readonly<SchedulingParameters> {
  const priority = parameters['priority'];
  const timeout = parameters['timeout'];
  const sequenceId = parameters['sequence_id'];
  if (priority === undefined && timeout === undefined && sequenceId === undefined) return NONE;
  const out: SchedulingParameters = {};
  if (sequenceId !== undefined) {
    out.sequence = {
      id: correlationId(sequenceId, model),
      start: flag(parameters['sequence_start'], 'sequence_start', model),
      end: flag(parameters['sequence_end'], 'sequence_end', model),
    };
  }
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
