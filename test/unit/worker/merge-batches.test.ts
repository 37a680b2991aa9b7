import { describe, expect, it } from 'vitest';
import { compatible, concatTasks, mergeable, rowsOf, splitOutputs } from '../../../worker/merge-batches.js';
import { type BatchTask, type SessionInfo, type ThreadTensor } from '../../../worker/thread-protocol.js';

function fp32(name: string, rows: number, cols: number, start: number): ThreadTensor {
  const a = new Float32Array(rows * cols).map((_, i) => start + i);
  return { name, datatype: 'FP32', shape: [rows, cols], data: a.buffer };
}

const task = (rows: number, start: number, cols = 3): BatchTask => ({ inputs: [fp32('x', rows, cols, start), fp32('z', rows, 1, -start)], outputs: [] });

const floats = (data: ArrayBuffer | Uint8Array): number[] =>
  data instanceof ArrayBuffer ? [...new Float32Array(data)] : [...new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4)];

const INFO: SessionInfo = {
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3], dimNames: ['b', ''] }],
  outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 3], dimNames: ['b', ''] }],
  executionProvider: 'cpu',
  fallbackReason: '',
};

describe('merging executions (worker/merge-batches.ts)', () => {
  it('merges only batchable models whose inputs and outputs all batch on dim 0 and are not BYTES', () => {
    expect(mergeable(INFO, 8)).toBe(true);
    expect(mergeable(INFO, 0)).toBe(false);
    expect(mergeable(INFO, 1)).toBe(false);
    expect(mergeable({ ...INFO, outputs: [{ name: 'y', datatype: 'FP32', shape: [3], dimNames: [''] }] }, 8)).toBe(false);
    expect(mergeable({ ...INFO, inputs: [{ name: 'x', datatype: 'BYTES', shape: [-1], dimNames: [''] }] }, 8)).toBe(false);
  });

  it('reads the rows of a task from dim 0, and refuses tasks whose inputs disagree', () => {
    expect(rowsOf(task(2, 0))).toBe(2);
    expect(rowsOf({ inputs: [fp32('x', 2, 3, 0), fp32('z', 3, 1, 0)], outputs: [] })).toBe(-1);
    expect(rowsOf({ inputs: [], outputs: [] })).toBe(-1);
  });

  it('is compatible only with the same inputs, datatypes, dims after dim 0 and requested outputs', () => {
    expect(compatible(task(1, 0), task(5, 100))).toBe(true);
    expect(compatible(task(1, 0, 3), task(1, 0, 4))).toBe(false);
    expect(compatible(task(1, 0), { ...task(1, 0), outputs: ['y'] })).toBe(false);
    const renamed: BatchTask = { inputs: [fp32('w', 1, 3, 0), fp32('z', 1, 1, 0)], outputs: [] };
    expect(compatible(task(1, 0), renamed)).toBe(false);
    const int: BatchTask = { inputs: [{ ...fp32('x', 1, 3, 0), datatype: 'INT32' }, fp32('z', 1, 1, 0)], outputs: [] };
    expect(compatible(task(1, 0), int)).toBe(false);
  });

  it('concatenates along dim 0 and splits each output back by rows, in order, as views', () => {
    const tasks = [task(1, 0), task(2, 100), task(3, 200)];
    const expectedX = tasks.flatMap((t) => floats((t.inputs[0] as ThreadTensor).data));
    const { task: merged, transfer } = concatTasks(tasks);
    expect(merged.inputs.map((t) => t.shape)).toEqual([
      [6, 3],
      [6, 1],
    ]);
    expect(floats((merged.inputs[0] as ThreadTensor).data)).toEqual(expectedX);
    expect(transfer).toEqual(merged.inputs.map((t) => t.data));

    // An identity run: the outputs are the merged inputs.
    const parts = splitOutputs(merged.inputs, [1, 2, 3]);
    if (typeof parts === 'string') throw new Error(parts);
    expect(parts).toHaveLength(3);
    parts.forEach((outputs, i) => {
      const own = tasks[i] as BatchTask;
      expect(outputs.map((o) => o.shape)).toEqual(own.inputs.map((t) => t.shape));
      expect(outputs.map((o) => floats(o.data))).toEqual(own.inputs.map((t) => floats(t.data)));
      expect((outputs[0]?.data as Uint8Array).buffer).toBe((merged.inputs[0] as ThreadTensor).data);
    });
  });

  it('says why a run cannot be split: dim 0 not the rows run, or bytes that do not match the shape', () => {
    expect(splitOutputs([fp32('y', 4, 3, 0)], [1, 2])).toMatch(/dim 0 should be the 3 rows run/);
    expect(splitOutputs([{ ...fp32('y', 3, 3, 0), shape: [3, 4] }], [1, 2])).toMatch(/needs 48/);
    expect(splitOutputs([{ ...fp32('y', 3, 1, 0), datatype: 'BYTES' }], [1, 2])).toMatch(/BYTES/);
  });
});
