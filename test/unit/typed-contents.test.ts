import { describe, expect, it } from 'vitest';
import { expectInvalid } from '../helpers/expect-invalid.js';
import { type Datatype } from '../../core/datatypes.js';
import {
  countBytesElements,
  joinBytesElements,
  splitBytesElements,
} from '../../gateway/tensor/bytes-elements.js';
import {
  emptyContents,
  rawToTypedContents,
  typedContentsToRaw,
  typedFieldOf,
  type TypedField,
} from '../../gateway/tensor/typed-contents.js';
import { type InferTensorContents } from '../../proto/gen/inference.js';

const L = "model 'm': input 'x'";


function contentsWith<F extends TypedField>(field: F, values: InferTensorContents[F]): InferTensorContents {
  const contents = emptyContents();
  contents[field] = values;
  return contents;
}

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

interface Case {
  readonly datatype: Datatype;
  readonly field: TypedField;
  readonly values: InferTensorContents[TypedField];
  readonly bytes: number[];
}

// Exact little-endian bytes, written out by hand.
const CASES: readonly Case[] = [
  { datatype: 'BOOL', field: 'boolContents', values: [true, false, true], bytes: [1, 0, 1] },
  { datatype: 'UINT8', field: 'uintContents', values: [0, 255, 7], bytes: [0, 255, 7] },
  { datatype: 'UINT16', field: 'uintContents', values: [1, 0xabcd], bytes: [1, 0, 0xcd, 0xab] },
  { datatype: 'UINT32', field: 'uintContents', values: [0xdeadbeef], bytes: [0xef, 0xbe, 0xad, 0xde] },
  {
    datatype: 'UINT64',
    field: 'uint64Contents',
    values: [2n ** 64n - 1n, 0x0102030405060708n],
    bytes: [255, 255, 255, 255, 255, 255, 255, 255, 8, 7, 6, 5, 4, 3, 2, 1],
  },
  { datatype: 'INT8', field: 'intContents', values: [-1, 127, -128], bytes: [0xff, 0x7f, 0x80] },
  { datatype: 'INT16', field: 'intContents', values: [-2, 0x1234], bytes: [0xfe, 0xff, 0x34, 0x12] },
  {
    datatype: 'INT32',
    field: 'intContents',
    values: [-1, 0x01020304],
    bytes: [0xff, 0xff, 0xff, 0xff, 4, 3, 2, 1],
  },
  {
    datatype: 'INT64',
    field: 'int64Contents',
    values: [-2n, 2n ** 63n - 1n],
    bytes: [0xfe, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0x7f],
  },
  { datatype: 'FP32', field: 'fp32Contents', values: [1.5, -0], bytes: [0, 0, 0xc0, 0x3f, 0, 0, 0, 0x80] },
  { datatype: 'FP64', field: 'fp64Contents', values: [-2.5], bytes: [0, 0, 0, 0, 0, 0, 4, 0xc0] },
  {
    datatype: 'BYTES',
    field: 'bytesContents',
    values: [utf8(''), utf8('hé'), utf8('日')],
    bytes: [0, 0, 0, 0, 3, 0, 0, 0, 0x68, 0xc3, 0xa9, 3, 0, 0, 0, 0xe6, 0x97, 0xa5],
  },
];

describe('typed contents ↔ raw', () => {
  for (const c of CASES) {
    it(`${c.datatype}: ${c.field} → exact little-endian bytes and back`, () => {
      expect(typedFieldOf(c.datatype)).toBe(c.field);
      const raw = typedContentsToRaw(contentsWith(c.field, c.values), c.datatype, L, c.values.length);
      expect(Array.from(raw)).toEqual(c.bytes);
      const back = rawToTypedContents(Uint8Array.from(c.bytes), c.datatype, L);
      expect(back).toEqual(contentsWith(c.field, c.values));
    });
  }

  it('accepts empty contents for zero elements', () => {
    expect(typedContentsToRaw(emptyContents(), 'FP32', L, 0).byteLength).toBe(0);
    expect(rawToTypedContents(new Uint8Array(0), 'BYTES', L)).toEqual(emptyContents());
  });

  it('FP16 and BF16 have no typed field', () => {
    expect(typedFieldOf('FP16')).toBeUndefined();
    expectInvalid(
      () => typedContentsToRaw(contentsWith('fp32Contents', [1]), 'FP16', L),
      `${L}: FP16 has no typed contents field; send the data in raw_input_contents`,
    );
    expectInvalid(
      () => typedContentsToRaw(emptyContents(), 'BF16', L),
      `${L}: BF16 has no typed contents field; send the data in raw_input_contents`,
    );
    expectInvalid(
      () => rawToTypedContents(new Uint8Array(2), 'FP16', L),
      `${L}: FP16 has no typed contents field; it can only be sent raw`,
    );
  });

  it('rejects data in the wrong field, naming the expected one', () => {
    expectInvalid(
      () => typedContentsToRaw(contentsWith('intContents', [1]), 'FP32', L),
      `${L}: datatype FP32 expects its data in fp32_contents, got int_contents`,
    );
    expectInvalid(
      () => typedContentsToRaw(contentsWith('intContents', [1]), 'UINT8', L),
      `${L}: datatype UINT8 expects its data in uint_contents, got int_contents`,
    );
    const both = contentsWith('int64Contents', [1n]);
    both.fp64Contents = [1];
    expectInvalid(
      () => typedContentsToRaw(both, 'INT64', L),
      `${L}: datatype INT64 expects its data in int64_contents, got fp64_contents`,
    );
  });

  it('checks the element count before converting', () => {
    expectInvalid(
      () => typedContentsToRaw(contentsWith('fp32Contents', [1, 2, 3]), 'FP32', L, 4),
      `${L}: expected 4 elements in fp32_contents, got 3`,
    );
  });

  const outOfRange: readonly [Datatype, TypedField, string, number | bigint][] = [
    ['UINT8', 'uintContents', 'uint_contents', 300],
    ['UINT8', 'uintContents', 'uint_contents', -1],
    ['UINT16', 'uintContents', 'uint_contents', 65536],
    ['UINT32', 'uintContents', 'uint_contents', 2 ** 32],
    ['INT8', 'intContents', 'int_contents', 128],
    ['INT8', 'intContents', 'int_contents', -129],
    ['INT16', 'intContents', 'int_contents', 32768],
    ['INT32', 'intContents', 'int_contents', 2 ** 31],
    ['INT32', 'intContents', 'int_contents', 1.5],
    ['INT32', 'intContents', 'int_contents', Number.NaN],
    ['INT64', 'int64Contents', 'int64_contents', 2n ** 63n],
    ['UINT64', 'uint64Contents', 'uint64_contents', -1n],
    ['UINT64', 'uint64Contents', 'uint64_contents', 2n ** 64n],
  ];
  for (const [datatype, field, proto, bad] of outOfRange) {
    it(`rejects ${String(bad)} in a ${datatype} tensor, naming tensor and value`, () => {
      const values = (typeof bad === 'bigint' ? [0n, 1n, bad] : [0, 1, bad]) as InferTensorContents[TypedField];
      expectInvalid(
        () => typedContentsToRaw(contentsWith(field, values), datatype, L),
        `${L}: value ${String(bad)} at ${proto}[2] is out of range for ${datatype}`,
      );
    });
  }

  it('reads misaligned raw bytes (a view at an odd offset)', () => {
    const backing = new Uint8Array(9);
    backing.set([0, 0, 0xc0, 0x3f, 0, 0, 0x20, 0xc1], 1);
    const misaligned = backing.subarray(1);
    expect(rawToTypedContents(misaligned, 'FP32', L).fp32Contents).toEqual([1.5, -10]);
  });

  it('rejects raw bytes that are not whole elements', () => {
    expectInvalid(
      () => rawToTypedContents(new Uint8Array(6), 'INT32', L),
      `${L}: 6 bytes is not a whole number of INT32 elements`,
    );
  });

  it('BYTES raw → typed gives views, not copies', () => {
    const raw = joinBytesElements([utf8('abc')], L);
    const [element] = rawToTypedContents(raw, 'BYTES', L).bytesContents;
    expect(element?.buffer).toBe(raw.buffer);
    expect(element?.toString('utf8')).toBe('abc');
  });
});

describe('BYTES elements', () => {
  const raw = Uint8Array.from([2, 0, 0, 0, 0x68, 0x69, 0, 0, 0, 0, 1, 0, 0, 0, 0xff]);

  it('counts, splits and joins', () => {
    expect(countBytesElements(raw, L)).toBe(3);
    const parts = splitBytesElements(raw, L);
    expect(parts.map((p) => Array.from(p))).toEqual([[0x68, 0x69], [], [0xff]]);
    expect(Array.from(joinBytesElements(parts, L))).toEqual(Array.from(raw));
    expect(countBytesElements(new Uint8Array(0), L)).toBe(0);
  });

  it('walks a view at an offset within a larger buffer', () => {
    const backing = new Uint8Array(raw.byteLength + 3);
    backing.set(raw, 3);
    expect(splitBytesElements(backing.subarray(3), L).map((p) => p.byteLength)).toEqual([2, 0, 1]);
  });

  it('rejects a truncated length prefix', () => {
    expectInvalid(
      () => countBytesElements(Uint8Array.from([1, 0, 0, 0, 7, 1, 0]), L),
      `${L}: BYTES element 1 has a truncated length prefix (2 of 4 bytes at offset 5)`,
    );
  });

  it('rejects a length prefix running past the buffer, without reading past it', () => {
    expectInvalid(
      () => countBytesElements(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 1, 2]), L),
      `${L}: BYTES element 0 declares 4294967295 bytes but only 2 remain`,
    );
    expectInvalid(
      () => splitBytesElements(Uint8Array.from([0, 0, 0, 0, 5, 0, 0, 0, 1]), L),
      `${L}: BYTES element 1 declares 5 bytes but only 1 remain`,
    );
  });
});
