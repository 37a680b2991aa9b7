import { elementSize, type Datatype } from '../core/datatypes.js';
import { type BatchTask, type SessionInfo, type ThreadTensor } from './thread-protocol.js';
import { joinToArrayBuffer } from './tensor-bytes.js';

// Execute calls for one model that wait for the same instance, from any
// gateway connection, run as one ONNX Runtime run: their inputs are
// concatenated along dim 0, and each output is split back by rows. With
// several gateway processes (fabriek serve --gateway-processes N) each
// batcher sees 1/N of the traffic; merging here keeps batches as large as
// one gateway would make them. Pure functions, unit-tested.
//
// Only fixed-size datatypes merge: BYTES elements are length-prefixed, so
// splitting an output would mean walking every element (not done).

/** An output of a split run: a view of the merged run's buffer (not copied). */
export interface OutputTensor {
  readonly name: string;
  readonly datatype: Datatype;
  readonly shape: readonly number[];
  readonly data: ArrayBuffer | Uint8Array;
}

/**
 * Can runs of this model be merged: batchable (max_batch_size > 0), and every
 * input and output has a variable dim 0 and a fixed-size datatype.
 */
export function mergeable(info: SessionInfo, maxBatchSize: number): boolean {
  if (maxBatchSize <= 1) return false;
  const batchable = (t: SessionInfo['inputs'][number]): boolean => t.shape.length >= 1 && t.shape[0] === -1 && t.datatype !== 'BYTES';
  return info.inputs.length > 0 && info.inputs.every(batchable) && info.outputs.every(batchable);
}

/** The rows (dim 0) of a task, or -1 when it has no inputs or its inputs disagree on dim 0. */
export function rowsOf(task: BatchTask): number {
  const first = task.inputs[0];
  if (first === undefined || first.shape.length === 0 || first.datatype === 'BYTES') return -1;
  const rows = first.shape[0] as number;
  for (const t of task.inputs) if (t.shape.length === 0 || t.shape[0] !== rows || t.datatype === 'BYTES') return -1;
  return rows;
}

/**
 * Can `b` run in one run with `a`: the same inputs in the same order, each
 * with the same datatype and the same dims after dim 0, and the same outputs asked for.
 */
export function compatible(a: BatchTask, b: BatchTask): boolean {
  if (a.inputs.length !== b.inputs.length || a.outputs.length !== b.outputs.length) return false;
  for (let i = 0; i < a.outputs.length; i++) if (a.outputs[i] !== b.outputs[i]) return false;
  for (let i = 0; i < a.inputs.length; i++) {
    const x = a.inputs[i] as ThreadTensor;
    const y = b.inputs[i] as ThreadTensor;
    if (x.name !== y.name || x.datatype !== y.datatype || x.shape.length !== y.shape.length) return false;
    for (let d = 1; d < x.shape.length; d++) if (x.shape[d] !== y.shape[d]) return false;
  }
  return true;
}

/** One task whose inputs are the tasks' inputs concatenated along dim 0 (compatible tasks only), and its transfer list. */
export function concatTasks(tasks: readonly BatchTask[]): { task: BatchTask; transfer: ArrayBuffer[] } {
  const first = tasks[0];
  if (first === undefined) throw new Error('concatTasks: no tasks');
  const inputs: ThreadTensor[] = [];
  const transfer: ArrayBuffer[] = [];
  for (let i = 0; i < first.inputs.length; i++) {
    const proto = first.inputs[i] as ThreadTensor;
    let rows = 0;
    const parts: Uint8Array[] = [];
    for (const t of tasks) {
      const input = t.inputs[i] as ThreadTensor;
      rows += input.shape[0] as number;
      parts.push(new Uint8Array(input.data));
    }
    const data = joinToArrayBuffer(parts);
    inputs.push({ name: proto.name, datatype: proto.datatype, shape: [rows, ...proto.shape.slice(1)], data });
    transfer.push(data);
  }
  return { task: { inputs, outputs: first.outputs }, transfer };
}

/**
 * The outputs of a merged run split by rows, one list per task, in order
 * (views of the run's buffers). A string says why it cannot be split: an
 * output whose dim 0 is not the rows run, or whose bytes do not match its shape.
 */
export function splitOutputs(outputs: readonly ThreadTensor[], rows: readonly number[]): OutputTensor[][] | string {
  let total = 0;
  for (const r of rows) total += r;
  const parts: OutputTensor[][] = rows.map(() => []);
  for (const t of outputs) {
    if (t.datatype === 'BYTES') return `output "${t.name}" is BYTES, which is not split`;
    if (t.shape.length === 0 || t.shape[0] !== total) return `output "${t.name}" has shape [${t.shape.join(',')}]; dim 0 should be the ${total} rows run`;
    let rowElements = 1;
    for (let d = 1; d < t.shape.length; d++) rowElements *= t.shape[d] as number;
    const rowBytes = rowElements * elementSize(t.datatype);
    if (rowBytes * total !== t.data.byteLength) return `output "${t.name}" has ${t.data.byteLength} bytes; shape [${t.shape.join(',')}] needs ${rowBytes * total}`;
    const tail = t.shape.slice(1);
    let at = 0;
    rows.forEach((r, i) => {
      (parts[i] as OutputTensor[]).push({ name: t.name, datatype: t.datatype, shape: [r, ...tail], data: new Uint8Array(t.data, at, r * rowBytes) });
      at += r * rowBytes;
    });
  }
  return parts;
}
