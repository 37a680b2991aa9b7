import { describe, expect, it } from 'vitest';
import { InferHeaderMemo, MAX_KEPT_HEADER_BYTES } from '../../gateway/http/infer-header-memo.js';
import { decodeInferRequest } from '../../gateway/http/json-tensors.js';

const HEADER = {
  inputs: [
    { name: 'a', datatype: 'FP32', shape: [1, 2], parameters: { binary_data_size: 8 } },
    { name: 'b', datatype: 'INT32', shape: [1, 1], parameters: { binary_data_size: 4 } },
  ],
  outputs: [{ name: 'y', parameters: { binary_data: true } }],
  parameters: { priority: 2 },
};

const request = (header: unknown, ...binary: number[][]): { body: Buffer; length: number } => {
  const head = Buffer.from(JSON.stringify(header));
  const parts = binary.map((values, i) => Buffer.from(i === 0 ? new Float32Array(values).buffer : new Int32Array(values).buffer));
  return { body: Buffer.concat([head, ...parts]), length: head.byteLength };
};

const floats = (data: Uint8Array): number[] => [...new Float32Array(data.slice().buffer)];
const ints = (data: Uint8Array): number[] => [...new Int32Array(data.slice().buffer)];

describe('InferHeaderMemo', () => {
  it('takes the kept decoding for the same header bytes, with each request its own input bytes', () => {
    const memo = new InferHeaderMemo();
    const first = request(HEADER, [1, 2], [3]);
    const second = request(HEADER, [5, 6], [7]);
    const one = memo.decode(first.body, first.length, 'm', '');
    const two = memo.decode(second.body, second.length, 'm', '');
    // Shared: what only the header says.
    expect(two.request.outputs).toBe(one.request.outputs);
    expect(two.request.parameters).toBe(one.request.parameters);
    expect(two.binaryOutputs).toBe(one.binaryOutputs);
    // Its own: the inputs, as views of its own body.
    expect(two.request.inputs[0]!.data.buffer).toBe(second.body.buffer);
    expect(floats(two.request.inputs[0]!.data)).toEqual([5, 6]);
    expect(ints(two.request.inputs[1]!.data)).toEqual([7]);
    expect(floats(one.request.inputs[0]!.data)).toEqual([1, 2]);
    // The same as a decoding from scratch.
    const fresh = decodeInferRequest(second.body, second.length, 'm', '');
    expect(two.request.inputs.map((t) => [t.name, t.datatype, t.shape, [...t.data]])).toEqual(fresh.request.inputs.map((t) => [t.name, t.datatype, t.shape, [...t.data]]));
    expect({ ...two.request, inputs: [] }).toEqual({ ...fresh.request, inputs: [] });
    expect(two.binaryDefault).toBe(fresh.binaryDefault);
  });

  it('decodes afresh when the header differs, the version differs, or it is not a binary request', () => {
    const memo = new InferHeaderMemo();
    const base = request(HEADER, [1, 2], [3]);
    const kept = memo.decode(base.body, base.length, 'm', '');
    const withId = request({ ...HEADER, id: 'r7' }, [1, 2], [3]);
    const other = memo.decode(withId.body, withId.length, 'm', '');
    expect(other.request.id).toBe('r7');
    expect(other.request.outputs).not.toBe(kept.request.outputs);
    const again = request({ ...HEADER, id: 'r7' }, [1, 2], [3]);
    expect(memo.decode(again.body, again.length, 'm', '1').request.modelVersion).toBe('1');
    const json = Buffer.from(JSON.stringify({ inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] }));
    expect(floats(memo.decode(json, undefined, 'm', '').request.inputs[0]!.data)).toEqual([1, 2]);
  });

  it('keeps a copy of the header, not a view of the first body', () => {
    const memo = new InferHeaderMemo();
    const first = request(HEADER, [1, 2], [3]);
    const one = memo.decode(first.body, first.length, 'm', '');
    first.body.fill(0x20, 0, first.length); // the first body's buffer reused for something else
    const second = request(HEADER, [5, 6], [7]);
    const two = memo.decode(second.body, second.length, 'm', '');
    expect(two.request.outputs).toBe(one.request.outputs);
    expect(floats(two.request.inputs[0]!.data)).toEqual([5, 6]);
  });

  it('answers a kept header with the wrong amount of binary data as a decoding from scratch does', () => {
    const memo = new InferHeaderMemo();
    const first = request(HEADER, [1, 2], [3]);
    memo.decode(first.body, first.length, 'm', '');
    const short = request(HEADER, [1, 2]);
    const long = request(HEADER, [1, 2], [3, 4]);
    for (const r of [short, long]) {
      let expected: unknown;
      try {
        decodeInferRequest(r.body, r.length, 'm', '');
      } catch (error) {
        expected = error;
      }
      expect(expected).toBeInstanceOf(Error);
      expect(() => memo.decode(r.body, r.length, 'm', '')).toThrow((expected as Error).message);
    }
  });

  it('keeps only headers whose every input is binary and in the body', () => {
    const memo = new InferHeaderMemo();
    const mixed = request({ inputs: [HEADER.inputs[0], { name: 'b', datatype: 'INT32', shape: [1, 1], data: [3] }] }, [1, 2]);
    expect(ints(memo.decode(mixed.body, mixed.length, 'm', '').request.inputs[1]!.data)).toEqual([3]);
    const shm = request({ inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 2], parameters: { shared_memory_region: 'r', shared_memory_byte_size: 8 } }] });
    expect(memo.decode(shm.body, shm.length, 'm', '').sharedInputs?.size).toBe(1);
    const shmOut = request({ ...HEADER, outputs: [{ name: 'y', parameters: { shared_memory_region: 'r', shared_memory_byte_size: 8 } }] }, [1, 2], [3]);
    expect(memo.decode(shmOut.body, shmOut.length, 'm', '').sharedOutputs).toHaveLength(1);
    expect(memo.size).toBe(0);
  });

  it('keeps nothing for a header it refuses, and refuses it again the same way', () => {
    const memo = new InferHeaderMemo();
    const bad = request({ inputs: [{ name: 'a', datatype: 'FP99', shape: [1], parameters: { binary_data_size: 4 } }] }, [1]);
    expect(() => memo.decode(bad.body, bad.length, 'm', '')).toThrow(/unknown datatype 'FP99'/);
    expect(() => memo.decode(bad.body, bad.length, 'm', '')).toThrow(/unknown datatype 'FP99'/);
    expect(memo.size).toBe(0);
  });

  it('keeps no header longer than MAX_KEPT_HEADER_BYTES', () => {
    const memo = new InferHeaderMemo();
    const long = request({ ...HEADER, id: 'x'.repeat(MAX_KEPT_HEADER_BYTES) }, [1, 2], [3]);
    expect(memo.decode(long.body, long.length, 'm', '').request.id).toHaveLength(MAX_KEPT_HEADER_BYTES);
    expect(memo.size).toBe(0);
    const usual = request(HEADER, [1, 2], [3]);
    memo.decode(usual.body, usual.length, 'm', '');
    expect(memo.size).toBe(1);
  });

  it('remembers a bounded number of models', () => {
    const memo = new InferHeaderMemo();
    for (let i = 0; i < 1000; i++) {
      const r = request(HEADER, [1, 2], [3]);
      memo.decode(r.body, r.length, `model-${i}`, '');
    }
    expect(memo.size).toBeGreaterThan(0);
    expect(memo.size).toBeLessThanOrEqual(256);
  });
});
