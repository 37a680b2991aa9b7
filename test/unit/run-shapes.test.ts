import { describe, expect, it } from 'vitest';
import { type Tensor } from '../../core/tensor.js';
import { runShapeKey } from '../../gateway/batching/batch-rows.js';
import { RunShapes } from '../../gateway/scheduling/run-shapes.js';

const input = (name: string, shape: number[], datatype: Tensor['datatype'] = 'FP32'): Tensor => ({ name, datatype, shape, data: new Uint8Array(0) });

describe('RunShapes', () => {
  it('gives the key of the last new shape back for a request of that shape, without building another', () => {
    const shapes = new RunShapes(false);
    const first = shapes.keyOf([input('X', [3, 32, 32])]);
    expect(first).toBe(runShapeKey([input('X', [3, 32, 32])], 0));
    // The same string, not an equal one: nothing was built.
    expect(Object.is(shapes.keyOf([input('X', [3, 32, 32])]), first)).toBe(true);
  });

  it('a new key for another dim, datatype, name, rank or number of inputs', () => {
    const shapes = new RunShapes(false);
    const keys = new Set([
      shapes.keyOf([input('X', [3, 32, 32])]),
      shapes.keyOf([input('X', [3, 64, 32])]),
      shapes.keyOf([input('X', [3, 64, 32], 'FP16')]),
      shapes.keyOf([input('Y', [3, 64, 32], 'FP16')]),
      shapes.keyOf([input('Y', [3, 64, 32, 1], 'FP16')]),
      shapes.keyOf([input('Y', [3, 64, 32, 1], 'FP16'), input('Z', [1])]),
    ]);
    expect(keys.size).toBe(6);
    // And back to the first: its key again.
    expect(shapes.keyOf([input('X', [3, 32, 32])])).toBe(runShapeKey([input('X', [3, 32, 32])], 0));
  });

  it('of a model that batches: rows do not make a shape', () => {
    const shapes = new RunShapes(true);
    const one = shapes.keyOf([input('X', [1, 16])]);
    expect(shapes.keyOf([input('X', [8, 16])])).toBe(one);
    expect(shapes.keyOf([input('X', [8, 17])])).not.toBe(one);
  });

  it('the same key whatever order the inputs came in', () => {
    const shapes = new RunShapes(false);
    const ab = shapes.keyOf([input('A', [2]), input('B', [3])]);
    expect(shapes.keyOf([input('B', [3]), input('A', [2])])).toBe(ab);
  });
});
