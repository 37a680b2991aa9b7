// Triton's classification extension: an output requested with
// `classification: K` (gRPC: the output's int64_param "classification";
// HTTP: its `parameters.classification`) comes back as the K largest
// elements of each batch item instead of the raw tensor, largest first, as
// BYTES strings "value:index" or "value:index:label". Labels come from the
// file the output's `label_filename` names in config.pbtxt, one per line,
// read when the version loads. Done in the gateway after the run, for the
// one request that asked: the worker, the batch and the response cache see
// the raw output.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArgument } from '../../core/errors.js';
import { type Datatype } from '../../core/datatypes.js';
import { type ModelSignature } from '../../core/signature.js';
import { elementCount, type Tensor } from '../../core/tensor.js';
import { type ModelConfig } from '../../proto/gen/model_config.js';
import { ConfigError } from '../../models/config/config-error.js';
import { joinBytesElements } from '../tensor/bytes-elements.js';

/** Output name → K, for the outputs a request asked to classify (K > 0). */
export type ClassCounts = ReadonlyMap<string, number>;

/** Output name → its labels by class index, for the outputs whose config names a label file. */
export type OutputLabels = ReadonlyMap<string, readonly string[]>;

export const NO_LABELS: OutputLabels = new Map();

/** The request parameter's name, on a requested output. */
export const CLASSIFICATION_PARAMETER = 'classification';

/**
 * K from a requested output's `classification` parameter: a whole number,
 * 0 = the raw output (as Triton takes it). `label` names the output.
 */
export function classCountOf(value: unknown, label: string): number {
  const n = typeof value === 'bigint' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw invalidArgument(`${label}: parameter 'classification' must be a non-negative integer (how many classes to return), got ${typeof value === 'string' ? `'${value}'` : String(value)}`);
  }
  return n;
}

/** Datatypes whose elements can be ranked: Triton's, and FP16 and BF16, which it refuses. */
function rankable(datatype: Datatype): boolean {
  return datatype !== 'BYTES' && datatype !== 'BOOL';
}

/**
 * Refuses, before the request runs, a classification the output cannot
 * give: Triton's words for a type it cannot rank.
 */
export function checkClassifiable(signature: ModelSignature, counts: ClassCounts, modelKey: string): void {
  for (const name of counts.keys()) {
    const output = signature.outputs.find((o) => o.name === name);
    // An unknown output was refused with the requested outputs already.
    if (output !== undefined && !rankable(output.datatype)) {
      throw invalidArgument(`model '${modelKey}': output '${name}': class result not available for output due to unsupported type '${output.datatype}'`);
    }
  }
}

/** `outputs` with each one in `counts` replaced by its top-K classes per batch item (`batching`: dimension 0 is the batch). */
export function classify(outputs: readonly Tensor[], counts: ClassCounts, labels: OutputLabels, batching: boolean): readonly Tensor[] {
  return outputs.map((t) => {
    const k = counts.get(t.name);
    return k === undefined || k === 0 ? t : topClasses(t, k, labels.get(t.name), batching);
  });
}

function topClasses(t: Tensor, k: number, labels: readonly string[] | undefined, batching: boolean): Tensor {
  const items = batching && t.shape.length > 0 ? (t.shape[0] as number) : 1;
  const perItem = batching && t.shape.length > 0 ? elementCount(t.shape.slice(1)) : elementCount(t.shape);
  const read = reader(t);
  const text = writer(t, read);
  const kept = Math.min(k, perItem);
  const strings: string[] = [];
  for (let item = 0; item < items; item++) {
    const base = item * perItem;
    for (const index of largest(read, base, perItem, kept)) {
      const label = labels?.[index];
      const value = `${text(base + index)}:${index}`;
      strings.push(label === undefined || label === '' ? value : `${value}:${label}`);
    }
  }
  return { name: t.name, datatype: 'BYTES', shape: batching && t.shape.length > 0 ? [items, kept] : [kept], data: joinBytesElements(strings.map((s) => Buffer.from(s, 'utf8')), `output '${t.name}'`) };
}

/**
 * The indexes (within the item) of the `kept` largest of `count` elements
 * from `base`, largest first; ties in index order, NaN last. A selection
 * kept sorted as it goes: K is a handful, the classes may be thousands.
 */
function largest(read: (i: number) => number, base: number, count: number, kept: number): number[] {
  const top: number[] = [];
  const ranks: number[] = [];
  if (kept === 0) return top;
  for (let i = 0; i < count; i++) {
    const v = read(base + i);
    const rank = Number.isNaN(v) ? -Infinity : v;
    // Full, and not above the last kept: an equal one came first and stays ahead.
    if (top.length === kept && !(rank > (ranks[kept - 1] as number))) continue;
    let at = top.length;
    while (at > 0 && rank > (ranks[at - 1] as number)) at--;
    top.splice(at, 0, i);
    ranks.splice(at, 0, rank);
    if (top.length > kept) {
      top.pop();
      ranks.pop();
    }
  }
  return top;
}

/** Element i of `t` as a number, to rank by (64-bit integers past 2^53 rank by their nearest double). */
function reader(t: Tensor): (i: number) => number {
  const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  switch (t.datatype) {
    case 'UINT8':
      return (i) => view.getUint8(i);
    case 'INT8':
      return (i) => view.getInt8(i);
    case 'UINT16':
      return (i) => view.getUint16(2 * i, true);
    case 'INT16':
      return (i) => view.getInt16(2 * i, true);
    case 'UINT32':
      return (i) => view.getUint32(4 * i, true);
    case 'INT32':
      return (i) => view.getInt32(4 * i, true);
    case 'UINT64':
      return (i) => Number(view.getBigUint64(8 * i, true));
    case 'INT64':
      return (i) => Number(view.getBigInt64(8 * i, true));
    case 'FP16':
      return (i) => halfToNumber(view.getUint16(2 * i, true));
    case 'BF16':
      return (i) => bf16ToNumber(view.getUint16(2 * i, true));
    case 'FP32':
      return (i) => view.getFloat32(4 * i, true);
    case 'FP64':
      return (i) => view.getFloat64(8 * i, true);
    default:
      throw invalidArgument(`output '${t.name}': class result not available for output due to unsupported type '${t.datatype}'`);
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bf16ToNumber(bits: number): number {
  u32[0] = bits << 16;
  return f32[0] as number;
}

function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/**
 * Element i of `t` as Triton writes it (C++'s std::to_string): integers
 * whole and exact, floating point with six decimals ("%f"), "nan", "inf"
 * and "-inf".
 */
function writer(t: Tensor, read: (i: number) => number): (i: number) => string {
  const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  switch (t.datatype) {
    case 'INT64':
      return (i) => String(view.getBigInt64(8 * i, true));
    case 'UINT64':
      return (i) => String(view.getBigUint64(8 * i, true));
    case 'FP16':
    case 'BF16':
    case 'FP32':
    case 'FP64':
      return (i) => decimal(read(i));
    default:
      return (i) => String(read(i));
  }
}

function decimal(v: number): string {
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  if (Object.is(v, -0)) return '-0.000000';
  // toFixed turns to exponents from 1e21; such a double is a whole number.
  if (Math.abs(v) >= 1e21) return `${BigInt(v)}.000000`;
  // An exact tie at the sixth decimal (a multiple of 2^-7 such as 1/128) shows as .5 in the scaled double, which
  // is then exact; toFixed rounds it up, "%f" to even. Other values round alike, so only those are checked exactly.
  const scaled = Math.abs(v) * 1e6;
  return scaled - Math.floor(scaled) === 0.5 ? halfEven(v) ?? v.toFixed(6) : v.toFixed(6);
}

/** `v` with six decimals, a tie rounded to even as glibc's "%f" does; undefined when `v` is no exact tie. */
function halfEven(v: number): string | undefined {
  const a = Math.abs(v);
  // a = n / 2^k exactly: double a until it is whole (each doubling is exact; a < 2^53 here, so n stays below it).
  let k = 0;
  let n = a;
  while (!Number.isInteger(n)) {
    n *= 2;
    k++;
  }
  const scaled = BigInt(n) * 1_000_000n;
  const d = 1n << BigInt(k);
  if (2n * (scaled % d) !== d) return undefined;
  const q = scaled / d;
  const even = q % 2n === 0n ? q : q + 1n;
  const frac = String(even % 1_000_000n).padStart(6, '0');
  return `${v < 0 ? '-' : ''}${even / 1_000_000n}.${frac}`;
}


/**
 * The labels of each output whose config names a `label_filename`: the
 * file, in the model's directory, one label per line (a trailing "\r" is
 * not part of it). A file that cannot be read fails the load, as in Triton.
 */
export async function readLabels(config: ModelConfig, directory: string, file: string): Promise<OutputLabels> {
  const labels = new Map<string, string[]>();
  for (const [i, output] of config.output.entries()) {
    const name = output.labelFilename;
    if (name === '') continue;
    if (name.includes('/') || name.includes('\\') || name === '.' || name === '..') {
      throw new ConfigError(file, `output[${i}].label_filename`, `expected a file name in the model's directory, got '${name}'`);
    }
    let text: string;
    try {
      text = await readFile(join(directory, name), 'utf8');
    } catch (error) {
      throw new ConfigError(file, `output[${i}].label_filename`, `failed to read the label file ${join(directory, name)}: ${(error as Error).message}`);
    }
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    labels.set(output.name, lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l)));
  }
  return labels;
}
