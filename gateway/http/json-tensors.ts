// KServe v2 REST tensors: JSON `data` (flat or nested) and Triton's binary
// tensor extension, to and from the raw little-endian Tensor every other
// layer uses. Reuses the gRPC path's checks so both protocols reject alike.
import { DATATYPES, isDatatype, type Datatype } from '../../core/datatypes.js';
import { invalidArgument } from '../../core/errors.js';
import { type Tensor } from '../../core/tensor.js';
import { type InferTensorContents } from '../../proto/gen/inference.js';
import { CLASSIFICATION_PARAMETER, classCountOf } from '../inference/classification.js';
import { namesSharedMemory, REGION, type SharedMemoryRef, sharedMemoryRefOf, type SharedOutputRequest } from '../shared-memory/shared-memory-tensors.js';
import { type InferParameterValue, type InferRequest, type InferResult } from '../inference/infer-request.js';
import { parseClientJson } from '../parse-json.js';
import { checkedElementCount, checkRawSize } from '../tensor/decode-request.js';
import { emptyContents, rawToTypedContents, typedContentsToRaw, typedFieldOf } from '../tensor/typed-contents.js';

/** The response header that says how long the JSON part of a binary body is. */
export const HEADER_LENGTH = 'inference-header-content-length';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const isObject = (v: Json | undefined): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A parsed infer request plus which outputs the client wants in binary form. */
export interface HttpInferRequest {
  readonly request: InferRequest;
  /** Request-level `binary_data_output`: every output binary unless it says otherwise. */
  readonly binaryDefault: boolean;
  /** Per-output `parameters.binary_data`, by output name. */
  readonly binaryOutputs: ReadonlyMap<string, boolean>;
  /** Inputs (by index) whose bytes are in shared memory, still to read: their tensors' data is empty. */
  readonly sharedInputs?: ReadonlyMap<number, SharedMemoryRef> | undefined;
  /** Requested outputs that name a shared memory region (checked against the regions by the caller). */
  readonly sharedOutputs?: readonly SharedOutputRequest[] | undefined;
}

/** The answer's outputs written to shared memory: no data in the answer. */
export interface SharedOutputNames {
  readonly sharedOutputNames?: ReadonlySet<string> | undefined;
}

function parseJson(text: Buffer): JsonObject {
  const value = parseClientJson(text, 'the request JSON') as Json;
  if (!isObject(value)) throw invalidArgument('the request JSON must be an object');
  return value;
}

/** `parameters` object → plain values; nested objects and arrays are not KServe parameters. */
function parameters(value: Json | undefined, label: string): Record<string, InferParameterValue> {
  if (value === undefined || value === null) return {};
  if (!isObject(value)) throw invalidArgument(`${label}: 'parameters' must be an object`);
  const out: Record<string, InferParameterValue> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'boolean' && typeof v !== 'number' && typeof v !== 'string') {
      throw invalidArgument(`${label}: parameter '${k}' must be a boolean, number or string`);
    }
    out[k] = v;
  }
  return out;
}

function str(value: Json | undefined, what: string, fallback?: string): string {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'string') throw invalidArgument(`${what} must be a string`);
  return value;
}

function shapeOf(value: Json | undefined, label: string): number[] {
  if (!Array.isArray(value)) throw invalidArgument(`${label}: 'shape' must be an array of integers`);
  return value.map((d) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw invalidArgument(`${label}: shape ${JSON.stringify(value)} has invalid dimension ${JSON.stringify(d)} (expected an integer from 0 to 2^53-1)`);
    }
    return d;
  });
}

/** Flattens nested `data` arrays in row-major order (Triton accepts both forms). */
export function flattenData(data: Json, out: Json[] = []): Json[] {
  if (Array.isArray(data)) for (const d of data) flattenData(d, out);
  else out.push(data);
  return out;
}

/** JSON values → typed contents → raw bytes, with the typed path's range checks. */
export function jsonToRaw(values: readonly Json[], datatype: Datatype, label: string): Uint8Array {
  const field = typedFieldOf(datatype);
  if (field === undefined) {
    throw invalidArgument(`${label}: ${datatype} cannot be sent as JSON; send it in binary with parameters.binary_data_size`);
  }
  const contents: InferTensorContents = emptyContents();
  const bad = (v: Json, i: number, want: string): never => {
    throw invalidArgument(`${label}: data[${i}] is ${JSON.stringify(v)}, expected ${want} for ${datatype}`);
  };
  values.forEach((v, i) => {
    switch (field) {
      case 'boolContents':
        if (typeof v !== 'boolean') bad(v, i, 'true or false');
        contents.boolContents.push(v as boolean);
        break;
      case 'bytesContents':
        if (typeof v !== 'string') bad(v, i, 'a string');
        contents.bytesContents.push(Buffer.from(v as string, 'utf8'));
        break;
      case 'int64Contents':
      case 'uint64Contents':
        // JSON.parse gives doubles: beyond 2^53 the value is already changed.
        if (typeof v !== 'number' || !Number.isSafeInteger(v)) bad(v, i, 'an integer within ±2^53 (send larger values in binary)');
        contents[field].push(BigInt(v as number));
        break;
      default:
        if (typeof v !== 'number') bad(v, i, 'a number');
        contents[field].push(v as number);
    }
  });
  return typedContentsToRaw(contents, datatype, label);
}

function decodeInput(input: Json, index: number, model: string, binary: { body: Buffer; offset: number }, shared: { refs?: Map<number, SharedMemoryRef> }): Tensor {
  if (!isObject(input)) throw invalidArgument(`model '${model}': inputs[${index}] must be an object`);
  const name = str(input['name'], `model '${model}': inputs[${index}].name`);
  if (name === '') throw invalidArgument(`model '${model}': input ${index} has no name`);
  const label = `model '${model}': input '${name}'`;
  const datatype = str(input['datatype'], `${label}: 'datatype'`);
  if (!isDatatype(datatype)) {
    throw invalidArgument(`${label}: unknown datatype '${datatype}' (expected one of ${DATATYPES.join(', ')})`);
  }
  const shape = shapeOf(input['shape'], label);
  const count = checkedElementCount(shape, label);
  const params = isObject(input['parameters']) ? input['parameters'] : {};
  const ref = namesSharedMemory(params) ? sharedMemoryRefOf((n) => params[n], label) : undefined;
  if (ref !== undefined) {
    if (input['data'] !== undefined || params['binary_data_size'] !== undefined) {
      throw invalidArgument(`${label}: has '${REGION}' and data ('data' or binary_data_size); send only one`);
    }
    (shared.refs ??= new Map()).set(index, ref);
    return { name, datatype, shape, data: new Uint8Array(0) };
  }
  const size = params['binary_data_size'];
  if (size !== undefined) {
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw invalidArgument(`${label}: binary_data_size must be a non-negative integer`);
    }
    if (input['data'] !== undefined) throw invalidArgument(`${label}: has both 'data' and binary_data_size; send only one`);
    if (binary.offset + size > binary.body.byteLength) {
      throw invalidArgument(`${label}: binary_data_size ${size} runs past the end of the request body`);
    }
    const data = new Uint8Array(binary.body.buffer, binary.body.byteOffset + binary.offset, size);
    binary.offset += size;
    checkRawSize(datatype, shape, count, data, label, 'its binary data');
    return { name, datatype, shape, data };
  }
  const data = input['data'];
  if (data === undefined) throw invalidArgument(`${label}: has no data; send 'data' or binary_data_size`);
  const flat = flattenData(data);
  if (flat.length !== count) {
    throw invalidArgument(`${label}: shape [${shape.join(',')}] needs ${count} elements, got ${flat.length} in 'data'`);
  }
  return { name, datatype, shape, data: jsonToRaw(flat, datatype, label) };
}

/**
 * Decodes a POST .../infer body. `headerLength` is Inference-Header-Content-Length
 * (undefined: the body is all JSON); binary inputs follow the JSON in input order.
 */
export function decodeInferRequest(
  body: Buffer,
  headerLength: number | undefined,
  modelName: string,
  modelVersion: string,
): HttpInferRequest {
  if (headerLength !== undefined && headerLength > body.byteLength) {
    throw invalidArgument(`${HEADER_LENGTH} is ${headerLength} but the body has only ${body.byteLength} bytes`);
  }
  const json = parseJson(headerLength === undefined ? body : body.subarray(0, headerLength));
  const binary = { body: headerLength === undefined ? Buffer.alloc(0) : body.subarray(headerLength), offset: 0 };
  const model = `model '${modelName}'`;
  const rawInputs = json['inputs'];
  if (!Array.isArray(rawInputs)) throw invalidArgument(`${model}: the request needs an 'inputs' array`);
  const seen = new Set<string>();
  const shared: { refs?: Map<number, SharedMemoryRef> } = {};
  const inputs = rawInputs.map((input, i) => {
    const t = decodeInput(input, i, modelName, binary, shared);
    if (seen.has(t.name)) throw invalidArgument(`${model}: input '${t.name}' is given more than once`);
    seen.add(t.name);
    return t;
  });
  if (binary.offset !== binary.body.byteLength) {
    throw invalidArgument(
      `${model}: the body has ${binary.body.byteLength} bytes of binary data but the inputs' binary_data_size add up to ${binary.offset}`,
    );
  }
  const requestParams = parameters(json['parameters'], model);
  const binaryOutputs = new Map<string, boolean>();
  const outputs: string[] = [];
  let classifications: Map<string, number> | undefined;
  let sharedOutputs: SharedOutputRequest[] | undefined;
  const rawOutputs = json['outputs'];
  if (rawOutputs !== undefined) {
    if (!Array.isArray(rawOutputs)) throw invalidArgument(`${model}: 'outputs' must be an array`);
    rawOutputs.forEach((o, i) => {
      if (!isObject(o)) throw invalidArgument(`${model}: outputs[${i}] must be an object`);
      const name = str(o['name'], `${model}: outputs[${i}].name`);
      const p = parameters(o['parameters'], `${model}: output '${name}'`);
      if (p['binary_data'] !== undefined) binaryOutputs.set(name, p['binary_data'] === true);
      const ref = namesSharedMemory(p) ? sharedMemoryRefOf((n) => p[n], `${model}: output '${name}'`) : undefined;
      if (ref !== undefined) (sharedOutputs ??= []).push({ name, ref, classified: p[CLASSIFICATION_PARAMETER] !== undefined, binary: p['binary_data'] === true });
      if (p[CLASSIFICATION_PARAMETER] !== undefined) {
        const k = classCountOf(p[CLASSIFICATION_PARAMETER], `${model}: output '${name}'`);
        if (k > 0) (classifications ??= new Map()).set(name, k);
      }
      outputs.push(name);
    });
  }
  const { binary_data_output: binaryDefault, ...rest } = requestParams;
  return {
    request: {
      modelName,
      modelVersion,
      id: str(json['id'], `${model}: 'id'`, ''),
      inputs,
      outputs,
      parameters: rest,
      classifications,
    },
    binaryDefault: binaryDefault === true,
    binaryOutputs,
    sharedInputs: shared.refs,
    sharedOutputs,
  };
}

/** Raw bytes → JSON text of the `data` array; 64-bit integers exactly, BYTES as UTF-8 strings. */
export function rawToJsonData(data: Uint8Array, datatype: Datatype, label: string): string {
  const field = typedFieldOf(datatype);
  if (field === undefined) {
    throw invalidArgument(`${label}: ${datatype} cannot be sent as JSON; ask for it with parameters.binary_data: true`);
  }
  const c = rawToTypedContents(data, datatype, label);
  switch (field) {
    case 'bytesContents':
      return `[${c.bytesContents.map((b) => JSON.stringify(b.toString('utf8'))).join(',')}]`;
    case 'int64Contents':
    case 'uint64Contents':
      return `[${c[field].join(',')}]`;
    default:
      return JSON.stringify(c[field]);
  }
}

/** An encoded infer response: JSON text, plus the binary parts that follow it. */
export interface EncodedInferResponse {
  readonly json: string;
  readonly binary: readonly Uint8Array[];
}

export function encodeInferResponse(result: InferResult, wants: Omit<HttpInferRequest, 'request'> & SharedOutputNames): EncodedInferResponse {
  const binary: Uint8Array[] = [];
  const outputs = result.outputs.map((t) => {
    const head = `"name":${JSON.stringify(t.name)},"datatype":${JSON.stringify(t.datatype)},"shape":${JSON.stringify(t.shape)}`;
    // Written to its shared memory region: the answer says what it is, not what it holds (as Triton's).
    if (wants.sharedOutputNames?.has(t.name) === true) return `{${head}}`;
    if (wants.binaryOutputs.get(t.name) ?? wants.binaryDefault) {
      binary.push(t.data);
      return `{${head},"parameters":{"binary_data_size":${t.data.byteLength}}}`;
    }
    return `{${head},"data":${rawToJsonData(t.data, t.datatype, `model '${result.modelName}': output '${t.name}'`)}}`;
  });
  const id = result.id === '' ? '' : `,"id":${JSON.stringify(result.id)}`;
  const json =
    `{"model_name":${JSON.stringify(result.modelName)},"model_version":${JSON.stringify(result.modelVersion)}${id},` +
    `"outputs":[${outputs.join(',')}]}`;
  return { json, binary };
}
