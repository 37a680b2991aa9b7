import { describe, expect, it } from 'vitest';
import { type BatchInput, type Tensor } from '../../core/tensor.js';
import { batchInputOf, joinBatch, splitBatch } from '../../gateway/batching/batch-io.js';
import { batchShape } from '../../gateway/batching/batch-rows.js';
import { type BatchInputKind, type BatchIoPlan } from '../../models/config/batch-io-config.js';

// A ragged model's batches: Triton's batch input kinds as its backends make
// them (backend_input_collector.cc), ragged inputs end to end, batch outputs
// scattered by their source input's shape.

const f32 = (name: string, shape: number[], values: number[]): Tensor => ({ name, datatype: 'FP32', shape, data: new Uint8Array(new Float32Array(values).buffer) });
const valuesOf = (t: BatchInput): number[] => {
  const bytes = 'data' in t ? [t.data] : t.parts;
  const all = new Uint8Array(bytes.reduce((n, b) => n + b.byteLength, 0));
  let at = 0;
  for (const b of bytes) all.set(b, (at += b.byteLength) - b.byteLength);
  return t.datatype === 'INT32' ? [...new Int32Array(all.buffer)] : [...new Float32Array(all.buffer)];
};

const PLAN: BatchIoPlan = {
  ragged: new Set(['X']),
  inputs: [{ kind: 'accumulated_element_count_with_zero', targets: ['OFFSETS', 'OFFSETS_TOO'], datatype: 'INT32', source: 'X' }],
  outputs: [{ target: 'Y', source: 'X', elementBytes: 4, shape: [-1, -1] }],
  serverInputs: new Set(['OFFSETS', 'OFFSETS_TOO']),
  clientShaped: new Set(['X', 'Y']),
};

describe('batch inputs', () => {
  // Triton's own example: a batch-2 request of shape [2, 3, 1] and a batch-1 request of [1, 2, 2].
  const sources = [f32('X', [2, 3, 1], [1, 2, 3, 4, 5, 6]), f32('X', [1, 2, 2], [7, 8, 9, 10])];
  it.each<[BatchInputKind, number[], number[]]>([
    ['element_count', [2], [6, 4]],
    ['accumulated_element_count', [2], [6, 10]],
    ['accumulated_element_count_with_zero', [3], [0, 6, 10]],
    ['max_element_count_as_shape', [6], [0, 0, 0, 0, 0, 0]],
    ['item_shape', [3, 2], [3, 1, 3, 1, 2, 2]],
    ['item_shape_flatten', [6], [3, 1, 3, 1, 2, 2]],
  ])('%s', (kind, shape, values) => {
    for (const datatype of ['INT32', 'FP32'] as const) {
      const t = batchInputOf({ kind, targets: ['B'], datatype, source: 'X' }, sources);
      expect(t).toMatchObject({ name: 'B', datatype, shape });
      expect(valuesOf(t)).toEqual(values);
    }
  });
});

describe('joinBatch and splitBatch', () => {
  const a = [f32('X', [1, 3], [1, 2, 3])];
  const b = [f32('X', [2, 2], [4, 5, 6, 7])];

  it('batches requests whose ragged input differs in shape, and only those', () => {
    expect(batchShape(a, PLAN.ragged).key).toBe(batchShape(b, PLAN.ragged).key);
    expect(batchShape(a).key).not.toBe(batchShape(b).key);
  });

  it('joins the ragged input end to end and appends each batch input under each of its names', () => {
    const joined = joinBatch(PLAN, [a, b]);
    expect(joined.map((t) => [t.name, t.datatype, t.shape])).toEqual([
      ['X', 'FP32', [7]],
      ['OFFSETS', 'INT32', [3]],
      ['OFFSETS_TOO', 'INT32', [3]],
    ]);
    expect(valuesOf(joined[0] as BatchInput)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(valuesOf(joined[1] as BatchInput)).toEqual([0, 3, 7]);
    // A request alone still reaches the model flat, with its batch inputs.
    expect(joinBatch(PLAN, [b]).map((t) => t.shape)).toEqual([[4], [2], [2]]);
  });

  it('without a plan joins and cuts by rows alone, and leaves a lone request as it is', () => {
    const c = [f32('X', [2, 3], [4, 5, 6, 7, 8, 9])];
    const joined = joinBatch(undefined, [a, c]);
    expect(joined.map((t) => [t.name, t.shape])).toEqual([['X', [3, 3]]]);
    expect(joinBatch(undefined, [a])).toBe(a);
    expect(() => joinBatch(undefined, [a, b])).toThrow(/batch member 1 does not match member 0 at input 0 \('X'\)/);
    const parts = splitBatch(undefined, [f32('Y', [3, 1], [1, 2, 3])], [
      { rows: 1, inputs: a },
      { rows: 2, inputs: c },
    ]);
    expect(parts.map((p) => p.map((t) => [t.name, t.shape, valuesOf(t)]))).toEqual([[['Y', [1, 1], [1]]], [['Y', [2, 1], [2, 3]]]]);
  });

  it('scatters a batch output by each request\'s source shape and cuts the others by rows', () => {
    const outputs = [f32('Y', [7], [10, 20, 30, 40, 50, 60, 70]), f32('SUM', [3], [6, 9, 13])];
    const parts = splitBatch(PLAN, outputs, [
      { rows: 1, inputs: a },
      { rows: 2, inputs: b },
    ]);
    expect(parts.map((p) => p.map((t) => [t.name, t.shape, valuesOf(t)]))).toEqual([
      [
        ['SUM', [1], [6]],
        ['Y', [1, 3], [10, 20, 30]],
      ],
      [
        ['SUM', [2], [9, 13]],
        ['Y', [2, 2], [40, 50, 60, 70]],
      ],
    ]);
  });

  it('fails the batch (INTERNAL) when a batch output does not hold what the shapes give it', () => {
    const outputs = [f32('Y', [6], [1, 2, 3, 4, 5, 6])];
    expect(() =>
      splitBatch(PLAN, outputs, [
        { rows: 1, inputs: a },
        { rows: 2, inputs: b },
      ]),
    ).toThrow(/worker output 'Y' \(shape \[6\]\): expected 28 bytes, what the batch's requests' 'X' shapes give it \(batch_output\), got 24/);
  });
});
