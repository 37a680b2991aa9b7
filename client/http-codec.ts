// Typed tensors ↔ KServe v2 REST infer bodies: JSON `data`, or Triton's
// binary tensor extension (a JSON header, then each tensor's raw bytes).
import { status as GrpcStatus } from '@grpc/grpc-js';
import { isDatatype } from '../core/datatypes.js';
import { InferenceError } from './errors.js';
import { type InferOptions, InferOutput, InferResult, requestedOutputs, requestParameters } from './inference-client.js';
import { type InferInput, type ParameterValue, encodeRaw, fromJsonValues, isSharedMemoryInput, sharedMemoryParameters, toJsonValues, writtenElsewhere } from './typed-tensors.js';

/** A request body in parts, so tensor bytes are written as they are, never concatenated. */
export interface InferBody {
  readonly parts: readonly Uint8Array[];
  /** Inference-Header-Content-Length: the JSON part's length when binary parts follow. */
  readonly headerLength: number | undefined;
  readonly contentType: string;
}

export function encodeInferRequest(inputs: readonly InferInput[], o: InferOptions, binary: boolean): InferBody {
  // An input in shared memory sends neither data nor binary bytes: its parameters name the region.
  const raw = inputs.map((t) => (binary && !isSharedMemoryInput(t) ? encodeRaw(t) : undefined));
  const outputs = requestedOutputs(o);
  const header = {
    ...(o.id !== undefined ? { id: o.id } : {}),
    parameters: { ...requestParameters(o), ...(binary && outputs === undefined ? { binary_data_output: true } : {}) },
    inputs: inputs.map((t, i) => {
      const bytes = raw[i];
      const shared = isSharedMemoryInput(t);
      return {
        name: t.name,
        shape: t.shape,
        datatype: t.datatype,
        parameters: { ...t.parameters, ...(bytes !== undefined ? { binary_data_size: bytes.byteLength } : {}) },
        ...(binary || shared ? {} : { data: toJsonValues(t) }),
      };
    }),
    ...(outputs !== undefined
      ? {
          outputs: outputs.map(({ name, classes, shared }) => ({
            name,
            // An output written to shared memory takes no binary_data (Triton refuses both).
            parameters: shared ? sharedMemoryParameters(shared) : { binary_data: binary, ...(classes > 0 ? { classification: classes } : {}) },
          })),
        }
      : {}),
  };
  const json = Buffer.from(JSON.stringify(header));
  if (!binary) return { parts: [json], headerLength: undefined, contentType: 'application/json' };
  return { parts: [json, ...raw.filter((b): b is Buffer => b !== undefined)], headerLength: json.byteLength, contentType: 'application/octet-stream' };
}

const bad = (message: string): InferenceError => new InferenceError(GrpcStatus.INTERNAL, `malformed infer answer: ${message}`);

type Json = Record<string, unknown>;

/** An infer answer's body (and its Inference-Header-Content-Length, if any) → the result. */
export function decodeInferResponse(body: Buffer, headerLength: number | undefined): InferResult {
  if (headerLength !== undefined && (!Number.isSafeInteger(headerLength) || headerLength < 0 || headerLength > body.length)) {
    throw bad(`Inference-Header-Content-Length ${headerLength} with a body of ${body.length} bytes`);
  }
  let j: Json;
  try {
    j = JSON.parse(body.subarray(0, headerLength ?? body.length).toString('utf8')) as Json;
  } catch (error) {
    throw bad(`the JSON part does not parse (${String(error)})`);
  }
  let offset = headerLength ?? body.length;
  const outputs = (Array.isArray(j['outputs']) ? (j['outputs'] as Json[]) : []).map((t) => {
    const name = String(t['name']);
    const datatype = String(t['datatype']);
    const shape = Array.isArray(t['shape']) ? t['shape'].map(Number) : [];
    const size = (t['parameters'] as Json | undefined)?.['binary_data_size'];
    if (typeof size === 'number') {
      if (offset + size > body.length) throw bad(`output '${name}': binary_data_size ${size} runs past the end of the body`);
      const raw = body.subarray(offset, offset + size);
      offset += size;
      return new InferOutput(name, datatype, shape, { raw });
    }
    if (!isDatatype(datatype)) throw bad(`output '${name}': unknown datatype '${datatype}'`);
    // Neither data nor binary bytes: written to shared memory (as Triton answers such an output).
    if (t['data'] === undefined && writtenElsewhere(shape)) return new InferOutput(name, datatype, shape, { inSharedMemory: true });
    return new InferOutput(name, datatype, shape, { data: fromJsonValues(datatype, shape, t['data'], name) });
  });
  const parameters: Record<string, ParameterValue> = {};
  for (const [k, v] of Object.entries((j['parameters'] as Json | undefined) ?? {})) {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') parameters[k] = v;
  }
  return new InferResult({
    modelName: String(j['model_name'] ?? ''),
    modelVersion: String(j['model_version'] ?? ''),
    id: String(j['id'] ?? ''),
    parameters,
    outputs,
  });
}
