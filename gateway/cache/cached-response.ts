import { type Datatype, isDatatype } from '../../core/datatypes.js';
import { type Tensor } from '../../core/tensor.js';

// What the cache keeps of an answer: its output tensors, one buffer each.
// Outputs arrive as views into a whole batch's buffer; keeping a view would
// pin the batch and miscount the bytes, so each output is copied once on
// insert. A hit hands out the kept tensors themselves: encoders only read.

/** Bookkeeping per entry and per output (key string, Map slot, objects), counted with the bytes. */
const ENTRY_OVERHEAD = 160;
const OUTPUT_OVERHEAD = 96;

export interface CachedResponse {
  readonly outputs: readonly Tensor[];
  /** What the entry costs the cache: tensor bytes plus bookkeeping. */
  readonly bytes: number;
}

/** The bytes an answer would take in the cache, without copying it. */
export function cachedSize(key: string, outputs: readonly Tensor[]): number {
  let bytes = ENTRY_OVERHEAD + key.length;
  for (const t of outputs) bytes += OUTPUT_OVERHEAD + t.name.length + 8 * t.shape.length + t.data.byteLength;
  return bytes;
}

/** Copies each output into a buffer of its own. */
export function toCachedResponse(key: string, outputs: readonly Tensor[]): CachedResponse {
  return {
    outputs: outputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: [...t.shape], data: Uint8Array.prototype.slice.call(t.data) })),
    bytes: cachedSize(key, outputs),
  };
}

// Redis keeps one value per key: a JSON header (names, datatypes, shapes,
// byte lengths) after its own 4-byte length, then the tensors' bytes.

interface HeaderEntry {
  readonly n: string;
  readonly d: Datatype;
  readonly s: number[];
  readonly b: number;
}

export function encodeCachedResponse(outputs: readonly Tensor[]): Buffer {
  const header = Buffer.from(JSON.stringify(outputs.map((t): HeaderEntry => ({ n: t.name, d: t.datatype, s: [...t.shape], b: t.data.byteLength }))));
  const length = Buffer.allocUnsafe(4);
  length.writeUInt32LE(header.length, 0);
  return Buffer.concat([length, header, ...outputs.map((t) => t.data)]);
}

export class CachedResponseError extends Error {
  override name = 'CachedResponseError';
}

/** The tensors of an encoded entry, as views into `value` (no copy). Throws CachedResponseError on a value it did not write. */
export function decodeCachedResponse(value: Buffer): Tensor[] {
  if (value.length < 4) throw new CachedResponseError(`entry of ${value.length} bytes is shorter than its header length`);
  const headerLength = value.readUInt32LE(0);
  if (4 + headerLength > value.length) throw new CachedResponseError(`header of ${headerLength} bytes runs past the ${value.length}-byte entry`);
  let header: unknown;
  try {
    header = JSON.parse(value.toString('utf8', 4, 4 + headerLength));
  } catch {
    throw new CachedResponseError('header is not JSON');
  }
  if (!Array.isArray(header)) throw new CachedResponseError('header is not a list of outputs');
  let offset = 4 + headerLength;
  const outputs: Tensor[] = [];
  for (const e of header as Partial<HeaderEntry>[]) {
    const ok = typeof e.n === 'string' && typeof e.d === 'string' && isDatatype(e.d) && Array.isArray(e.s) && e.s.every((d) => Number.isInteger(d) && d >= 0) && Number.isInteger(e.b) && (e.b ?? -1) >= 0;
    if (!ok || e.b === undefined || offset + e.b > value.length) throw new CachedResponseError('an output entry is malformed or runs past the value');
    outputs.push({ name: e.n as string, datatype: e.d as Datatype, shape: e.s as number[], data: value.subarray(offset, offset + e.b) });
    offset += e.b;
  }
  if (offset !== value.length) throw new CachedResponseError(`${value.length - offset} bytes left after the last output`);
  return outputs;
}
