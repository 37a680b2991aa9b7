import { describe, expect, it } from 'vitest';
import { expectInvalid } from '../helpers/expect-invalid.js';
import { type Datatype } from '../../core/datatypes.js';
import { decodeInputs } from '../../gateway/tensor/decode-request.js';
import { emptyContents } from '../../gateway/tensor/typed-contents.js';
import {
  type InferTensorContents,
  ModelInferRequest,
  type ModelInferRequest_InferInputTensor,
} from '../../proto/gen/inference.js';

const M = "model 'm'";


function input(
  name: string,
  datatype: string,
  shape: readonly (number | bigint)[],
  contents?: Partial<InferTensorContents>,
): ModelInferRequest_InferInputTensor {
  const tensor: ModelInferRequest_InferInputTensor = {
    name,
    datatype,
    shape: shape.map((d) => BigInt(d)),
    parameters: {},
  };
  if (contents !== undefined) tensor.contents = { ...emptyContents(), ...contents };
  return tensor;
}

function request(inputs: ModelInferRequest_InferInputTensor[], raw: Uint8Array[] = []): ModelInferRequest {
  return ModelInferRequest.fromPartial({ modelName: 'm', inputs, rawInputContents: raw.map((r) => Buffer.from(r)) });
}

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

// One element pair per datatype: its raw little-endian bytes and, where the
// datatype has one, the same values as typed contents.
const CASES: readonly { datatype: Datatype; raw: Uint8Array; typed?: Partial<InferTensorContents> }[] = [
  { datatype: 'BOOL', raw: bytes(1, 0), typed: { boolContents: [true, false] } },
  { datatype: 'UINT8', raw: bytes(0, 200), typed: { uintContents: [0, 200] } },
  { datatype: 'UINT16', raw: bytes(1, 2, 0xff, 0xff), typed: { uintContents: [0x201, 0xffff] } },
  { datatype: 'UINT32', raw: bytes(1, 0, 0, 0, 0, 0, 0, 0x80), typed: { uintContents: [1, 2 ** 31] } },
  {
    datatype: 'UINT64',
    raw: bytes(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80),
    typed: { uint64Contents: [1n, 2n ** 63n] },
  },
  { datatype: 'INT8', raw: bytes(0xff, 5), typed: { intContents: [-1, 5] } },
  { datatype: 'INT16', raw: bytes(0, 0x80, 1, 0), typed: { intContents: [-32768, 1] } },
  { datatype: 'INT32', raw: bytes(0xfe, 0xff, 0xff, 0xff, 9, 0, 0, 0), typed: { intContents: [-2, 9] } },
  {
    datatype: 'INT64',
    raw: bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 0, 0, 0, 0),
    typed: { int64Contents: [-1n, 3n] },
  },
  { datatype: 'FP16', raw: bytes(0x00, 0x3c, 0x00, 0xc0) }, // 1.0, -2.0
  { datatype: 'BF16', raw: bytes(0x80, 0x3f, 0x00, 0x40) }, // 1.0, 2.0
  { datatype: 'FP32', raw: bytes(0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0), typed: { fp32Contents: [1, -2] } },
  {
    datatype: 'FP64',
    raw: bytes(0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f),
    typed: { fp64Contents: [1, 0.5] },
  },
  {
    datatype: 'BYTES',
    raw: bytes(0, 0, 0, 0, 2, 0, 0, 0, 0xc3, 0xa9),
    typed: { bytesContents: [utf8(''), utf8('é')] },
  },
];

describe('decodeInputs: every datatype', () => {
  for (const c of CASES) {
    it(`${c.datatype} raw: data is a view of the received buffer`, () => {
      const req = request([input('x', c.datatype, [2])], [c.raw]);
      const [tensor] = decodeInputs(req, 'm');
      const received = req.rawInputContents[0];
      expect(tensor?.name).toBe('x');
      expect(tensor?.datatype).toBe(c.datatype);
      expect(tensor?.shape).toEqual([2]);
      expect(Array.from(tensor?.data ?? [])).toEqual(Array.from(c.raw));
      expect(tensor?.data.buffer).toBe(received?.buffer);
      expect(tensor?.data.byteOffset).toBe(received?.byteOffset);
      expect(Buffer.isBuffer(tensor?.data)).toBe(false);
    });
    const typed = c.typed;
    if (typed === undefined) continue;
    it(`${c.datatype} typed: the same bytes as raw, also through the wire`, () => {
      const req = request([input('x', c.datatype, [1, 2], typed)]);
      const wire = ModelInferRequest.decode(ModelInferRequest.encode(req).finish());
      for (const r of [req, wire]) {
        const [tensor] = decodeInputs(r, 'm');
        expect(tensor?.shape).toEqual([1, 2]);
        expect(Array.from(tensor?.data ?? [])).toEqual(Array.from(c.raw));
      }
    });
  }

  it('decodes raw inputs that arrived over the wire, in order', () => {
    const req = request(
      [input('a', 'FP32', [1]), input('b', 'BYTES', [1])],
      [bytes(0, 0, 0x80, 0x3f), bytes(3, 0, 0, 0, 0x61, 0x62, 0x63)],
    );
    const tensors = decodeInputs(ModelInferRequest.decode(ModelInferRequest.encode(req).finish()), 'm');
    expect(tensors.map((t) => [t.name, t.datatype, Array.from(t.data)])).toEqual([
      ['a', 'FP32', [0, 0, 0x80, 0x3f]],
      ['b', 'BYTES', [3, 0, 0, 0, 0x61, 0x62, 0x63]],
    ]);
  });

  it('accepts scalars and empty tensors', () => {
    const [scalar] = decodeInputs(request([input('s', 'INT32', [])], [bytes(7, 0, 0, 0)]), 'm');
    expect(scalar?.shape).toEqual([]);
    const [empty, emptyBytes] = decodeInputs(
      request([input('e', 'FP32', [3, 0]), input('b', 'BYTES', [0])], [bytes(), bytes()]),
      'm',
    );
    expect(empty?.data.byteLength).toBe(0);
    expect(emptyBytes?.shape).toEqual([0]);
    expect(decodeInputs(request([input('t', 'FP32', [0], {})]), 'm')[0]?.data.byteLength).toBe(0);
  });
});

describe('decodeInputs: bad requests', () => {
  it('raw entries must match the inputs one to one', () => {
    expectInvalid(
      () => decodeInputs(request([input('a', 'FP32', [1]), input('b', 'FP32', [1])], [bytes(0, 0, 0, 0)]), 'm'),
      `${M}: raw_input_contents has 1 entries for 2 inputs; send one per input, in input order`,
    );
  });

  it('an input with both contents and raw, or neither', () => {
    expectInvalid(
      () => decodeInputs(request([input('a', 'FP32', [1], { fp32Contents: [1] })], [bytes(0, 0, 0, 0)]), 'm'),
      `${M}: input 'a': has both contents and raw_input_contents; send only one`,
    );
    expectInvalid(
      () => decodeInputs(request([input('a', 'FP32', [1])]), 'm'),
      `${M}: input 'a': has no data; send contents or raw_input_contents`,
    );
  });

  it('names: empty or duplicated', () => {
    expectInvalid(() => decodeInputs(request([input('', 'FP32', [0], {})]), 'm'), `${M}: input 0 has no name`);
    expectInvalid(
      () => decodeInputs(request([input('a', 'FP32', [0], {}), input('a', 'FP32', [0], {})]), 'm'),
      `${M}: input 'a' is given more than once`,
    );
  });

  it('unknown datatype', () => {
    expectInvalid(
      () => decodeInputs(request([input('a', 'FLOAT32', [1])], [bytes(0, 0, 0, 0)]), 'm'),
      `${M}: input 'a': unknown datatype 'FLOAT32' (expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES, BF16)`,
    );
  });

  it('shape: negative, too large, too many elements', () => {
    expectInvalid(
      () => decodeInputs(request([input('a', 'FP32', [-1, 4])], [bytes()]), 'm'),
      `${M}: input 'a': shape [-1,4] has invalid dimension -1 (expected an integer from 0 to 2^53-1)`,
    );
    expectInvalid(
      () => decodeInputs(request([input('a', 'FP32', [2n ** 53n])], [bytes()]), 'm'),
      `${M}: input 'a': shape [9007199254740992] has invalid dimension 9007199254740992 (expected an integer from 0 to 2^53-1)`,
    );
    expectInvalid(
      () => decodeInputs(request([input('a', 'INT8', [2 ** 30, 2 ** 30, 2 ** 30])], [bytes()]), 'm'),
      `${M}: input 'a': shape [1073741824,1073741824,1073741824] has more than 2^53 elements`,
    );
    // A huge shape with a zero dim holds nothing: fine, and nothing allocated.
    expect(decodeInputs(request([input('a', 'INT8', [2 ** 40, 2 ** 40, 0])], [bytes()]), 'm')[0]?.shape).toEqual([
      2 ** 40,
      2 ** 40,
      0,
    ]);
  });

  it('raw byte size must equal elements × element size', () => {
    expectInvalid(
      () => decodeInputs(request([input('a', 'FP32', [2, 3])], [new Uint8Array(20)]), 'm'),
      `${M}: input 'a': shape [2,3] of FP32 needs 24 bytes, got 20 in raw_input_contents[0]`,
    );
    expectInvalid(
      () => decodeInputs(request([input('a', 'INT8', [1]), input('b', 'FP16', [3])], [bytes(1), bytes(0, 0)]), 'm'),
      `${M}: input 'b': shape [3] of FP16 needs 6 bytes, got 2 in raw_input_contents[1]`,
    );
    expectInvalid(
      () => decodeInputs(request([input('a', 'INT8', [2 ** 40])], [bytes(1)]), 'm'),
      `${M}: input 'a': shape [1099511627776] of INT8 needs 1099511627776 bytes, got 1 in raw_input_contents[0]`,
    );
  });

  it('raw BYTES: element count and prefixes', () => {
    expectInvalid(
      () => decodeInputs(request([input('a', 'BYTES', [2])], [bytes(1, 0, 0, 0, 0x61, 0, 0, 0, 0, 0, 0, 0, 0)]), 'm'),
      `${M}: input 'a': shape [2] needs 2 BYTES elements, got 3 elements in raw_input_contents[0]`,
    );
    expectInvalid(
      () => decodeInputs(request([input('a', 'BYTES', [1000])], [bytes(0, 0, 0, 0)]), 'm'),
      `${M}: input 'a': shape [1000] needs 1000 BYTES elements, got only 4 bytes in raw_input_contents[0]`,
    );
    expectInvalid(
      () => decodeInputs(request([input('a', 'BYTES', [1])], [bytes(9, 0, 0, 0, 0x61)]), 'm'),
      `${M}: input 'a': raw_input_contents[0]: BYTES element 0 declares 9 bytes but only 1 remain`,
    );
    expectInvalid(
      () => decodeInputs(request([input('a', 'BYTES', [1])], [bytes(1, 0, 0, 0, 0x61, 0, 0)]), 'm'),
      `${M}: input 'a': raw_input_contents[0]: BYTES element 1 has a truncated length prefix (2 of 4 bytes at offset 5)`,
    );
  });

  it('typed: element count, wrong field, range, FP16', () => {
    expectInvalid(
      () => decodeInputs(request([input('a', 'FP32', [2, 2], { fp32Contents: [1, 2, 3] })]), 'm'),
      `${M}: input 'a': expected 4 elements in fp32_contents, got 3`,
    );
    expectInvalid(
      () => decodeInputs(request([input('a', 'BYTES', [2], { bytesContents: [utf8('x')] })]), 'm'),
      `${M}: input 'a': expected 2 elements in bytes_contents, got 1`,
    );
    expectInvalid(
      () => decodeInputs(request([input('a', 'INT64', [1], { intContents: [1] })]), 'm'),
      `${M}: input 'a': datatype INT64 expects its data in int64_contents, got int_contents`,
    );
    expectInvalid(
      () => decodeInputs(request([input('a', 'UINT8', [1], { uintContents: [300] })]), 'm'),
      `${M}: input 'a': value 300 at uint_contents[0] is out of range for UINT8`,
    );
    expectInvalid(
      () => decodeInputs(request([input('a', 'FP16', [1], { fp32Contents: [1] })]), 'm'),
      `${M}: input 'a': FP16 has no typed contents field; send the data in raw_input_contents`,
    );
  });

});
