// Rows along dimension 0: joining requests' inputs into one batch (as
// parts, never copied) and cutting the batch's outputs back into
// per-request views.
import { elementSize } from '../../core/datatypes.js';
import { internal } from '../../core/errors.js';
import { type BatchInput, elementCount, type Tensor } from '../../core/tensor.js';
import { walkBytesElements } from '../tensor/bytes-elements.js';

function byName(a: Tensor, b: Tensor): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Dims after the batch dimension, as text. */
function innerDims(shape: readonly number[]): string {
  let s = '';
  for (let i = 1; i < shape.length; i++) s += i === 1 ? `${shape[i]}` : `,${shape[i]}`;
  return s;
}

/**
 * A request's inputs in name order and the key of what must be equal for
 * requests to share a batch: input names, datatypes and every dimension
 * but the first (none of a `ragged` input's, which joins as its elements end
 * to end). The name order lets members' inputs line up for `joinRows`
 * whatever order each client sent them in.
 */
export function batchShape(inputs: readonly Tensor[], ragged?: ReadonlySet<string>): { inputs: readonly Tensor[]; key: string } {
  const sorted = inputs.length <= 1 ? inputs : [...inputs].sort(byName);
  let key = '';
  for (const t of sorted) {
    key += ragged?.has(t.name) ? `${t.name}\u0000${t.datatype}\u0000*\u0001` : `${t.name}\u0000${t.datatype}\u0000${t.shape.length}:${innerDims(t.shape)}\u0001`;
  }
  return { inputs: sorted, key };
}

/**
 * The key of a request run on its own (a model without dynamic batching):
 * input names, datatypes and dims from `fromDim` (1 for a model that
 * batches, whose first dim is rows; 0 for one that does not, whose every dim
 * is its own), in name order. Requests of equal keys cost alike per row: the
 * shape key of the per-shape cost models (core/kind-costs.ts). With
 * fromDim 1 it reads as batchShape's key, but a ragged input's dims count
 * too: run alone, its length is its cost.
 */
export function runShapeKey(inputs: readonly Tensor[], fromDim: 0 | 1): string {
  const sorted = inputs.length <= 1 ? inputs : [...inputs].sort(byName);
  let key = '';
  for (const t of sorted) key += `${t.name}\u0000${t.datatype}\u0000${fromDim === 1 ? `${t.shape.length}:${innerDims(t.shape)}` : `=${t.shape.join(',')}`}\u0001`;
  return key;
}

/**
 * A batchShape or runShapeKey key as people read it: each input's name,
 * datatype and shape with -1 for the batch dimension (`ragged` for a ragged
 * input), e.g. `INPUT FP32 [-1,128]; MASK BOOL [-1,128]`; a model that does
 * not batch shows its dims as they were, e.g. `IMAGE UINT8 [3,480,640]`.
 */
export function shapeLabel(key: string): string {
  const parts: string[] = [];
  for (const input of key.split('\u0001')) {
    if (input === '') continue;
    const [name = '', datatype = '', dims = ''] = input.split('\u0000');
    if (dims === '*') {
      parts.push(`${name} ${datatype} ragged`);
      continue;
    }
    if (dims.startsWith('=')) {
      // A runShapeKey of a model that does not batch: every dim is the request's own.
      parts.push(`${name} ${datatype} [${dims.slice(1)}]`);
      continue;
    }
    const inner = dims.slice(dims.indexOf(':') + 1);
    parts.push(`${name} ${datatype} [${inner === '' ? '-1' : `-1,${inner}`}]`);
  }
  return parts.join('; ');
}

/**
 * The elements one row of a batchShape or runShapeKey key holds, summed over
 * its inputs (a model that does not batch: the request's): what its kind's
 * size curve is read at (core/kind-costs.ts). 0 where no count holds for
 * every row of the key: a ragged input, whose rows differ in length.
 */
export function elementsPerRowOf(key: string): number {
  let total = 0;
  for (const input of key.split('\u0001')) {
    if (input === '') continue;
    const dims = input.slice(input.lastIndexOf('\u0000') + 1);
    if (dims === '*') return 0;
    const list = dims.startsWith('=') ? dims.slice(1) : dims.slice(dims.indexOf(':') + 1);
    let elements = 1;
    if (list !== '') for (const d of list.split(',')) elements *= Number(d);
    if (!Number.isFinite(elements)) return 0;
    total += elements;
  }
  return total;
}

/**
 * Joins each input of the members along dimension 0: member j's tensor i
 * follows member j-1's. Nothing is copied: the joined input holds the
 * members' bytes as parts, which the frame to the worker writes in order
 * (BYTES inputs join as their raw length-prefixed bytes do). Members must
 * list the same inputs in the same order with equal non-batch dims (see
 * `batchShape`); anything else is an INTERNAL error. A `ragged` input joins
 * as one 1-D tensor of every member's elements, whatever their shapes.
 * Without ragged inputs a single member's tensors are returned as they are.
 */
export function joinRows(tensorsPerMember: readonly (readonly Tensor[])[], ragged?: ReadonlySet<string>): readonly BatchInput[] {
  const first = tensorsPerMember[0];
  if (first === undefined) return [];
  if (ragged !== undefined && ragged.size > 0) return first.map((head, i) => (ragged.has(head.name) ? joinFlat(tensorsPerMember, head, i) : joinInput(tensorsPerMember, head, i)));
  if (tensorsPerMember.length === 1) return first;
  return first.map((head, i) => joinInput(tensorsPerMember, head, i));
}

/** Input i of every member along dimension 0. */
function joinInput(tensorsPerMember: readonly (readonly Tensor[])[], head: Tensor, i: number): BatchInput {
  if (tensorsPerMember.length === 1) return head;
  const inner = innerDims(head.shape);
  let rows = 0;
  const parts: Uint8Array[] = [];
  for (const [j, member] of tensorsPerMember.entries()) {
    const t = member[i];
    if (
      t === undefined ||
      t.name !== head.name ||
      t.datatype !== head.datatype ||
      t.shape.length !== head.shape.length ||
      t.shape.length === 0 ||
      innerDims(t.shape) !== inner
    ) {
      throw internal(`batch member ${j} does not match member 0 at input ${i} ('${head.name}')`);
    }
    rows += t.shape[0] ?? 0;
    parts.push(t.data);
  }
  return { name: head.name, datatype: head.datatype, shape: [rows, ...head.shape.slice(1)], parts };
}

/** Input i of every member as one 1-D tensor of all their elements (a ragged input). */
function joinFlat(tensorsPerMember: readonly (readonly Tensor[])[], head: Tensor, i: number): BatchInput {
  let elements = 0;
  const parts: Uint8Array[] = [];
  for (const [j, member] of tensorsPerMember.entries()) {
    const t = member[i];
    if (t === undefined || t.name !== head.name || t.datatype !== head.datatype) {
      throw internal(`batch member ${j} does not match member 0 at input ${i} ('${head.name}')`);
    }
    elements += elementCount(t.shape);
    parts.push(t.data);
  }
  return { name: head.name, datatype: head.datatype, shape: [elements], parts };
}

/** Byte offsets in a BYTES buffer where each member's rows start, plus its end. */
function bytesBoundaries(t: Tensor, rowCounts: readonly number[], perRow: number, where: string): number[] {
  const targets: number[] = [];
  let elements = 0;
  for (const n of rowCounts) {
    targets.push(elements);
    elements += n * perRow;
  }
  const bounds: number[] = [];
  let index = 0;
  let count: number;
  try {
    count = walkBytesElements(t.data, where, (start) => {
      while (bounds.length < targets.length && targets[bounds.length] === index) bounds.push(start - 4);
      index++;
    });
  } catch (error) {
    throw internal(`${where}: malformed BYTES data: ${(error as Error).message}`, error);
  }
  if (count !== elements) throw internal(`${where}: expected ${elements} BYTES elements, got ${count}`);
  // Members whose rows hold no elements start at the end.
  while (bounds.length < targets.length) bounds.push(t.data.byteLength);
  bounds.push(t.data.byteLength);
  return bounds;
}

/**
 * Cuts each output of a batch into the members' rows: member i gets rows
 * [offset, offset + rowCounts[i]). The parts are views of the outputs' bytes,
 * not copies; BYTES outputs are walked once to find the members' byte ranges.
 * An output whose dimension 0 is not the batch's total rows (or whose bytes
 * do not match its shape) is an INTERNAL error: the worker broke the
 * contract and no member can be answered from it.
 */
export function splitRows(outputs: readonly Tensor[], rowCounts: readonly number[]): Tensor[][] {
  let total = 0;
  for (const n of rowCounts) total += n;
  const parts: Tensor[][] = rowCounts.map(() => []);
  for (const t of outputs) {
    const where = `worker output '${t.name}' (shape [${t.shape.join(',')}])`;
    if (t.shape.length === 0 || t.shape[0] !== total) {
      throw internal(`${where}: expected ${total} rows along dimension 0 for a batch of ${rowCounts.length} requests`);
    }
    if (rowCounts.length === 1) {
      parts[0]?.push(t);
      continue;
    }
    const inner = t.shape.slice(1);
    const perRow = elementCount(inner);
    const size = elementSize(t.datatype);
    let bounds: number[];
    if (size > 0) {
      const rowBytes = perRow * size;
      if (t.data.byteLength !== total * rowBytes) {
        throw internal(`${where}: expected ${total * rowBytes} bytes of ${t.datatype}, got ${t.data.byteLength}`);
      }
      bounds = [0];
      let row = 0;
      for (const n of rowCounts) bounds.push((row += n) * rowBytes);
    } else {
      bounds = bytesBoundaries(t, rowCounts, perRow, where);
    }
    rowCounts.forEach((n, i) => {
      const data = t.data.subarray(bounds[i], bounds[i + 1]);
      parts[i]?.push({ name: t.name, datatype: t.datatype, shape: [n, ...inner], data });
    });
  }
  return parts;
}
