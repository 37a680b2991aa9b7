// A ragged model's batches (Triton's ragged batching; the plan comes from
// models/config/batch-io-config.ts): its ragged inputs joined as one 1-D
// tensor of all their requests' elements, the batch inputs it asks for made
// from the requests' shapes, and each batch output cut back by the shape of
// each request's source input. Only models whose config sets one of these
// come here; every other batch is joined and split by rows alone.
import { internal } from '../../core/errors.js';
import { type BatchInput, elementCount, type Tensor } from '../../core/tensor.js';
import { type BatchInputPlan, type BatchIoPlan, type BatchOutputPlan } from '../../models/config/batch-io-config.js';
import { joinRows, splitRows } from './batch-rows.js';

/** One request of a batch as the split needs it: its rows and its inputs (as the client sent them). */
export interface BatchMember {
  readonly rows: number;
  readonly inputs: readonly Tensor[];
}

/**
 * The batch's inputs: the members' inputs joined (ragged ones end to end in
 * 1-D, the others by rows), followed by the batch inputs. Members list the
 * same inputs in the same order, as for joinRows. Without a plan, joinRows.
 */
export function joinBatch(plan: BatchIoPlan | undefined, members: readonly (readonly Tensor[])[]): readonly BatchInput[] {
  if (plan === undefined) return joinRows(members);
  const joined: BatchInput[] = [...joinRows(members, plan.ragged)];
  for (const b of plan.inputs) {
    const made = batchInputOf(b, members.map((m) => sourceOf(m, b.source)));
    for (const name of b.targets) joined.push({ ...made, name });
  }
  return joined;
}

/** Each member's outputs: batch outputs scattered by its source input's shape, the others cut by rows (all of them without a plan). */
export function splitBatch(plan: BatchIoPlan | undefined, outputs: readonly Tensor[], members: readonly BatchMember[]): Tensor[][] {
  if (plan === undefined) return splitRows(outputs, members.map((m) => m.rows));
  const byRows: Tensor[] = [];
  const scattered: { output: Tensor; plan: BatchOutputPlan }[] = [];
  for (const t of outputs) {
    const p = plan.outputs.find((o) => o.target === t.name);
    if (p) scattered.push({ output: t, plan: p });
    else byRows.push(t);
  }
  const parts = splitRows(byRows, members.map((m) => m.rows));
  for (const { output, plan: p } of scattered) {
    const pieces = scatter(output, p, members);
    pieces.forEach((piece, i) => parts[i]?.push(piece));
  }
  return parts;
}

function sourceOf(inputs: readonly Tensor[], name: string): Tensor {
  for (const t of inputs) if (t.name === name) return t;
  // Validation requires every input the config lists, and a batch input's source is one.
  throw internal(`batch input source '${name}' is missing from a request`);
}

/** One batch input's tensor (its name set by the caller) from the members' source tensors, as Triton's backends make it. */
export function batchInputOf(plan: BatchInputPlan, sources: readonly Tensor[]): Tensor {
  const values: number[] = [];
  let shape: number[];
  switch (plan.kind) {
    case 'element_count':
      for (const s of sources) values.push(elementCount(s.shape));
      shape = [sources.length];
      break;
    case 'accumulated_element_count':
    case 'accumulated_element_count_with_zero': {
      let total = 0;
      if (plan.kind === 'accumulated_element_count_with_zero') values.push(0);
      for (const s of sources) values.push((total += elementCount(s.shape)));
      shape = [values.length];
      break;
    }
    case 'max_element_count_as_shape': {
      // Only its shape says something; Triton leaves its data uninitialised, here it is zeros (4 bytes an element
      // of the longest request: allocated at its size, not grown a value at a time).
      let max = 0;
      for (const s of sources) max = Math.max(max, elementCount(s.shape));
      return { name: plan.targets[0] as string, datatype: plan.datatype, shape: [max], data: new Uint8Array(4 * max) };
    }
    case 'item_shape':
    case 'item_shape_flatten': {
      // Each batch item's shape without the batch dimension, once per item of each request.
      let items = 0;
      let rank = 0;
      for (const s of sources) {
        const rows = s.shape[0] ?? 0;
        rank = s.shape.length - 1;
        items += rows;
        for (let r = 0; r < rows; r++) for (let j = 1; j < s.shape.length; j++) values.push(s.shape[j] as number);
      }
      shape = plan.kind === 'item_shape' ? [items, rank] : [values.length];
      break;
    }
  }
  const data = plan.datatype === 'INT32' ? new Int32Array(values) : new Float32Array(values);
  return { name: plan.targets[0] as string, datatype: plan.datatype, shape, data: new Uint8Array(data.buffer) };
}

/** Cuts a batch output into the members' parts, in order, each shaped by its source input. */
function scatter(output: Tensor, plan: BatchOutputPlan, members: readonly BatchMember[]): Tensor[] {
  const shapes = members.map((m) => {
    const source = sourceOf(m.inputs, plan.source).shape;
    return plan.shape.map((d, j) => (d === -1 ? (source[j] as number) : d));
  });
  let total = 0;
  for (const s of shapes) total += elementCount(s) * plan.elementBytes;
  if (output.data.byteLength !== total) {
    throw internal(
      `worker output '${output.name}' (shape [${output.shape.join(',')}]): expected ${total} bytes, what the batch's requests' '${plan.source}' shapes give it (batch_output), got ${output.data.byteLength}`,
    );
  }
  let offset = 0;
  return shapes.map((shape) => {
    const bytes = elementCount(shape) * plan.elementBytes;
    const data = output.data.subarray(offset, (offset += bytes));
    return { name: output.name, datatype: output.datatype, shape, data };
  });
}
