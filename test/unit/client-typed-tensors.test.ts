import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { InferenceError } from '../../client/errors.js';
import { decodeInferResponse, encodeInferRequest } from '../../client/http-codec.js';
import { fromModelInferResponse, toModelInferRequest } from '../../client/grpc-codec.js';
import {
  type InferInput,
  decodeRaw,
  encodeBytesElements,
  encodeRaw,
  float32ToFp16,
  fp16ToFloat32,
  fromJsonValues,
  input,
  splitBytesElements,
  toJsonValues,
} from '../../client/typed-tensors.js';
import { InferTensorContents } from '../../proto/gen/inference.js';
import { rawBytesElements, sample } from '../helpers/tensor-data.js';

function expectInvalid(fn: () => unknown, message: RegExp): void {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(InferenceError);
  expect((error as InferenceError).code).toBe(status.INVALID_ARGUMENT);
  expect((error as InferenceError).details).toMatch(message);
}

describe('encodeRaw', () => {
  it('passes typed arrays of the right kind through without copying', () => {
    const data = new Float32Array([1, 2, 3, 4]);
    const raw = encodeRaw(input('X', 'FP32', [2, 2], data));
    expect(raw.buffer).toBe(data.buffer);
    expect([...new Float32Array(raw.buffer, raw.byteOffset, 4)]).toEqual([1, 2, 3, 4]);
  });

  it('gives the same bytes as the server-side samples for every datatype', () => {
    const cases: InferInput[] = [
      input('a', 'BOOL', [5], [true, false, false, true, false]),
      input('a', 'UINT8', [3], [0, 37, 74]),
      input('a', 'INT16', [3], Int16Array.from([-32768, -24849, -16930])),
      input('a', 'INT64', [2], [-(2n ** 40n), 2n ** 40n + 1n]),
      input('a', 'UINT64', [2], BigUint64Array.from([2n ** 63n, 2n ** 63n + 1_000_003n])),
      input('a', 'FP64', [2], [Math.cos(0) * 1e10, Math.cos(1) * 1e10]),
    ];
    const expected = [sample('BOOL', 5).raw, sample('UINT8', 3).raw, sample('INT16', 3).raw, sample('INT64', 2).raw, sample('UINT64', 2).raw, sample('FP64', 2).raw];
    cases.forEach((c, i) => expect(Buffer.from(encodeRaw(c)).equals(Buffer.from(expected[i] as Uint8Array)), c.datatype).toBe(true));
  });

  it('converts plain numbers and bigints, and refuses what does not fit', () => {
    expect([...new BigInt64Array(Uint8Array.from(encodeRaw(input('x', 'INT64', [3], [1, -2n, 3]))).buffer)]).toEqual([1n, -2n, 3n]);
    expectInvalid(() => encodeRaw(input('x', 'INT64', [1], [2 ** 60])), /element 0 must be a bigint or a safe integer/);
    expectInvalid(() => encodeRaw({ name: 'x', datatype: 'FP32', shape: [2], data: ['a', 'b'] as unknown as number[] }), /element 0 must be a number, got string/);
    expectInvalid(() => encodeRaw({ name: 'x', datatype: 'FP32', shape: [2], data: new Int32Array(2) as unknown as Float32Array }), /expected a Float32Array or an array of numbers, got a Int32Array/);
  });

  it('checks the element count against the shape, naming the input', () => {
    expectInvalid(() => encodeRaw(input('IN', 'FP32', [2, 3], new Float32Array(5))), /input 'IN' \(FP32\): shape \[2,3\] holds 6 elements, got 5/);
    expectInvalid(() => encodeRaw(input('IN', 'BYTES', [2], ['a'])), /holds 2 elements, got 1/);
    expectInvalid(() => encodeRaw(input('IN', 'FP32', [-1, 4], new Float32Array(4))), /must hold non-negative integers/);
  });

  it('encodes BYTES as length-prefixed elements, strings as UTF-8', () => {
    const elements = ['', 'élément', 'x'.repeat(300)];
    expect(Buffer.from(encodeRaw(input('s', 'BYTES', [3], elements))).equals(Buffer.from(rawBytesElements(elements)))).toBe(true);
    const binary = encodeBytesElements([Uint8Array.from([0, 255, 1])]);
    expect([...binary]).toEqual([3, 0, 0, 0, 0, 255, 1]);
  });

  it('takes FP16 as bit patterns or as raw bytes, never as numbers', () => {
    const bits = Uint16Array.from([0x3c00, 0xc000]);
    expect([...encodeRaw(input('h', 'FP16', [2], bits))]).toEqual([0x00, 0x3c, 0x00, 0xc0]);
    expect([...encodeRaw(input('h', 'FP16', [2], Uint8Array.from([0, 0x3c, 0, 0xc0])))]).toEqual([0x00, 0x3c, 0x00, 0xc0]);
    expectInvalid(() => encodeRaw(input('h', 'FP16', [2], Uint8Array.from([0, 0x3c]))), /needs 4 raw bytes, got 2/);
  });
});

describe('decodeRaw', () => {
  it('gives each datatype its typed form', () => {
    expect(decodeRaw('BOOL', [3], Uint8Array.from([1, 0, 2]))).toEqual([true, false, true]);
    expect(decodeRaw('INT64', [2], sample('INT64', 2).raw)).toEqual(BigInt64Array.from([-(2n ** 40n), 2n ** 40n + 1n]));
    expect(decodeRaw('BYTES', [2], rawBytesElements(['a', 'élément']))).toEqual(['a', 'élément']);
    expect(decodeRaw('FP16', [2], Uint8Array.from([0, 0x3c, 0, 0xc0]))).toEqual(Uint16Array.from([0x3c00, 0xc000]));
  });

  it('views aligned bytes and copies unaligned ones', () => {
    const backing = new Uint8Array(13);
    new Float32Array(backing.buffer, 0, 3).set([1.5, -2, 3]);
    const aligned = decodeRaw('FP32', [3], backing.subarray(0, 12));
    expect(aligned.buffer).toBe(backing.buffer);
    const shifted = new Uint8Array(13);
    shifted.set(backing.subarray(0, 12), 1);
    const unaligned = decodeRaw('FP32', [3], shifted.subarray(1));
    expect(unaligned.buffer).not.toBe(shifted.buffer);
    expect([...unaligned]).toEqual([1.5, -2, 3]);
  });

  it('refuses data whose size does not match the shape', () => {
    expectInvalid(() => decodeRaw('FP32', [4], new Uint8Array(12), 'OUT'), /output 'OUT' \(FP32\): shape \[4\] needs 16 bytes, got 12/);
    expectInvalid(() => decodeRaw('BYTES', [3], rawBytesElements(['a', 'b'])), /holds 3 elements, the data has 2/);
    expectInvalid(() => splitBytesElements(Uint8Array.from([5, 0, 0, 0, 1])), /element 0 claims 5 bytes but 1 remain/);
    expectInvalid(() => splitBytesElements(Uint8Array.from([1, 0, 0, 0, 1, 9])), /1 trailing bytes where a 4-byte length was expected/);
  });
});

describe('FP16 conversion', () => {
  it('round-trips exactly representable values and rounds to nearest even', () => {
    const values = [0, -0, 1, -2, 0.5, 65504, 2 ** -24, 2 ** -14, Infinity, -Infinity];
    expect([...fp16ToFloat32(float32ToFp16(values))]).toEqual(values);
    expect([...float32ToFp16([1, -2, 65504, 70000, 1 + 2 ** -11, 1 + 3 * 2 ** -11])]).toEqual([0x3c00, 0xc000, 0x7bff, 0x7c00, 0x3c00, 0x3c02]);
    expect(Number.isNaN(fp16ToFloat32(float32ToFp16([NaN]))[0])).toBe(true);
    expect([...float32ToFp16([2 ** -26])]).toEqual([0]);
  });
});

describe('JSON values (REST without the binary extension)', () => {
  it('turns typed data into JSON numbers, booleans and strings and back', () => {
    expect(toJsonValues(input('a', 'INT64', [2], BigInt64Array.from([-5n, 7n])))).toEqual([-5, 7]);
    expect(toJsonValues(input('a', 'BOOL', [2], Uint8Array.from([1, 0])))).toEqual([true, false]);
    expect(toJsonValues(input('a', 'BYTES', [1], [Buffer.from('hé')]))).toEqual(['hé']);
    expect(fromJsonValues('INT64', [2, 1], [[-5], [7]])).toEqual(BigInt64Array.from([-5n, 7n]));
    expect(fromJsonValues('FP32', [2], [0.5, 1])).toEqual(Float32Array.from([0.5, 1]));
  });

  it('refuses what JSON cannot carry exactly', () => {
    expectInvalid(() => toJsonValues(input('a', 'FP16', [1], Uint16Array.from([1]))), /FP16 cannot be sent as JSON/);
    expectInvalid(() => toJsonValues(input('a', 'UINT64', [1], [2n ** 63n])), /beyond ±2\^53/);
    expectInvalid(() => toJsonValues(input('a', 'BYTES', [1], [Uint8Array.from([0xff])])), /not UTF-8/);
    expectInvalid(() => fromJsonValues('FP32', [2], [1, 'x'], 'OUT'), /output 'OUT' \(FP32\): element 1 must be a number, got "x"/);
    expectInvalid(() => fromJsonValues('BOOL', [3], [true, false]), /holds 3 elements, the JSON data has 2/);
  });
});

describe('protocol codecs', () => {
  it('builds a raw gRPC request and reads an answer back', () => {
    const r = toModelInferRequest('m', [input('X', 'INT32', [1, 2], [3, -4])], { id: 'r1', outputs: ['Y'], parameters: { priority: 2, note: 'x', flag: true, w: 0.5 } });
    expect(r.inputs[0]?.shape).toEqual([1n, 2n]);
    expect(r.rawInputContents[0]?.length).toBe(8);
    expect(r.outputs.map((o) => o.name)).toEqual(['Y']);
    expect(r.parameters['priority']?.parameterChoice).toEqual({ $case: 'int64Param', value: 2n });
    expect(r.parameters['w']?.parameterChoice).toEqual({ $case: 'doubleParam', value: 0.5 });
    const typed = toModelInferRequest('m', [input('X', 'INT32', [1, 2], [3, -4])], {}, 'contents');
    expect(typed.rawInputContents).toEqual([]);
    expect(typed.inputs[0]?.contents?.intContents).toEqual([3, -4]);
    expect(() => toModelInferRequest('m', [input('X', 'FP16', [1], Uint16Array.from([1]))], {}, 'contents')).toThrow(/FP16 has no typed contents field/);

    const answer = fromModelInferResponse({
      modelName: 'm',
      modelVersion: '1',
      id: 'r1',
      parameters: {},
      outputs: [
        { name: 'Y', datatype: 'FP32', shape: [1n, 2n], parameters: {} },
        { name: 'Z', datatype: 'INT32', shape: [2n], parameters: {}, contents: InferTensorContents.fromPartial({ intContents: [5, -6] }) },
      ],
      rawOutputContents: [Buffer.from(Float32Array.from([1, 2]).buffer)],
    });
    expect(answer.data('Y', 'FP32')).toEqual(Float32Array.from([1, 2]));
    expect(answer.data('Z', 'INT32')).toEqual(Int32Array.from([5, -6]));
    expect([...answer.output('Z').raw]).toEqual([...new Uint8Array(Int32Array.from([5, -6]).buffer)]);
    expect(() => answer.output('W')).toThrow(/no output 'W'; it has Y, Z/);
  });

  it('refuses an answer with a datatype it does not know', () => {
    expect(() =>
      fromModelInferResponse({
        modelName: 'm',
        modelVersion: '1',
        id: '',
        parameters: {},
        outputs: [{ name: 'Z', datatype: 'NOPE', shape: [1n], parameters: {} }],
        rawOutputContents: [Buffer.alloc(1)],
      }),
    ).toThrow(/unknown datatype 'NOPE'/);
  });

  it('writes the binary extension and parses a binary answer', () => {
    const body = encodeInferRequest([input('X', 'FP32', [2], [1, 2]), input('S', 'BYTES', [1], ['hi'])], { id: 'a' }, true);
    const head = JSON.parse(Buffer.from(body.parts[0] as Uint8Array).toString()) as { parameters: Record<string, unknown>; inputs: { parameters: Record<string, unknown> }[] };
    expect(body.headerLength).toBe((body.parts[0] as Uint8Array).byteLength);
    expect(head.parameters['binary_data_output']).toBe(true);
    expect(head.inputs.map((i) => i.parameters['binary_data_size'])).toEqual([8, 6]);

    const json = Buffer.from(
      JSON.stringify({
        model_name: 'm',
        model_version: '1',
        outputs: [
          { name: 'A', datatype: 'INT8', shape: [2], parameters: { binary_data_size: 2 } },
          { name: 'B', datatype: 'FP64', shape: [1], data: [2.5] },
        ],
      }),
    );
    const result = decodeInferResponse(Buffer.concat([json, Buffer.from([0xff, 7])]), json.length);
    expect(result.data('A', 'INT8')).toEqual(Int8Array.from([-1, 7]));
    expect(result.data('B', 'FP64')).toEqual(Float64Array.from([2.5]));
    expect(() => result.output('A').as('FP32')).toThrow(/output 'A' is INT8, not FP32/);
    expect(() => decodeInferResponse(Buffer.concat([json, Buffer.from([1])]), json.length)).toThrow(/binary_data_size 2 runs past the end/);
  });
});
