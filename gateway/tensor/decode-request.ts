// Step 3 of a request: ModelInferRequest inputs → Tensors (raw bytes), with
// every check that needs only the request itself. Checks against the model
// are in gateway/validate-request.ts.
import { DATATYPES, elementSize, isDatatype, type Datatype } from '../../core/datatypes.js';
import { invalidArgument } from '../../core/errors.js';
import { type Tensor } from '../../core/tensor.js';
import { type ModelInferRequest, type ModelInferRequest_InferInputTensor } from '../../proto/gen/inference.js';
import { countBytesElements } from './bytes-elements.js';
import { typedContentsToRaw } from './typed-contents.js';

const MAX_DIM = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Decodes every input of a request. Raw inputs keep `data` as a view of the
 * received buffer (no copy); typed contents are converted once. Throws
 * INVALID_ARGUMENT naming the model and the input.
 */
export function decodeInputs(request: ModelInferRequest, modelName: string): Tensor[] {
  const { inputs, rawInputContents: raw } = request;
  const model = `model '${modelName}'`;
  if (raw.length !== 0 && raw.length !== inputs.length) {
    throw invalidArgument(
      `${model}: raw_input_contents has ${raw.length} entries for ${inputs.length} inputs; send one per input, in input order`,
    );
  }
  // A Set only when it can matter; most models have one input.
  const seen = inputs.length > 1 ? new Set<string>() : undefined;
  const tensors: Tensor[] = [];
  let index = 0;
  for (const input of inputs) {
    if (input.name === '') throw invalidArgument(`${model}: input ${index} has no name`);
    if (seen !== undefined) {
      if (seen.has(input.name)) throw invalidArgument(`${model}: input '${input.name}' is given more than once`);
      seen.add(input.name);
    }
    tensors.push(decodeInput(input, raw[index], index, `${model}: input '${input.name}'`));
    index++;
  }
  return tensors;
}

/** An input's name, datatype, shape and element count, checked; its data is for the caller. */
export function tensorHead(input: ModelInferRequest_InferInputTensor, label: string): { name: string; datatype: Datatype; shape: number[]; count: number } {
  const { name, datatype } = input;
  if (!isDatatype(datatype)) {
    throw invalidArgument(`${label}: unknown datatype '${datatype}' (expected one of ${DATATYPES.join(', ')})`);
  }
  const shape = shapeFromProto(input.shape, label);
  return { name, datatype, shape, count: checkedElementCount(shape, label) };
}

/** One input not in shared memory (shared-memory-tensors.ts reads those). */
export function decodeInput(
  input: ModelInferRequest_InferInputTensor,
  raw: Buffer | undefined,
  index: number,
  label: string,
): Tensor {
  const { name, datatype, shape, count } = tensorHead(input, label);
  if (raw !== undefined) {
    if (input.contents !== undefined) {
      throw invalidArgument(`${label}: has both contents and raw_input_contents; send only one`);
    }
    // A plain Uint8Array view: no copy, and standard slice/subarray semantics downstream.
    const data = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    checkRawSize(datatype, shape, count, data, label, `raw_input_contents[${index}]`);
    return { name, datatype, shape, data };
  }
  if (input.contents === undefined) {
    throw invalidArgument(`${label}: has no data; send contents or raw_input_contents`);
  }
  return { name, datatype, shape, data: typedContentsToRaw(input.contents, datatype, label, count) };
}

/**
 * Request shape (int64) → numbers. Every dimension must be a concrete size
 * (≥ 0; -1 belongs in model metadata, not requests) and a safe integer.
 */
export function shapeFromProto(shape: readonly bigint[], label: string): number[] {
  const dims: number[] = [];
  for (const d of shape) {
    if (d < 0n || d > MAX_DIM) {
      throw invalidArgument(
        `${label}: shape [${shape.join(',')}] has invalid dimension ${d} (expected an integer from 0 to 2^53-1)`,
      );
    }
    dims.push(Number(d));
  }
  return dims;
}

/**
 * Element count of a shape, rejecting products past 2^53 (where doubles stop
 * being exact). Computed only, never allocated: the data size checks that
 * follow bound it by what the client actually sent.
 */
export function checkedElementCount(shape: readonly number[], label: string): number {
  if (shape.includes(0)) return 0;
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) {
      throw invalidArgument(`${label}: shape [${shape.join(',')}] has more than 2^53 elements`);
    }
  }
  return n;
}

/**
 * Checks that raw bytes hold exactly `count` elements of `datatype`: byte size
 * for fixed-size types (no per-element work), and for BYTES that there are
 * `count` length-prefixed elements covering the buffer exactly (one walk).
 * `field` names where the bytes came from (`raw_input_contents[0]`).
 */
export function checkRawSize(
  datatype: Datatype,
  shape: readonly number[],
  count: number,
  data: Uint8Array,
  label: string,
  field: string,
): void {
  if (datatype === 'BYTES') {
    // Each element needs at least its 4-byte prefix: reject impossible counts without walking.
    const got = count * 4 > data.byteLength ? undefined : countBytesElements(data, `${label}: ${field}`);
    if (got !== count) {
      const found = got === undefined ? `only ${data.byteLength} bytes` : `${got} elements`;
      throw invalidArgument(`${label}: shape [${shape.join(',')}] needs ${count} BYTES elements, got ${found} in ${field}`);
    }
    return;
  }
  const expected = count * elementSize(datatype);
  if (expected !== data.byteLength) {
    throw invalidArgument(
      `${label}: shape [${shape.join(',')}] of ${datatype} needs ${expected} bytes, got ${data.byteLength} in ${field}`,
    );
  }
}
