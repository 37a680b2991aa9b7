// The requests a load level sends: shapes from the model's metadata, -b and
// --shape, and data that is zero, seeded random, or read from a
// perf_analyzer-style JSON file. Requests cycle through a small pool of
// distinct input sets, built once, so building them costs nothing per request.
import { readFileSync } from 'node:fs';
import { type Datatype, isDatatype } from '../../core/datatypes.js';
import { mulberry32 } from '../../models/build/seeded-random.js';
import { type ModelMetadata } from '../../client/inference-client.js';
import { type InferInput, decodeRaw, float32ToFp16 } from '../../client/typed-tensors.js';

export type InputDataSource = { readonly kind: 'zero' } | { readonly kind: 'random'; readonly seed: number } | { readonly kind: 'file'; readonly path: string };

export interface InputPlanOptions {
  /** Rows per request (perf_analyzer's -b); must be 1 for models that do not batch. */
  readonly batchSize: number;
  /** --shape NAME:d1,d2: the dims without the batch dimension for batching models, the full shape otherwise. */
  readonly shapes?: ReadonlyMap<string, readonly number[]>;
  readonly data: InputDataSource;
  /** Length of random BYTES elements (default 16). */
  readonly stringLength?: number;
  /** Distinct random input sets (default 16). */
  readonly poolSize?: number;
  /**
   * --cache-hit-ratio R: request n repeats one of a few hot input sets with
   * probability R, and is otherwise an input never sent before, so a
   * response cache can answer about R of the requests.
   */
  readonly cacheHitRatio?: number;
}

export interface InputPlan {
  readonly batchSize: number;
  /** Each request's shape per input, batch dimension included. */
  readonly shapes: Readonly<Record<string, readonly number[]>>;
  /** Distinct input sets; request n sends sets[n % sets.length] (unless inputsFor says otherwise). */
  readonly sets: readonly (readonly InferInput[])[];
  /** With a cache hit ratio: request n's inputs. */
  readonly inputsFor?: (seq: number) => readonly InferInput[];
}

/** Hot input sets a hit-ratio mix repeats: few, so each is a hit after its first request. */
export const HOT_SETS = 4;

/** A uniform draw in [0, 1) from (seed, n): the same sequence every run, independent of timing. */
function draw(seed: number, n: number): number {
  let x = (Math.imul(n ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(seed + 1, 0xc2b2ae35)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b) >>> 0;
  return ((x ^ (x >>> 16)) >>> 0) / 2 ** 32;
}

/** `base` with request `seq` written into its first input's first element, so no two requests send the same bytes. */
function stamped(base: readonly InferInput[], seq: number): InferInput[] {
  const [first, ...rest] = base;
  if (!first) throw new InputDataError('--cache-hit-ratio: the model has no inputs to vary');
  const data = first.data;
  let copy: InferInput['data'];
  if (data instanceof Float32Array || data instanceof Float64Array) {
    const c = data.slice();
    // An integer up to 2^24 is exact in FP32: request numbers stay distinct, and no denormals slow the model down.
    c[0] = 1 + (seq % 2 ** 24);
    copy = c;
  } else if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    const c = data.slice();
    c[0] = BigInt(seq);
    copy = c;
  } else if (ArrayBuffer.isView(data)) {
    const c = (data as Uint8Array).slice();
    const bytes = new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
    for (let i = 0; i < Math.min(4, bytes.length); i++) bytes[i] = (seq >>> (8 * i)) & 0xff;
    copy = c as unknown as InferInput['data'];
  } else if (first.datatype === 'BYTES') {
    copy = [`${seq}`, ...(data as string[]).slice(1)];
  } else {
    throw new InputDataError(`--cache-hit-ratio: input '${first.name}' (${first.datatype}) cannot carry a request number; the first input must be numeric or BYTES`);
  }
  return [{ ...first, data: copy } as InferInput, ...rest];
}

/**
 * Request n's inputs for a cache hit ratio: one of HOT_SETS sets with
 * probability `ratio`, else `base` stamped with the next fresh number
 * (never repeated within 2^24 requests, across load levels too).
 */
export function hitRatioInputs(sets: readonly (readonly InferInput[])[], ratio: number, seed: number): (seq: number) => readonly InferInput[] {
  if (!(ratio >= 0 && ratio <= 1)) throw new InputDataError(`--cache-hit-ratio: expected a number from 0 to 1, got ${ratio}`);
  const base = sets[0] ?? [];
  // Hot sets take the last HOT_SETS request numbers, which fresh requests never use.
  const hot = Array.from({ length: HOT_SETS }, (_, i) => stamped(base, 2 ** 24 - 1 - i));
  // Fresh inputs count on their own: load levels restart `seq`, and an input of an earlier level must not hit.
  let fresh = 0;
  return (seq) => (draw(seed, seq) < ratio ? (hot[seq % HOT_SETS] as InferInput[]) : stamped(base, fresh++ % (2 ** 24 - HOT_SETS)));
}

export class InputDataError extends Error {
  override name = 'InputDataError';
}

/** Parses `NAME:d1,d2` (repeatable --shape). */
export function parseShapeFlag(flag: string): [string, number[]] {
  const colon = flag.lastIndexOf(':');
  const name = flag.slice(0, colon);
  const dims = flag.slice(colon + 1).split(',').map(Number);
  if (colon <= 0 || dims.some((d) => !Number.isInteger(d) || d < 0)) throw new InputDataError(`--shape: expected NAME:d1,d2,… with non-negative integers, got '${flag}'`);
  return [name, dims];
}

/** One request's shape of every input, checked against the metadata. */
export function resolveShapes(md: ModelMetadata, maxBatchSize: number, o: Pick<InputPlanOptions, 'batchSize' | 'shapes'>): Record<string, number[]> {
  const batching = maxBatchSize > 0;
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) throw new InputDataError(`-b: expected an integer ≥ 1, got ${o.batchSize}`);
  if (!batching && o.batchSize !== 1) throw new InputDataError(`model '${md.name}' does not batch (max_batch_size 0): -b must be 1, got ${o.batchSize}`);
  if (batching && o.batchSize > maxBatchSize) throw new InputDataError(`-b ${o.batchSize} is over model '${md.name}''s max_batch_size ${maxBatchSize}`);
  for (const name of o.shapes?.keys() ?? []) {
    if (!md.inputs.some((t) => t.name === name)) throw new InputDataError(`--shape ${name}: model '${md.name}' has no such input; it has ${md.inputs.map((t) => t.name).join(', ')}`);
  }
  const out: Record<string, number[]> = {};
  for (const t of md.inputs) {
    const dims = batching ? t.shape.slice(1) : [...t.shape];
    const given = o.shapes?.get(t.name);
    if (given !== undefined) {
      if (given.length !== dims.length) throw new InputDataError(`--shape ${t.name}: expected ${dims.length} dims ([${dims.join(',')}]${batching ? ' without the batch dimension' : ''}), got [${given.join(',')}]`);
      given.forEach((d, i) => {
        if (dims[i] !== -1 && dims[i] !== d) throw new InputDataError(`--shape ${t.name}: dim ${i} is fixed at ${dims[i]} by the model, got ${d}`);
      });
    } else if (dims.includes(-1)) {
      throw new InputDataError(`input '${t.name}' has variable dims [${dims.join(',')}]: give them with --shape ${t.name}:…`);
    }
    const resolved = given !== undefined ? [...given] : dims;
    out[t.name] = batching ? [o.batchSize, ...resolved] : resolved;
  }
  return out;
}

const count = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

function zeroData(datatype: Datatype, n: number): InferInput['data'] {
  switch (datatype) {
    case 'BOOL':
      return new Array<boolean>(n).fill(false);
    case 'BYTES':
      return new Array<string>(n).fill('0');
    case 'INT64':
      return new BigInt64Array(n);
    case 'UINT64':
      return new BigUint64Array(n);
    case 'FP16':
    case 'BF16':
      return new Uint16Array(n);
    case 'FP32':
      return new Float32Array(n);
    case 'FP64':
      return new Float64Array(n);
    case 'INT8':
      return new Int8Array(n);
    case 'INT16':
      return new Int16Array(n);
    case 'INT32':
      return new Int32Array(n);
    case 'UINT8':
      return new Uint8Array(n);
    case 'UINT16':
      return new Uint16Array(n);
    case 'UINT32':
      return new Uint32Array(n);
  }
}

/** Floats uniform in [-1, 1), integers in [0, 100), random booleans, ASCII strings. */
function randomData(datatype: Datatype, n: number, next: () => number, stringLength: number): InferInput['data'] {
  const floats = (): number[] => Array.from({ length: n }, () => next() * 2 - 1);
  const ints = (): number[] => Array.from({ length: n }, () => Math.floor(next() * 100));
  switch (datatype) {
    case 'BOOL':
      return Array.from({ length: n }, () => next() < 0.5);
    case 'BYTES':
      return Array.from({ length: n }, () => Array.from({ length: stringLength }, () => String.fromCharCode(97 + Math.floor(next() * 26))).join(''));
    case 'FP16':
      return float32ToFp16(floats());
    case 'BF16':
      return Uint16Array.from(new Uint32Array(Float32Array.from(floats()).buffer), (x) => x >>> 16);
    case 'FP32':
      return Float32Array.from(floats());
    case 'FP64':
      return Float64Array.from(floats());
    case 'INT64':
      return BigInt64Array.from(ints(), BigInt);
    case 'UINT64':
      return BigUint64Array.from(ints(), BigInt);
    case 'INT8':
      return Int8Array.from(ints());
    case 'INT16':
      return Int16Array.from(ints());
    case 'INT32':
      return Int32Array.from(ints());
    case 'UINT8':
      return Uint8Array.from(ints());
    case 'UINT16':
      return Uint16Array.from(ints());
    case 'UINT32':
      return Uint32Array.from(ints());
  }
}

function datatypeOf(md: ModelMetadata, name: string): Datatype {
  const t = md.inputs.find((x) => x.name === name);
  if (!t || !isDatatype(t.datatype)) throw new InputDataError(`input '${name}': unknown datatype '${t?.datatype ?? '?'}'`);
  return t.datatype;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** One input's values in a JSON step → typed data of `n` elements. */
function fileValues(datatype: Datatype, value: Json | undefined, n: number, where: string): { data: InferInput['data']; shape?: number[] } {
  let shape: number[] | undefined;
  let content: Json | undefined = value;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    if (typeof value['b64'] === 'string') {
      const hint = Array.isArray(value['shape']) ? value['shape'].map(Number) : undefined;
      try {
        const data = decodeRaw(datatype, hint ?? [n], Buffer.from(value['b64'], 'base64'));
        return { data: data as InferInput['data'], ...(hint ? { shape: hint } : {}) };
      } catch (error) {
        throw new InputDataError(`${where}: b64 data does not fit ${datatype} [${(hint ?? [n]).join(',')}]: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    content = value['content'];
    if (Array.isArray(value['shape'])) shape = value['shape'].map(Number);
  }
  if (content === undefined) throw new InputDataError(`${where}: missing (give an array, {"content": […], "shape": […]} or {"b64": "…"})`);
  const flat = (Array.isArray(content) ? (content as unknown[]).flat(Infinity) : [content]) as Json[];
  const want = shape ? count(shape) : n;
  if (flat.length !== want) throw new InputDataError(`${where}: expected ${want} values, got ${flat.length}`);
  const bad = (i: number, kind: string): InputDataError => new InputDataError(`${where}: value ${i} must be ${kind}, got ${JSON.stringify(flat[i])}`);
  const numbers = (): number[] =>
    flat.map((v, i) => {
      if (typeof v !== 'number') throw bad(i, 'a number');
      return v;
    });
  const typed = <T>(kind: 'string' | 'boolean'): T[] =>
    flat.map((v, i) => {
      if (typeof v !== kind) throw bad(i, `a ${kind}`);
      return v as T;
    });
  let data: InferInput['data'];
  if (datatype === 'BYTES') data = typed<string>('string');
  else if (datatype === 'BOOL') data = typed<boolean>('boolean');
  else if (datatype === 'FP16') data = float32ToFp16(numbers());
  else if (datatype === 'BF16') data = Uint16Array.from(new Uint32Array(Float32Array.from(numbers()).buffer), (x) => x >>> 16);
  else if (datatype === 'INT64') data = BigInt64Array.from(numbers(), (x) => BigInt(Math.trunc(x)));
  else if (datatype === 'UINT64') data = BigUint64Array.from(numbers(), (x) => BigInt(Math.trunc(x)));
  else data = numbers();
  return { data, ...(shape ? { shape } : {}) };
}

/** Concatenates row data (typed arrays or arrays) of one datatype. */
function concatRows(datatype: Datatype, rows: readonly InferInput['data'][]): InferInput['data'] {
  if (rows.length === 1) return rows[0] as InferInput['data'];
  if (datatype === 'BYTES' || datatype === 'BOOL' || rows.every((r) => Array.isArray(r))) return rows.flatMap((r) => Array.from(r as ArrayLike<unknown>)) as InferInput['data'];
  const total = rows.reduce((n, r) => n + r.length, 0);
  const first = rows[0] as unknown as { constructor: new (n: number) => { set(a: ArrayLike<unknown>, o: number): void } };
  const out = new first.constructor(total);
  let o = 0;
  for (const r of rows) {
    out.set(r as ArrayLike<unknown>, o);
    o += r.length;
  }
  return out as unknown as InferInput['data'];
}

/**
 * perf_analyzer's JSON input format: {"data": [step, …]} where a step maps
 * input names to a flat or nested array, {"content": […], "shape": […]}, or
 * {"b64": "…"}. For a batching model a step is one batch row, and a request
 * of batch b takes b consecutive steps; otherwise a step is a whole request.
 */
export function setsFromFile(text: string, md: ModelMetadata, maxBatchSize: number, shapes: Readonly<Record<string, readonly number[]>>, batchSize: number, file = 'input data'): InferInput[][] {
  let parsed: Json;
  try {
    parsed = JSON.parse(text) as Json;
  } catch (error) {
    throw new InputDataError(`${file}: not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const steps = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed['data'] : undefined;
  if (!Array.isArray(steps) || steps.length === 0) throw new InputDataError(`${file}: expected {"data": [ {…}, … ]} with at least one step`);
  const batching = maxBatchSize > 0;
  const rowsPerRequest = batching ? batchSize : 1;
  const requests = Math.max(1, Math.floor(steps.length / rowsPerRequest));
  const sets: InferInput[][] = [];
  for (let r = 0; r < requests; r++) {
    const set: InferInput[] = [];
    for (const t of md.inputs) {
      const datatype = datatypeOf(md, t.name);
      const shape = shapes[t.name] ?? [];
      const rowShape = batching ? shape.slice(1) : shape;
      const rows: InferInput['data'][] = [];
      let stepShape: number[] | undefined;
      for (let k = 0; k < rowsPerRequest; k++) {
        const index = (r * rowsPerRequest + k) % steps.length;
        const step = steps[index];
        if (step === null || typeof step !== 'object' || Array.isArray(step)) throw new InputDataError(`${file}: data[${index}] must be an object of input names`);
        const v = fileValues(datatype, step[t.name], count(rowShape), `${file}: data[${index}].${t.name}`);
        if (v.shape !== undefined) stepShape = v.shape;
        rows.push(v.data);
      }
      const full = stepShape !== undefined ? (batching ? [rowsPerRequest, ...stepShape] : stepShape) : shape;
      set.push({ name: t.name, datatype, shape: full, data: concatRows(datatype, rows) } as InferInput);
    }
    sets.push(set);
  }
  return sets;
}

export function planInputs(md: ModelMetadata, maxBatchSize: number, o: InputPlanOptions): InputPlan {
  const shapes = resolveShapes(md, maxBatchSize, o);
  if (o.data.kind === 'file') {
    const path = o.data.path;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new InputDataError(`--input-data ${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
    const sets = setsFromFile(text, md, maxBatchSize, shapes, o.batchSize, path);
    return { batchSize: o.batchSize, shapes, sets, ...(o.cacheHitRatio !== undefined ? { inputsFor: hitRatioInputs(sets, o.cacheHitRatio, 0) } : {}) };
  }
  const pool = o.data.kind === 'zero' ? 1 : (o.poolSize ?? 16);
  const next = mulberry32(o.data.kind === 'random' ? o.data.seed : 0);
  const sets = Array.from({ length: pool }, () =>
    md.inputs.map((t) => {
      const datatype = datatypeOf(md, t.name);
      const shape = shapes[t.name] ?? [];
      const n = count(shape);
      const data = o.data.kind === 'zero' ? zeroData(datatype, n) : randomData(datatype, n, next, o.stringLength ?? 16);
      return { name: t.name, datatype, shape, data } as InferInput;
    }),
  );
  const seed = o.data.kind === 'random' ? o.data.seed : 0;
  return { batchSize: o.batchSize, shapes, sets, ...(o.cacheHitRatio !== undefined ? { inputsFor: hitRatioInputs(sets, o.cacheHitRatio, seed) } : {}) };
}
