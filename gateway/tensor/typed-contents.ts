// InferTensorContents (the typed, per-datatype repeated fields of KServe v2)
// to and from raw little-endian bytes, the one form every other layer uses.
import { type Datatype } from '../../core/datatypes.js';
import { invalidArgument } from '../../core/errors.js';
import { type InferTensorContents } from '../../proto/gen/inference.js';
import { joinBytesElements, splitBytesElements } from './bytes-elements.js';

// Typed arrays use the host's byte order and raw tensors are little-endian, so
// the views and fills below are only right on a little-endian host (x64 and
// arm64, i.e. everything Node ships for in practice). Refuse to load rather
// than silently swap bytes.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('Fabriek needs a little-endian host: tensor codecs use typed arrays in host byte order');
}

export type TypedField = keyof InferTensorContents;

const FIELD_OF: Readonly<Record<Datatype, TypedField | undefined>> = {
  BOOL: 'boolContents',
  UINT8: 'uintContents',
  UINT16: 'uintContents',
  UINT32: 'uintContents',
  UINT64: 'uint64Contents',
  INT8: 'intContents',
  INT16: 'intContents',
  INT32: 'intContents',
  INT64: 'int64Contents',
  FP16: undefined,
  FP32: 'fp32Contents',
  FP64: 'fp64Contents',
  BYTES: 'bytesContents',
  BF16: undefined,
};

/** Field names as the .proto spells them, so clients recognise them in messages. */
const PROTO_NAME: Readonly<Record<TypedField, string>> = {
  boolContents: 'bool_contents',
  intContents: 'int_contents',
  int64Contents: 'int64_contents',
  uintContents: 'uint_contents',
  uint64Contents: 'uint64_contents',
  fp32Contents: 'fp32_contents',
  fp64Contents: 'fp64_contents',
  bytesContents: 'bytes_contents',
};

const FIELDS = Object.keys(PROTO_NAME) as TypedField[];

/** The typed field that carries a datatype; undefined for FP16 and BF16 (raw only). */
export function typedFieldOf(datatype: Datatype): TypedField | undefined {
  return FIELD_OF[datatype];
}

/** `uint_contents` for `uintContents`. */
export function protoFieldName(field: TypedField): string {
  return PROTO_NAME[field];
}

/** An InferTensorContents with every field empty. */
export function emptyContents(): InferTensorContents {
  return {
    boolContents: [],
    intContents: [],
    int64Contents: [],
    uintContents: [],
    uint64Contents: [],
    fp32Contents: [],
    fp64Contents: [],
    bytesContents: [],
  };
}

/**
 * Converts typed contents to raw bytes (one typed-array allocation; BYTES:
 * one buffer). Data in any field but the datatype's is INVALID_ARGUMENT, as
 * is an integer that does not fit the datatype. With `expectedCount`, the
 * number of elements is checked before any conversion. `label` starts every
 * message (`model 'm': input 'x'`).
 */
export function typedContentsToRaw(
  contents: InferTensorContents,
  datatype: Datatype,
  label: string,
  expectedCount?: number,
): Uint8Array {
  const field = FIELD_OF[datatype];
  if (field === undefined) {
    throw invalidArgument(`${label}: ${datatype} has no typed contents field; send the data in raw_input_contents`);
  }
  for (const other of FIELDS) {
    if (other !== field && contents[other].length !== 0) {
      throw invalidArgument(
        `${label}: datatype ${datatype} expects its data in ${PROTO_NAME[field]}, got ${PROTO_NAME[other]}`,
      );
    }
  }
  const count = contents[field].length;
  if (expectedCount !== undefined && count !== expectedCount) {
    throw invalidArgument(`${label}: expected ${expectedCount} elements in ${PROTO_NAME[field]}, got ${count}`);
  }
  const where = { label, datatype, field: PROTO_NAME[field] };
  switch (datatype) {
    case 'BOOL': {
      const out = new Uint8Array(count);
      let i = 0;
      for (const v of contents.boolContents) out[i++] = v ? 1 : 0;
      return out;
    }
    case 'UINT8':
      return fillChecked(new Uint8Array(count), contents.uintContents, where);
    case 'UINT16':
      return fillChecked(new Uint16Array(count), contents.uintContents, where);
    case 'UINT32':
      return fillChecked(new Uint32Array(count), contents.uintContents, where);
    case 'INT8':
      return fillChecked(new Int8Array(count), contents.intContents, where);
    case 'INT16':
      return fillChecked(new Int16Array(count), contents.intContents, where);
    case 'INT32':
      return fillChecked(new Int32Array(count), contents.intContents, where);
    case 'INT64':
      return fillChecked(new BigInt64Array(count), contents.int64Contents, where);
    case 'UINT64':
      return fillChecked(new BigUint64Array(count), contents.uint64Contents, where);
    case 'FP32':
      return bytesOf(new Float32Array(contents.fp32Contents));
    case 'FP64':
      return bytesOf(new Float64Array(contents.fp64Contents));
    case 'BYTES':
      return joinBytesElements(contents.bytesContents, label);
    case 'FP16':
    case 'BF16':
      // Unreachable: FIELD_OF has no field for them and threw above.
      throw invalidArgument(`${label}: ${datatype} has no typed contents field; send the data in raw_input_contents`);
  }
}

interface Where {
  readonly label: string;
  readonly datatype: Datatype;
  readonly field: string;
}

type IntArray = Uint8Array | Uint16Array | Uint32Array | Int8Array | Int16Array | Int32Array;

/**
 * Stores each value and reads it back: a typed array wraps or truncates what
 * does not fit (300 → 44 in a Uint8Array, 1.5 → 1, NaN → 0), so a changed
 * value is exactly an out-of-range or non-integer one.
 */
function fillChecked(out: IntArray, values: readonly number[], where: Where): Uint8Array;
function fillChecked(out: BigInt64Array | BigUint64Array, values: readonly bigint[], where: Where): Uint8Array;
function fillChecked(
  out: IntArray | BigInt64Array | BigUint64Array,
  values: readonly (number | bigint)[],
  where: Where,
): Uint8Array {
  const store = out as unknown as { [i: number]: number | bigint };
  let i = 0;
  for (const v of values) {
    store[i] = v;
    if (store[i] !== v) {
      throw invalidArgument(
        `${where.label}: value ${String(v)} at ${where.field}[${i}] is out of range for ${where.datatype}`,
      );
    }
    i++;
  }
  return bytesOf(out);
}

function bytesOf(array: ArrayBufferView): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

interface ViewConstructor<T> {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

/** A typed view of raw bytes; copies only when `data` is misaligned for the element size. */
function viewAs<T>(data: Uint8Array, ctor: ViewConstructor<T>, datatype: Datatype, label: string): T {
  const size = ctor.BYTES_PER_ELEMENT;
  if (data.byteLength % size !== 0) {
    throw invalidArgument(`${label}: ${data.byteLength} bytes is not a whole number of ${datatype} elements`);
  }
  // Typed views need an offset that is a multiple of the element size; a
  // slice of a pooled Buffer often is not. `new Uint8Array(x)` always copies.
  const src = data.byteOffset % size === 0 ? data : new Uint8Array(data);
  return new ctor(src.buffer, src.byteOffset, src.byteLength / size);
}

/**
 * Raw bytes to typed contents, for JSON answers and clients that want typed
 * outputs. FP16/BF16 have no typed field: INVALID_ARGUMENT. BYTES elements
 * are Buffer views of `data`, not copies.
 */
export function rawToTypedContents(data: Uint8Array, datatype: Datatype, label: string): InferTensorContents {
  const contents = emptyContents();
  switch (datatype) {
    case 'BOOL':
      contents.boolContents = Array.from(data, (b) => b !== 0);
      break;
    case 'UINT8':
      contents.uintContents = Array.from(data);
      break;
    case 'UINT16':
      contents.uintContents = Array.from(viewAs(data, Uint16Array, datatype, label));
      break;
    case 'UINT32':
      contents.uintContents = Array.from(viewAs(data, Uint32Array, datatype, label));
      break;
    case 'UINT64':
      contents.uint64Contents = Array.from(viewAs(data, BigUint64Array, datatype, label));
      break;
    case 'INT8':
      contents.intContents = Array.from(viewAs(data, Int8Array, datatype, label));
      break;
    case 'INT16':
      contents.intContents = Array.from(viewAs(data, Int16Array, datatype, label));
      break;
    case 'INT32':
      contents.intContents = Array.from(viewAs(data, Int32Array, datatype, label));
      break;
    case 'INT64':
      contents.int64Contents = Array.from(viewAs(data, BigInt64Array, datatype, label));
      break;
    case 'FP32':
      contents.fp32Contents = Array.from(viewAs(data, Float32Array, datatype, label));
      break;
    case 'FP64':
      contents.fp64Contents = Array.from(viewAs(data, Float64Array, datatype, label));
      break;
    case 'BYTES':
      contents.bytesContents = splitBytesElements(data, label);
      break;
    case 'FP16':
    case 'BF16':
      throw invalidArgument(`${label}: ${datatype} has no typed contents field; it can only be sent raw`);
  }
  return contents;
}
