import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { checkBytesElements, decodeBytesElements, encodeBytesElements } from '../../../worker/bytes-elements.js';
import { fromOrtTensor, toFeed } from '../../../worker/ort-convert.js';
import { describeValues } from '../../../worker/ort-session.js';
import { bufferOf, takeArrayBuffer } from '../../../worker/tensor-bytes.js';

describe('BYTES elements', () => {
  it('round-trips strings through the length-prefixed form', () => {
    const strings = ['', 'a', 'élément', 'x'.repeat(300)];
    const buffer = encodeBytesElements(strings);
    expect(checkBytesElements(new Uint8Array(buffer))).toEqual({ count: 4 });
    expect(decodeBytesElements(buffer)).toEqual(strings);
  });

  it('says what is wrong with bad framing or non-UTF-8 bytes', () => {
    expect(checkBytesElements(Uint8Array.of(5, 0, 0, 0, 65))).toEqual({
      problem: 'element 0 declares 5 bytes but only 1 remain',
    });
    expect(checkBytesElements(Uint8Array.of(0, 0, 0, 0, 1, 0))).toEqual({
      problem: 'element 1 has a truncated 4-byte length prefix at byte 4',
    });
    expect(checkBytesElements(Uint8Array.of(1, 0, 0, 0, 0xff))).toMatchObject({ problem: /not valid UTF-8/ });
  });
});

describe('tensor bytes', () => {
  it('adopts a buffer that owns its whole ArrayBuffer and copies views', () => {
    const whole = new Uint8Array(16).fill(7);
    expect(takeArrayBuffer(whole)).toBe(whole.buffer);
    const view = new Uint8Array(new ArrayBuffer(32), 3, 16).fill(9);
    const copied = takeArrayBuffer(view);
    expect(copied).not.toBe(view.buffer);
    expect(copied.byteLength).toBe(16);
    expect([...new Uint8Array(copied)]).toEqual(Array(16).fill(9));
    // Small Buffers live in Node's shared pool: never adopted.
    const pooled = Buffer.from([1, 2, 3]);
    expect(takeArrayBuffer(pooled)).not.toBe(pooled.buffer);
  });

  it('wraps a received ArrayBuffer without copying', () => {
    const buffer = new ArrayBuffer(8);
    expect(bufferOf(buffer).buffer).toBe(buffer);
  });
});

describe('ORT tensor conversion', () => {
  it('maps BOOL, FP16, INT64 and BYTES to the forms onnxruntime-node takes, and back', () => {
    const bool = toFeed({ name: 'b', datatype: 'BOOL', shape: [3], data: Uint8Array.of(1, 0, 1).buffer });
    expect(bool).toMatchObject({ type: 'bool', dims: [3], location: 'cpu' });
    expect(bool.data).toBeInstanceOf(Uint8Array);
    // Raw bits in a Uint16Array on every Node, never a Float16Array (the binding cannot read one).
    const fp16 = toFeed({ name: 'h', datatype: 'FP16', shape: [1], data: Uint16Array.of(0x3c00).buffer });
    expect(fp16.type).toBe('float16');
    expect(fp16.data).toBeInstanceOf(Uint16Array);
    const input = BigInt64Array.of(-1n, 2n ** 40n);
    const int64 = toFeed({ name: 'i', datatype: 'INT64', shape: [2], data: input.buffer });
    expect([...(int64.data as BigInt64Array)]).toEqual([-1n, 2n ** 40n]);
    expect((int64.data as BigInt64Array).buffer).toBe(input.buffer);
    const strings = toFeed({ name: 's', datatype: 'BYTES', shape: [2], data: encodeBytesElements(['a', 'bc']) });
    expect(strings.data).toEqual(['a', 'bc']);

    // Outputs come back as the package's Tensors.
    const transfer: ArrayBuffer[] = [];
    const back = fromOrtTensor('s', new ort.Tensor('string', ['a', 'bc'], [2]), transfer);
    expect(back).toMatchObject({ name: 's', datatype: 'BYTES', shape: [2] });
    expect(decodeBytesElements(back.data)).toEqual(['a', 'bc']);
    const i = fromOrtTensor('i', new ort.Tensor('int64', input, [2]), transfer);
    expect(i.data).toBe(input.buffer);
    expect(transfer).toEqual([back.data, i.data]);
  });
});

describe('describeValues', () => {
  it('turns symbolic and unnamed dims into -1 with their names', () => {
    expect(
      describeValues('input', [{ name: 'x', isTensor: true, type: 'float32', shape: ['batch', 4, ''] }]),
    ).toEqual([{ name: 'x', datatype: 'FP32', shape: [-1, 4, -1], dimNames: ['batch', '', ''] }]);
  });

  it('refuses non-tensor values and types without a KServe datatype', () => {
    expect(() => describeValues('output', [{ name: 'seq', isTensor: false }])).toThrow(
      'output "seq" is not a tensor (sequence, map or optional values are not supported)',
    );
    expect(() => describeValues('input', [{ name: 'q', isTensor: true, type: 'int4', shape: [2] }])).toThrow(
      /element type int4/,
    );
  });
});
