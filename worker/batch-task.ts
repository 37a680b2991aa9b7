import { elementSize, isDatatype } from '../core/datatypes.js';
import { type ServingError } from '../core/errors.js';
import { elementCount } from '../core/tensor.js';
import { type ExecuteRequest, type TensorData } from '../proto/gen/worker.js';
import { checkBytesElements } from './bytes-elements.js';
import { WorkerErrors } from './errors.js';
import { copyToArrayBuffer, takeArrayBuffer } from './tensor-bytes.js';
import { type BatchTask, type SessionInfo, type TensorSpecInfo, type ThreadTensor } from './thread-protocol.js';

// ExecuteRequest → BatchTask for an ORT thread. The gateway validates requests
// against the model already; the worker checks again what is cheap, because ORT
// would otherwise ignore unknown inputs or fail with an opaque message.

const MAX_DIM = 2 ** 31 - 1;

export interface PreparedBatch {
  readonly task: BatchTask;
  /** Input buffers to move to the thread (the request's Buffers are detached). */
  readonly transfer: ArrayBuffer[];
}

/**
 * `borrowed`: the request's bytes still belong to the caller (a gateway in the
 * same process, which may answer from them, cache them or feed them to an
 * ensemble's next step), so they are copied even where they span a whole
 * ArrayBuffer that could be moved.
 */
export function prepareBatch(request: ExecuteRequest, info: SessionInfo, borrowed = false): PreparedBatch {
  const key = request.modelKey;
  const bad = (problem: string): ServingError => WorkerErrors.badExecuteRequest(key, problem);
  const specs = new Map(info.inputs.map((s) => [s.name, s]));
  const seen = new Set<string>();
  const inputs: ThreadTensor[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const tensor of request.inputs) {
    const spec = specs.get(tensor.name);
    if (spec === undefined) throw bad(`unknown input "${tensor.name}"; the model has ${names(info.inputs)}`);
    if (seen.has(tensor.name)) throw bad(`input "${tensor.name}" is given twice`);
    seen.add(tensor.name);
    const shape = checkShape(tensor, spec, bad);
    checkData(tensor, spec, shape, bad);
    let data = borrowed ? copyToArrayBuffer(tensor.data) : takeArrayBuffer(tensor.data);
    // A buffer can be transferred once; never expected from the decoder, but cheap to guard.
    if (transfer.includes(data)) data = copyToArrayBuffer(tensor.data);
    transfer.push(data);
    inputs.push({ name: tensor.name, datatype: spec.datatype, shape, data });
  }
  const missing = info.inputs.filter((s) => !seen.has(s.name)).map((s) => `"${s.name}"`);
  if (missing.length > 0) throw bad(`missing input(s) ${missing.join(', ')}`);
  const outputNames = new Set(info.outputs.map((s) => s.name));
  for (const name of request.outputs) {
    if (!outputNames.has(name)) throw bad(`unknown output "${name}"; the model has ${names(info.outputs)}`);
  }
  return { task: { inputs, outputs: [...new Set(request.outputs)] }, transfer };
}

function checkShape(tensor: TensorData, spec: TensorSpecInfo, bad: (p: string) => ServingError): number[] {
  const shape = tensor.shape.map((d) => {
    if (d < 0n || d > BigInt(MAX_DIM)) throw bad(`input "${tensor.name}" has dimension ${d}; expected 0..${MAX_DIM}`);
    return Number(d);
  });
  // ORT reports an unknown rank as [] (same as a scalar), so only a known rank is checked.
  if (spec.shape.length === 0) return shape;
  const expected = `[${spec.shape.join(',')}]`;
  if (shape.length !== spec.shape.length) {
    throw bad(`input "${tensor.name}" has shape [${shape.join(',')}]; the model expects ${expected} (-1 = any)`);
  }
  spec.shape.forEach((d, i) => {
    if (d >= 0 && shape[i] !== d) {
      throw bad(`input "${tensor.name}" has shape [${shape.join(',')}]; the model expects ${expected} (-1 = any)`);
    }
  });
  return shape;
}

function checkData(
  tensor: TensorData,
  spec: TensorSpecInfo,
  shape: readonly number[],
  bad: (p: string) => ServingError,
): void {
  if (!isDatatype(tensor.datatype) || tensor.datatype !== spec.datatype) {
    throw bad(`input "${tensor.name}" has datatype "${tensor.datatype}"; the model expects ${spec.datatype}`);
  }
  const count = elementCount(shape);
  if (spec.datatype === 'BYTES') {
    const framing = checkBytesElements(tensor.data);
    if ('problem' in framing) throw bad(`input "${tensor.name}" (BYTES): ${framing.problem}`);
    if (framing.count !== count) {
      throw bad(`input "${tensor.name}" has ${framing.count} BYTES elements; shape [${shape.join(',')}] needs ${count}`);
    }
    return;
  }
  const expected = count * elementSize(spec.datatype);
  if (tensor.data.byteLength !== expected) {
    throw bad(
      `input "${tensor.name}" has ${tensor.data.byteLength} bytes; shape [${shape.join(',')}] of ${spec.datatype} needs ${expected}`,
    );
  }
}

function names(specs: readonly TensorSpecInfo[]): string {
  return specs.map((s) => `"${s.name}"`).join(', ');
}
