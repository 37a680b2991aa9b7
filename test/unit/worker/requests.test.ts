import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { type LoadModelRequest, type TensorData } from '../../../proto/gen/worker.js';
import { prepareBatch } from '../../../worker/batch-task.js';
import { encodeBytesElements } from '../../../worker/bytes-elements.js';
import { loadSpecOf } from '../../../worker/service.js';
import { type SessionInfo } from '../../../worker/thread-protocol.js';

const load = (extra: Partial<LoadModelRequest>): LoadModelRequest => ({
  modelKey: 'm/1',
  modelPath: '/m.onnx',
  modelBytes: Buffer.alloc(0),
  instanceCount: 0,
  deviceKind: '',
  deviceId: 0,
  maxBatchSize: 0,
  ...extra,
});

describe('loadSpecOf', () => {
  it('fills in defaults: one instance, the worker device, arena on, threads computed later', () => {
    expect(loadSpecOf(load({}), { kind: 'gpu', deviceId: 2 })).toEqual({
      modelKey: 'm/1',
      model: { path: '/m.onnx' },
      maxBatchSize: 0,
      instanceCount: 1,
      device: { kind: 'gpu', deviceId: 2 },
      options: {
        intraOpNumThreads: undefined,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        enableCpuMemArena: true,
        executionMode: 'sequential',
        enableMemPattern: true,
      },
    });
  });

  it('takes session_options literally once they are sent', () => {
    const so = { intraOpThreads: 3, interOpThreads: 0, graphOptimizationLevel: 'basic', enableCpuMemArena: false, executionMode: 'parallel', enableMemPattern: false };
    expect(loadSpecOf(load({ sessionOptions: so, deviceKind: 'cpu' }), { kind: 'gpu', deviceId: 0 })).toMatchObject({
      device: { kind: 'cpu' },
      options: {
        intraOpNumThreads: 3,
        interOpNumThreads: 1,
        graphOptimizationLevel: 'basic',
        enableCpuMemArena: false,
        executionMode: 'parallel',
        enableMemPattern: false,
      },
    });
  });

  it('rejects bad requests with INVALID_ARGUMENT', () => {
    const cpu = { kind: 'cpu' } as const;
    expect(() => loadSpecOf(load({ modelBytes: Buffer.from([1]) }), cpu)).toThrow(/exactly one of model_path and model_bytes/);
    expect(() => loadSpecOf(load({ deviceKind: 'tpu' }), cpu)).toThrow(/device_kind "tpu"/);
    const so = { intraOpThreads: 0, interOpThreads: 0, graphOptimizationLevel: '', enableCpuMemArena: true, executionMode: 'wild', enableMemPattern: true };
    expect(() => loadSpecOf(load({ sessionOptions: so }), cpu)).toThrow(/execution_mode "wild"/);
    expect(() => loadSpecOf(load({ instanceCount: 65 }), cpu)).toThrow(/above the limit of 64/);
    expect(() => loadSpecOf(load({ modelKey: '' }), cpu)).toThrow(expect.objectContaining({ code: status.INVALID_ARGUMENT }));
  });
});

const INFO: SessionInfo = {
  inputs: [
    { name: 'x', datatype: 'FP32', shape: [-1, 2], dimNames: ['batch', ''] },
    { name: 's', datatype: 'BYTES', shape: [-1], dimNames: ['batch'] },
  ],
  outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2], dimNames: ['batch', ''] }],
  executionProvider: 'cpu',
  fallbackReason: '',
};

const td = (name: string, datatype: string, shape: number[], data: Uint8Array): TensorData => ({
  name,
  datatype,
  shape: shape.map(BigInt),
  data: Buffer.from(data),
});

describe('prepareBatch', () => {
  const x = td('x', 'FP32', [1, 2], new Uint8Array(8));
  const s = td('s', 'BYTES', [2], new Uint8Array(encodeBytesElements(['a', 'b'])));

  it('builds the thread task with one transferable buffer per input', () => {
    const { task, transfer } = prepareBatch({ modelKey: 'm/1', inputs: [x, s], outputs: ['y', 'y'] }, INFO);
    expect(task.inputs.map((t) => [t.name, t.datatype, t.shape, t.data.byteLength])).toEqual([
      ['x', 'FP32', [1, 2], 8],
      ['s', 'BYTES', [2], 10],
    ]);
    expect(task.outputs).toEqual(['y']);
    expect(transfer).toEqual(task.inputs.map((t) => t.data));
  });

  it('checks BYTES element counts and requested outputs', () => {
    const s3 = td('s', 'BYTES', [3], s.data);
    expect(() => prepareBatch({ modelKey: 'm/1', inputs: [x, s3], outputs: [] }, INFO)).toThrow(
      'Execute "m/1": input "s" has 2 BYTES elements; shape [3] needs 3',
    );
    expect(() => prepareBatch({ modelKey: 'm/1', inputs: [x, s], outputs: ['z'] }, INFO)).toThrow(
      'Execute "m/1": unknown output "z"; the model has "y"',
    );
    expect(() => prepareBatch({ modelKey: 'm/1', inputs: [x, x, s], outputs: [] }, INFO)).toThrow(/"x" is given twice/);
  });

  it("moves a buffer that is the tensor's alone, and copies it when the caller still owns it (borrowed)", () => {
    const own = Buffer.from(new ArrayBuffer(8));
    const whole: TensorData = { name: 'x', datatype: 'FP32', shape: [1n, 2n], data: own };
    const moved = prepareBatch({ modelKey: 'm/1', inputs: [whole, s], outputs: [] }, INFO);
    expect(moved.task.inputs[0]?.data).toBe(own.buffer);
    const copied = prepareBatch({ modelKey: 'm/1', inputs: [whole, s], outputs: [] }, INFO, true);
    expect(copied.task.inputs[0]?.data).not.toBe(own.buffer);
    expect(new Uint8Array(copied.task.inputs[0]!.data)).toEqual(new Uint8Array(own));
    expect(copied.transfer).not.toContain(own.buffer);
  });

  it('names missing inputs, bad dimensions and shapes the model does not take', () => {
    expect(() => prepareBatch({ modelKey: 'm/1', inputs: [s], outputs: [] }, INFO)).toThrow('Execute "m/1": missing input(s) "x"');
    expect(() => prepareBatch({ modelKey: 'm/1', inputs: [], outputs: [] }, INFO)).toThrow('missing input(s) "x", "s"');
    const negative: TensorData = { ...x, shape: [1n, -2n] };
    expect(() => prepareBatch({ modelKey: 'm/1', inputs: [negative, s], outputs: [] }, INFO)).toThrow(
      'input "x" has dimension -2; expected 0..2147483647',
    );
    const wide = td('x', 'FP32', [1, 3], new Uint8Array(12));
    expect(() => prepareBatch({ modelKey: 'm/1', inputs: [wide, s], outputs: [] }, INFO)).toThrow(
      'input "x" has shape [1,3]; the model expects [-1,2] (-1 = any)',
    );
    const flat = td('x', 'FP32', [2], new Uint8Array(8));
    expect(() => prepareBatch({ modelKey: 'm/1', inputs: [flat, s], outputs: [] }, INFO)).toThrow(
      'input "x" has shape [2]; the model expects [-1,2] (-1 = any)',
    );
    expect(() => prepareBatch({ modelKey: 'm/1', inputs: [x, s, td('q', 'FP32', [1], new Uint8Array(4))], outputs: [] }, INFO)).toThrow(
      'unknown input "q"; the model has "x", "s"',
    );
  });

  it('looks names up by a map for a model of many inputs, with the same checks', () => {
    const specs = Array.from({ length: 40 }, (_, i) => ({ name: `f${i}`, datatype: 'FP32' as const, shape: [-1], dimNames: ['batch'] }));
    const wideInfo: SessionInfo = { ...INFO, inputs: specs };
    const all = specs.map((sp, i) => td(sp.name, 'FP32', [1], new Uint8Array(new Float32Array([i]).buffer)));
    const { task } = prepareBatch({ modelKey: 'm/1', inputs: all, outputs: [] }, wideInfo);
    expect(task.inputs.map((t) => t.name)).toEqual(specs.map((sp) => sp.name));
    expect(() => prepareBatch({ modelKey: 'm/1', inputs: [...all.slice(1), all[3]!], outputs: [] }, wideInfo)).toThrow(
      /input "f3" is given twice/,
    );
    expect(() => prepareBatch({ modelKey: 'm/1', inputs: all.slice(0, 39), outputs: [] }, wideInfo)).toThrow('missing input(s) "f39"');
    expect(() => prepareBatch({ modelKey: 'm/1', inputs: [...all, td('g', 'FP32', [1], new Uint8Array(4))], outputs: [] }, wideInfo)).toThrow(
      /unknown input "g"/,
    );
  });
});
