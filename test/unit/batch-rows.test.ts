import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { type Datatype } from '../../core/datatypes.js';
import { ServingError } from '../../core/errors.js';
import { type Tensor } from '../../core/tensor.js';
import { batchShape, joinRows, runShapeKey, shapeLabel, splitRows } from '../../gateway/batching/batch-rows.js';
import { tensorOf } from '../helpers/joined-tensor.js';
import { joinBytesElements, splitBytesElements } from '../../gateway/tensor/bytes-elements.js';

const bytesOf = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
const t = (name: string, datatype: Datatype, shape: number[], data: Uint8Array): Tensor => ({ name, datatype, shape, data });
const fp32 = (name: string, shape: number[], values: number[]): Tensor =>
  t(name, 'FP32', shape, bytesOf(Float32Array.from(values)));
const strings = (name: string, shape: number[], values: string[]): Tensor =>
  t(name, 'BYTES', shape, joinBytesElements(values.map((v) => Buffer.from(v)), name));
const textOf = (tensor: Tensor): string[] => splitBytesElements(tensor.data, tensor.name).map((b) => b.toString());
const floats = (tensor: Tensor): number[] => Array.from(new Float32Array(tensor.data.slice().buffer));

function expectInternal(fn: () => unknown, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ServingError);
  expect((caught as ServingError).code).toBe(status.INTERNAL);
  expect((caught as ServingError).message).toMatch(message);
}

/** joinRows, each joined input read back as the worker reads it (its parts in order). */
const join = (members: readonly (readonly Tensor[])[]): Tensor[] => joinRows(members).map(tensorOf);

describe('shapeLabel', () => {
  it('reads a batch key as each input\'s name, datatype and shape with -1 for the batch dimension', () => {
    const key = batchShape([fp32('MASK', [2, 3], [0, 0, 0, 0, 0, 0]), fp32('INPUT', [2, 3], [0, 0, 0, 0, 0, 0])]).key;
    expect(shapeLabel(key)).toBe('INPUT FP32 [-1,3]; MASK FP32 [-1,3]');
    expect(shapeLabel(batchShape([fp32('X', [4], [0, 0, 0, 0])]).key)).toBe('X FP32 [-1]');
    expect(shapeLabel(batchShape([fp32('X', [1, 2, 2], [0, 0, 0, 0])]).key)).toBe('X FP32 [-1,2,2]');
    expect(shapeLabel(batchShape([fp32('X', [1, 3], [0, 0, 0])], new Set(['X'])).key)).toBe('X FP32 ragged');
  });
});

describe('runShapeKey', () => {
  const image = (shape: number[]): Tensor => t('IMAGE', 'UINT8', shape, new Uint8Array(shape.reduce((a, b) => a * b, 1)));
  it('of a model that batches: the dims past the rows, as a batch key reads', () => {
    expect(runShapeKey([image([2, 3, 4])], 1)).toBe(batchShape([image([2, 3, 4])]).key);
    expect(runShapeKey([image([5, 3, 4])], 1)).toBe(runShapeKey([image([2, 3, 4])], 1));
    expect(shapeLabel(runShapeKey([image([2, 3, 4])], 1))).toBe('IMAGE UINT8 [-1,3,4]');
  });

  it('of a model that does not batch: every dim, shown as it was', () => {
    expect(runShapeKey([image([2, 3, 4])], 0)).not.toBe(runShapeKey([image([5, 3, 4])], 0));
    expect(shapeLabel(runShapeKey([image([3, 480, 640])], 0))).toBe('IMAGE UINT8 [3,480,640]');
    expect(shapeLabel(runShapeKey([image([])], 0))).toBe('IMAGE UINT8 []');
  });

  it('in name order, whatever order the inputs came in; a ragged input\'s dims count (run alone, its length is its cost)', () => {
    const a = fp32('A', [1, 2], [0, 0]);
    const b = fp32('B', [1, 3], [0, 0, 0]);
    expect(runShapeKey([b, a], 1)).toBe(runShapeKey([a, b], 1));
    expect(shapeLabel(runShapeKey([b, a], 0))).toBe('A FP32 [1,2]; B FP32 [1,3]');
    expect(runShapeKey([fp32('X', [1, 3], [0, 0, 0])], 1)).not.toBe(runShapeKey([fp32('X', [1, 4], [0, 0, 0, 0])], 1));
  });
});

describe('joinRows', () => {
  it('joins FP32 members along dimension 0', () => {
    const [x, z] = join([
      [fp32('x', [1, 2], [1, 2]), fp32('z', [1], [9])],
      [fp32('x', [2, 2], [3, 4, 5, 6]), fp32('z', [2], [8, 7])],
    ]);
    expect(x?.shape).toEqual([3, 2]);
    expect(floats(x!)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(z?.shape).toEqual([3]);
    expect(floats(z!)).toEqual([9, 8, 7]);
  });

  it('joins INT64 and BOOL as raw bytes', () => {
    const [ids] = join([
      [t('ids', 'INT64', [1], bytesOf(BigInt64Array.from([-1n])))],
      [t('ids', 'INT64', [2], bytesOf(BigInt64Array.from([2n ** 40n, 3n])))],
    ]);
    expect(Array.from(new BigInt64Array(ids!.data.slice().buffer))).toEqual([-1n, 2n ** 40n, 3n]);
    const [mask] = join([[t('m', 'BOOL', [1, 2], Uint8Array.from([1, 0]))], [t('m', 'BOOL', [1, 2], Uint8Array.from([0, 1]))]]);
    expect(mask?.shape).toEqual([2, 2]);
    expect(Array.from(mask!.data)).toEqual([1, 0, 0, 1]);
  });

  it('joins BYTES as length-prefixed bytes, empty strings included', () => {
    const [s] = join([[strings('s', [2], ['', 'ab'])], [strings('s', [1], [''])], [strings('s', [1], ['héllo'])]]);
    expect(s?.shape).toEqual([4]);
    expect(textOf(s!)).toEqual(['', 'ab', '', 'héllo']);
  });

  it('copies nothing: the parts are the members\' own bytes, in order', () => {
    const a = fp32('x', [1, 2], [1, 2]);
    const b = fp32('x', [2, 2], [3, 4, 5, 6]);
    const [x] = joinRows([[a], [b]]);
    expect(x !== undefined && 'parts' in x ? x.parts : []).toHaveLength(2);
    expect(x !== undefined && 'parts' in x ? x.parts[0] : undefined).toBe(a.data);
    expect(x !== undefined && 'parts' in x ? x.parts[1] : undefined).toBe(b.data);
    // A single member's tensors are passed on as they are.
    expect(joinRows([[a]])[0]).toBe(a);
  });

  it('refuses members that do not line up', () => {
    expectInternal(() => joinRows([[fp32('x', [1, 2], [1, 2])], [fp32('x', [1, 1], [1])]]), /member 1/);
    expectInternal(() => joinRows([[fp32('x', [1], [1])], [fp32('y', [1], [1])]]), /member 1/);
    expectInternal(() => joinRows([[fp32('x', [1], [1])], []]), /member 1/);
  });
});

describe('splitRows', () => {
  it('cuts FP32 outputs into views of each member’s rows', () => {
    const y = fp32('y', [6, 2], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const parts = splitRows([y], [1, 3, 2]);
    expect(parts.map((p) => p[0]?.shape)).toEqual([[1, 2], [3, 2], [2, 2]]);
    expect(parts.map((p) => floats(p[0]!))).toEqual([[0, 1], [2, 3, 4, 5, 6, 7], [8, 9, 10, 11]]);
    for (const p of parts) expect(p[0]?.data.buffer).toBe(y.data.buffer);
  });

  it('cuts INT64 and BOOL outputs, each member getting every output', () => {
    const ids = t('ids', 'INT64', [3], bytesOf(BigInt64Array.from([5n, 6n, 7n])));
    const ok = t('ok', 'BOOL', [3, 1], Uint8Array.from([1, 0, 1]));
    const parts = splitRows([ids, ok], [2, 1]);
    expect(parts[0]?.map((p) => p.name)).toEqual(['ids', 'ok']);
    expect(Array.from(new BigInt64Array(parts[0]![0]!.data.slice().buffer))).toEqual([5n, 6n]);
    expect(Array.from(parts[1]![1]!.data)).toEqual([1]);
    expect(parts[1]![1]!.shape).toEqual([1, 1]);
  });

  it('cuts BYTES outputs by elements per row, empty strings included', () => {
    const s = strings('s', [3, 2], ['', 'a', 'bc', '', '', '']);
    const parts = splitRows([s], [1, 2]);
    expect(parts.map((p) => p[0]?.shape)).toEqual([[1, 2], [2, 2]]);
    expect(parts.map((p) => textOf(p[0]!))).toEqual([['', 'a'], ['bc', '', '', '']]);
    expect(parts[1]?.[0]?.data.buffer).toBe(s.data.buffer);
    // Rows of zero elements: every member gets an empty part.
    const empty = splitRows([t('e', 'BYTES', [2, 0], new Uint8Array(0))], [1, 1]);
    expect(empty.map((p) => [p[0]?.shape, p[0]?.data.byteLength])).toEqual([[[1, 0], 0], [[1, 0], 0]]);
  });

  it('returns the outputs themselves for a single member', () => {
    const y = fp32('y', [2, 1], [1, 2]);
    expect(splitRows([y], [2])[0]?.[0]).toBe(y);
  });

  it('is INTERNAL when the worker returns the wrong leading dimension or bytes', () => {
    expectInternal(() => splitRows([fp32('y', [2, 1], [1, 2])], [1, 2]), /expected 3 rows/);
    expectInternal(() => splitRows([fp32('y', [2, 1], [1, 2])], [3]), /expected 3 rows/);
    expectInternal(() => splitRows([fp32('y', [], [1])], [1]), /expected 1 rows/);
    expectInternal(() => splitRows([t('y', 'FP32', [2, 1], new Uint8Array(4))], [1, 1]), /expected 8 bytes/);
    expectInternal(() => splitRows([strings('s', [2], ['a'])], [1, 1]), /expected 2 BYTES elements, got 1/);
    expectInternal(() => splitRows([t('s', 'BYTES', [2], Uint8Array.from([9, 0, 0, 0]))], [1, 1]), /malformed BYTES/);
  });
});

describe('batchShape', () => {
  it('keys on input names, datatypes and non-batch dims, whatever the order sent', () => {
    const a = batchShape([fp32('b', [1, 3], [1, 2, 3]), fp32('a', [1], [1])]);
    const b = batchShape([fp32('a', [4], [1, 2, 3, 4]), fp32('b', [4, 3], new Array(12).fill(0))]);
    expect(a.key).toBe(b.key);
    expect(a.inputs.map((i) => i.name)).toEqual(['a', 'b']);
    expect(batchShape([fp32('a', [1, 2], [1, 2])]).key).not.toBe(batchShape([fp32('a', [1, 3], [1, 2, 3])]).key);
    expect(batchShape([fp32('a', [1], [1])]).key).not.toBe(batchShape([t('a', 'INT32', [1], new Uint8Array(4))]).key);
    expect(batchShape([fp32('a', [1], [1])]).key).not.toBe(batchShape([fp32('a', [1, 1], [1])]).key);
  });
});
