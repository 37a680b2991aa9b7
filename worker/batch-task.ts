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
const MAX_DIM_BIG = BigInt(MAX_DIM);

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
  const inputs: ThreadTensor[] = [];
  const transfer: ArrayBuffer[] = [];
  // No map, set or closure per request for a model of a few inputs: a name is looked up among them.
  const many = request.inputs.length > FEW ? new Set<string>() : undefined;
  for (const tensor of request.inputs) {
    const spec = specNamed(info.inputs, tensor.name);
    if (spec === undefined) throw bad(key, `unknown input "${tensor.name}"; the model has ${names(info.inputs)}`);
    if (many ? many.has(tensor.name) : hasNamed(inputs, tensor.name)) throw bad(key, `input "${tensor.name}" is given twice`);
    many?.add(tensor.name);
    const shape = checkShape(key, tensor, spec);
    checkData(key, tensor, spec, shape);
    let data = borrowed ? copyToArrayBuffer(tensor.data) : takeArrayBuffer(tensor.data);
    // A buffer can be transferred once; never expected from the decoder, but cheap to guard.
    if (transfer.includes(data)) data = copyToArrayBuffer(tensor.data);
    transfer.push(data);
    inputs.push({ name: tensor.name, datatype: spec.datatype, shape, data });
  }
  // Every input named is the model's and named once, so as many as the model has means none is missing.
  if (inputs.length !== info.inputs.length) {
    const missing = info.inputs.filter((s) => !hasNamed(inputs, s.name)).map((s) => `"${s.name}"`);
    throw bad(key, `missing input(s) ${missing.join(', ')}`);
  }
  for (const name of request.outputs) {
    if (specNamed(info.outputs, name) === undefined) throw bad(key, `unknown output "${name}"; the model has ${names(info.outputs)}`);
  }
  return { task: { inputs, outputs: request.outputs.length === 0 ? [] : [...new Set(request.outputs)] }, transfer };
}

function bad(key: string, problem: string): ServingError {
  return WorkerErrors.badExecuteRequest(key, problem);
}

/** Up to this many tensors, a name is found by a scan; past it, by a map built once per model. */
const FEW = 16;
const byName = new WeakMap<readonly TensorSpecInfo[], Map<string, TensorSpecInfo>>();

function specNamed(specs: readonly TensorSpecInfo[], name: string): TensorSpecInfo | undefined {
  if (specs.length > FEW) {
    let map = byName.get(specs);
    if (map === undefined) byName.set(specs, (map = new Map(specs.map((s) => [s.name, s]))));
    return map.get(name);
  }
  for (const s of specs) if (s.name === name) return s;
  return undefined;
}

function hasNamed(tensors: readonly { readonly name: string }[], name: string): boolean {
  for (const t of tensors) if (t.name === name) return true;
  return false;
}

function checkShape(key: string, tensor: TensorData, spec: TensorSpecInfo): number[] {
  const dims = tensor.shape;
  const shape = new Array<number>(dims.length);
  for (let i = 0; i < dims.length; i++) {
    const d = dims[i] as bigint;
    if (d < 0n || d > MAX_DIM_BIG) throw bad(key, `input "${tensor.name}" has dimension ${d}; expected 0..${MAX_DIM}`);
    shape[i] = Number(d);
  }
  // ORT reports an unknown rank as [] (same as a scalar), so only a known rank is checked.
  if (spec.shape.length === 0) return shape;
  let fits = shape.length === spec.shape.length;
  for (let i = 0; fits && i < shape.length; i++) {
    const d = spec.shape[i] as number;
    if (d >= 0 && shape[i] !== d) fits = false;
  }
  if (!fits) {
    throw bad(key, `input "${tensor.name}" has shape [${shape.join(',')}]; the model expects [${spec.shape.join(',')}] (-1 = any)`);
  }
  return shape;
}

function checkData(key: string, tensor: TensorData, spec: TensorSpecInfo, shape: readonly number[]): void {
  if (!isDatatype(tensor.datatype) || tensor.datatype !== spec.datatype) {
    throw bad(key, `input "${tensor.name}" has datatype "${tensor.datatype}"; the model expects ${spec.datatype}`);
  }
  const count = elementCount(shape);
  if (spec.datatype === 'BYTES') {
    const framing = checkBytesElements(tensor.data);
    if ('problem' in framing) throw bad(key, `input "${tensor.name}" (BYTES): ${framing.problem}`);
    if (framing.count !== count) {
      throw bad(key, `input "${tensor.name}" has ${framing.count} BYTES elements; shape [${shape.join(',')}] needs ${count}`);
    }
    return;
  }
  const expected = count * elementSize(spec.datatype);
  if (tensor.data.byteLength !== expected) {
    throw bad(
      key,
      `input "${tensor.name}" has ${tensor.data.byteLength} bytes; shape [${shape.join(',')}] of ${spec.datatype} needs ${expected}`,
    );
  }
}

function names(specs: readonly TensorSpecInfo[]): string {
  return specs.map((s) => `"${s.name}"`).join(', ');
}
