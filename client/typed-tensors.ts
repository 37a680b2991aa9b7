// Typed tensors for the clients: JS arrays in, KServe's raw little-endian
// bytes on the wire (and JSON values for the REST API's non-binary form),
// and typed arrays back out. Every check happens here, before a request
// leaves the process, so a bad tensor fails with a message that names it.
import { endianness } from 'node:os';
import { type Datatype, elementSize, isDatatype } from '../core/datatypes.js';
import { invalidInput } from './errors.js';

/** What each datatype's elements come back as. FP16/BF16 are the raw 16-bit patterns (see fp16ToFloat32). */
export interface TensorDataMap {
  BOOL: boolean[];
  UINT8: Uint8Array;
  UINT16: Uint16Array;
  UINT32: Uint32Array;
  UINT64: BigUint64Array;
  INT8: Int8Array;
  INT16: Int16Array;
  INT32: Int32Array;
  INT64: BigInt64Array;
  FP16: Uint16Array;
  BF16: Uint16Array;
  FP32: Float32Array;
  FP64: Float64Array;
  BYTES: string[];
}
export type TensorData<D extends Datatype = Datatype> = TensorDataMap[D];

/** What an input of each datatype accepts: its typed array, or plain JS values. */
export interface InputDataMap {
  BOOL: readonly boolean[] | Uint8Array;
  UINT8: Uint8Array | readonly number[];
  UINT16: Uint16Array | readonly number[];
  UINT32: Uint32Array | readonly number[];
  UINT64: BigUint64Array | readonly (bigint | number)[];
  INT8: Int8Array | readonly number[];
  INT16: Int16Array | readonly number[];
  INT32: Int32Array | readonly number[];
  INT64: BigInt64Array | readonly (bigint | number)[];
  /** 16-bit patterns, or the raw bytes (2 per element). */
  FP16: Uint16Array | Uint8Array;
  BF16: Uint16Array | Uint8Array;
  FP32: Float32Array | readonly number[];
  FP64: Float64Array | readonly number[];
  /** Strings are sent as UTF-8; byte arrays as they are. */
  BYTES: readonly (string | Uint8Array)[];
}
export type InputData<D extends Datatype = Datatype> = InputDataMap[D];

export type ParameterValue = string | number | boolean;

interface InferInputOf<D extends Datatype> {
  readonly name: string;
  readonly datatype: D;
  /** Full shape, batch dimension included for batching models. */
  readonly shape: readonly number[];
  readonly data: InputData<D>;
  readonly parameters?: Readonly<Record<string, ParameterValue>>;
}

/** An input tensor; the datatype decides which data it takes (checked by the compiler for literals). */
export type InferInput = { [D in Datatype]: InferInputOf<D> }[Datatype];

/** Builds an input whose data type the compiler checks against `datatype`. */
export function input<D extends Datatype>(name: string, datatype: D, shape: readonly number[], data: InputData<D>): InferInput {
  return { name, datatype, shape, data } as InferInput;
}

/** Where in a registered system shared memory region a tensor is: `byteSize` bytes from `offset` (default 0). */
export interface SharedMemoryPlace {
  readonly region: string;
  readonly byteSize: number;
  readonly offset?: number;
}

/** The parameters that place a tensor in shared memory, as Triton's clients send them. */
export function sharedMemoryParameters(place: SharedMemoryPlace): Record<string, string | number> {
  return { shared_memory_region: place.region, shared_memory_byte_size: place.byteSize, ...(place.offset ? { shared_memory_offset: place.offset } : {}) };
}

/**
 * An input whose bytes the server reads from a system shared memory region
 * (registered with registerSystemSharedMemory; client/system-shared-memory.ts
 * writes them): no data of its own.
 */
export function sharedMemoryInput(name: string, datatype: Datatype, shape: readonly number[], place: SharedMemoryPlace): InferInput {
  return { name, datatype, shape, data: new Uint8Array(0), parameters: sharedMemoryParameters(place) } as unknown as InferInput;
}

/** Whether the server reads this input from shared memory (sharedMemoryInput): it sends no data. */
export function isSharedMemoryInput(t: InferInput): boolean {
  return t.parameters?.['shared_memory_region'] !== undefined;
}

type TypedArrayCtor =
  | Uint8ArrayConstructor
  | Uint16ArrayConstructor
  | Uint32ArrayConstructor
  | BigUint64ArrayConstructor
  | Int8ArrayConstructor
  | Int16ArrayConstructor
  | Int32ArrayConstructor
  | BigInt64ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor;

const ARRAY_OF: Readonly<Record<Exclude<Datatype, 'BOOL' | 'BYTES'>, TypedArrayCtor>> = {
  UINT8: Uint8Array,
  UINT16: Uint16Array,
  UINT32: Uint32Array,
  UINT64: BigUint64Array,
  INT8: Int8Array,
  INT16: Int16Array,
  INT32: Int32Array,
  INT64: BigInt64Array,
  FP16: Uint16Array,
  BF16: Uint16Array,
  FP32: Float32Array,
  FP64: Float64Array,
};

// The wire format is little-endian; typed arrays use the host's order.
const LITTLE_ENDIAN = endianness() === 'LE';

function checkShape(shape: readonly number[], label: string): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw invalidInput(`${label}: shape [${shape.join(',')}] must hold non-negative integers`);
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw invalidInput(`${label}: shape [${shape.join(',')}] has too many elements`);
  return n;
}

const bufferOf = (v: ArrayBufferView): Buffer => Buffer.from(v.buffer, v.byteOffset, v.byteLength);

function isTypedArray(v: unknown): v is ArrayBufferView & { length: number } {
  return ArrayBuffer.isView(v) && !(v instanceof DataView);
}

/** BYTES elements → KServe's raw form: each a 4-byte little-endian length, then the bytes. */
export function encodeBytesElements(elements: readonly (string | Uint8Array)[]): Buffer {
  const parts = elements.map((e) => (typeof e === 'string' ? Buffer.from(e, 'utf8') : e));
  const out = Buffer.allocUnsafe(parts.reduce((n, p) => n + 4 + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.writeUInt32LE(p.byteLength, o);
    out.set(p, o + 4);
    o += 4 + p.byteLength;
  }
  return out;
}

/** KServe's raw BYTES form → its elements (views into `raw`). Throws when the lengths do not add up. */
export function splitBytesElements(raw: Uint8Array, label = 'BYTES tensor'): Buffer[] {
  const b = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const out: Buffer[] = [];
  let o = 0;
  while (o < b.length) {
    if (o + 4 > b.length) throw invalidInput(`${label}: ${b.length - o} trailing bytes where a 4-byte length was expected`);
    const n = b.readUInt32LE(o);
    if (o + 4 + n > b.length) throw invalidInput(`${label}: element ${out.length} claims ${n} bytes but ${b.length - o - 4} remain`);
    out.push(b.subarray(o + 4, o + 4 + n));
    o += 4 + n;
  }
  return out;
}

/**
 * An input's data as raw little-endian bytes. Typed arrays of the right
 * kind are not copied; plain arrays are converted. Throws INVALID_ARGUMENT
 * when the data does not fit the datatype or the element count the shape.
 */
export function encodeRaw(t: InferInput): Buffer {
  const label = `input '${t.name}' (${t.datatype})`;
  if (!isDatatype(t.datatype)) throw invalidInput(`${label}: unknown datatype`);
  const count = checkShape(t.shape, label);
  const mismatch = (got: number): Error => invalidInput(`${label}: shape [${t.shape.join(',')}] holds ${count} elements, got ${got}`);
  if (t.datatype === 'BYTES') {
    if (t.data.length !== count) throw mismatch(t.data.length);
    return encodeBytesElements(t.data);
  }
  if (t.datatype === 'BOOL') {
    if (t.data.length !== count) throw mismatch(t.data.length);
    if (t.data instanceof Uint8Array) return bufferOf(t.data);
    return Buffer.from(Uint8Array.from(t.data, (b) => (b ? 1 : 0)));
  }
  if (!LITTLE_ENDIAN) throw invalidInput(`${label}: typed tensors need a little-endian host`);
  const Ctor = ARRAY_OF[t.datatype];
  const data: unknown = t.data;
  if ((t.datatype === 'FP16' || t.datatype === 'BF16') && data instanceof Uint8Array) {
    if (data.byteLength !== count * 2) throw invalidInput(`${label}: shape [${t.shape.join(',')}] needs ${count * 2} raw bytes, got ${data.byteLength}`);
    return bufferOf(data);
  }
  if (data instanceof Ctor) {
    if (data.length !== count) throw mismatch(data.length);
    return bufferOf(data);
  }
  if (isTypedArray(data)) throw invalidInput(`${label}: expected a ${Ctor.name} or an array of numbers, got a ${data.constructor.name}`);
  if (!Array.isArray(data)) throw invalidInput(`${label}: expected a ${Ctor.name} or an array of numbers`);
  if (data.length !== count) throw mismatch(data.length);
  if (t.datatype === 'FP16' || t.datatype === 'BF16') throw invalidInput(`${label}: send 16-bit float data as a Uint16Array of bit patterns (see float32ToFp16)`);
  return bufferOf(fromValues(Ctor, data as readonly unknown[], label));
}

function fromValues(Ctor: TypedArrayCtor, values: readonly unknown[], label: string): ArrayBufferView {
  if (Ctor === BigInt64Array || Ctor === BigUint64Array) {
    const out = new Ctor(values.length);
    values.forEach((v, i) => {
      if (typeof v === 'bigint') out[i] = v;
      else if (typeof v === 'number' && Number.isSafeInteger(v)) out[i] = BigInt(v);
      else throw invalidInput(`${label}: element ${i} must be a bigint or a safe integer, got ${String(v)}`);
    });
    return out;
  }
  const out = new Ctor(values.length) as Float64Array;
  values.forEach((v, i) => {
    if (typeof v !== 'number') throw invalidInput(`${label}: element ${i} must be a number, got ${typeof v}`);
    out[i] = v;
  });
  return out;
}

/** `raw` as a typed array of `Ctor`: a view when aligned, else an aligned copy. */
function view<T>(Ctor: TypedArrayCtor, raw: Uint8Array, count: number): T {
  const size = Ctor.BYTES_PER_ELEMENT;
  const bytes = raw.byteOffset % size === 0 ? raw : new Uint8Array(raw); // copies (Buffer#slice would not)
  return new Ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, count) as T;
}

/**
 * Raw little-endian bytes of an output → its typed data. Aligned data is
 * viewed, not copied. Throws when the byte length does not match the shape.
 */
export function decodeRaw<D extends Datatype>(datatype: D, shape: readonly number[], raw: Uint8Array, name = 'tensor'): TensorData<D> {
  const label = `output '${name}' (${datatype})`;
  const count = checkShape(shape, label);
  if (datatype === 'BYTES') {
    const elements = splitBytesElements(raw, label);
    if (elements.length !== count) throw invalidInput(`${label}: shape [${shape.join(',')}] holds ${count} elements, the data has ${elements.length}`);
    return elements.map((e) => e.toString('utf8')) as TensorData<D>;
  }
  const size = elementSize(datatype);
  if (raw.byteLength !== count * size) throw invalidInput(`${label}: shape [${shape.join(',')}] needs ${count * size} bytes, got ${raw.byteLength}`);
  if (datatype === 'BOOL') return Array.from(raw, (b) => b !== 0) as TensorData<D>;
  if (!LITTLE_ENDIAN) throw invalidInput(`${label}: typed tensors need a little-endian host`);
  return view<TensorData<D>>(ARRAY_OF[datatype as Exclude<Datatype, 'BOOL' | 'BYTES'>], raw, count);
}

/** JSON values for the REST API's `data` field. FP16/BF16 and 64-bit values beyond ±2^53 must go in binary. */
export function toJsonValues(t: InferInput): (number | boolean | string)[] {
  const label = `input '${t.name}' (${t.datatype})`;
  const count = checkShape(t.shape, label);
  if (t.datatype === 'FP16' || t.datatype === 'BF16') throw invalidInput(`${label}: ${t.datatype} cannot be sent as JSON; use the binary encoding`);
  if (t.datatype === 'BYTES') {
    if (t.data.length !== count) throw invalidInput(`${label}: shape [${t.shape.join(',')}] holds ${count} elements, got ${t.data.length}`);
    const utf8 = new TextDecoder('utf-8', { fatal: true });
    return t.data.map((e, i) => {
      if (typeof e === 'string') return e;
      try {
        return utf8.decode(e);
      } catch {
        throw invalidInput(`${label}: element ${i} is not UTF-8, which JSON cannot carry; use the binary encoding`);
      }
    });
  }
  if (t.datatype === 'BOOL') {
    if (t.data.length !== count) throw invalidInput(`${label}: shape [${t.shape.join(',')}] holds ${count} elements, got ${t.data.length}`);
    return Array.from(t.data as ArrayLike<boolean | number>, (b) => b === true || b === 1);
  }
  // Validate (and convert) through the raw path, then read the values back.
  const decoded = decodeRaw(t.datatype, t.shape, encodeRaw(t), t.name) as ArrayLike<number | bigint>;
  return Array.from(decoded, (v, i) => {
    if (typeof v === 'number') return v;
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw invalidInput(`${label}: element ${i} (${v}) is beyond ±2^53, which JSON numbers cannot carry; use the binary encoding`);
    return n;
  });
}

/** Flat or nested JSON `data` of an output → its typed data. */
export function fromJsonValues<D extends Datatype>(datatype: D, shape: readonly number[], data: unknown, name = 'tensor'): TensorData<D> {
  const label = `output '${name}' (${datatype})`;
  const count = checkShape(shape, label);
  const flat = Array.isArray(data) ? (data as unknown[]).flat(Infinity) : [data];
  if (flat.length !== count) throw invalidInput(`${label}: shape [${shape.join(',')}] holds ${count} elements, the JSON data has ${flat.length}`);
  const bad = (i: number, want: string): Error => invalidInput(`${label}: element ${i} must be ${want}, got ${JSON.stringify(flat[i])}`);
  if (datatype === 'FP16' || datatype === 'BF16') throw invalidInput(`${label}: ${datatype} has no JSON form; ask for binary outputs`);
  const want = datatype === 'BYTES' ? 'string' : datatype === 'BOOL' ? 'boolean' : 'number';
  const i = flat.findIndex((v) => typeof v !== want);
  if (i >= 0) throw bad(i, `a ${want}`);
  if (datatype === 'BYTES' || datatype === 'BOOL') return flat as TensorData<D>;
  return fromValues(ARRAY_OF[datatype as Exclude<Datatype, 'BOOL' | 'BYTES'>], flat, label) as TensorData<D>;
}

// ---------------------------------------------------------------------------
// FP16: the wire carries 16-bit patterns; these convert them for people who
// want numbers (Node 20 has no Float16Array).
// ---------------------------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary32 → binary16 bit patterns, rounding to nearest even; overflow gives ±Infinity. */
export function float32ToFp16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i] ?? 0;
    const x = u32[0] ?? 0;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // Inf or NaN (quiet)
      continue;
    }
    const e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign; // underflows to ±0
        continue;
      }
      mant |= 0x800000; // subnormal half: shift the implicit bit in
      const shift = 14 - e;
      const half = mant >>> shift;
      const rest = mant & ((1 << shift) - 1);
      const mid = 1 << (shift - 1);
      out[i] = sign | (half + (rest > mid || (rest === mid && (half & 1) === 1) ? 1 : 0));
      continue;
    }
    const half = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    // A carry out of the mantissa correctly bumps the exponent (up to Infinity).
    out[i] = sign | (half + (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1) ? 1 : 0));
  }
  return out;
}

/** IEEE 754 binary16 bit patterns → numbers (exact). */
export function fp16ToFloat32(bits: ArrayLike<number>): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i] ?? 0;
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) out[i] = sign * mant * 2 ** -24;
    else if (exp === 0x1f) out[i] = mant === 0 ? sign * Infinity : NaN;
    else out[i] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return out;
}

/**
 * An output answered with no bytes although its shape has elements: the
 * server wrote it to shared memory (Triton answers such an output with an
 * empty raw entry, or over HTTP with neither data nor a binary size).
 */
export function writtenElsewhere(shape: readonly number[]): boolean {
  return shape.every((d) => d > 0);
}
