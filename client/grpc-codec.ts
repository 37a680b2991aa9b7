// Typed tensors ↔ the KServe v2 gRPC messages (ts-proto's types).
import { status as GrpcStatus } from '@grpc/grpc-js';
import { type Datatype, isDatatype } from '../core/datatypes.js';
import {
  type InferParameter,
  InferTensorContents,
  type ModelInferRequest,
  type ModelInferResponse,
  type ModelMetadataResponse,
} from '../proto/gen/inference.js';
import { InferenceError, invalidInput } from './errors.js';
import { type InferOptions, InferOutput, InferResult, type ModelMetadata, requestedOutputs, requestParameters } from './inference-client.js';
import { type InferInput, type ParameterValue, type TensorData, decodeRaw, encodeRaw, isSharedMemoryInput, sharedMemoryParameters, writtenElsewhere } from './typed-tensors.js';

/** raw: `raw_input_contents` (fast, every datatype); contents: the typed `contents` fields (no FP16/BF16). */
export type GrpcInputEncoding = 'raw' | 'contents';

export function toInferParameter(v: ParameterValue): InferParameter {
  if (typeof v === 'string') return { parameterChoice: { $case: 'stringParam', value: v } };
  if (typeof v === 'boolean') return { parameterChoice: { $case: 'boolParam', value: v } };
  if (Number.isSafeInteger(v)) return { parameterChoice: { $case: 'int64Param', value: BigInt(v) } };
  return { parameterChoice: { $case: 'doubleParam', value: v } };
}

export function fromInferParameter(p: InferParameter): ParameterValue | undefined {
  const c = p.parameterChoice;
  if (c === undefined) return undefined;
  return typeof c.value === 'bigint' ? Number(c.value) : c.value;
}

function parametersOf(params: Readonly<Record<string, ParameterValue>> | undefined): Record<string, InferParameter> {
  const out: Record<string, InferParameter> = {};
  for (const [k, v] of Object.entries(params ?? {})) out[k] = toInferParameter(v);
  return out;
}

/** Typed data → the `contents` field that carries it. */
function typedContents(t: InferInput): InferTensorContents {
  // encodeRaw validates the shape and converts plain arrays; decodeRaw gives the typed view back.
  const data = decodeRaw(t.datatype, t.shape, encodeRaw(t), t.name) as TensorData;
  const list = (v: ArrayLike<number>): number[] => Array.from(v);
  switch (t.datatype) {
    case 'BOOL':
      return InferTensorContents.fromPartial({ boolContents: data as boolean[] });
    case 'INT8':
    case 'INT16':
    case 'INT32':
      return InferTensorContents.fromPartial({ intContents: list(data as Int32Array) });
    case 'INT64':
      return InferTensorContents.fromPartial({ int64Contents: Array.from(data as BigInt64Array) });
    case 'UINT8':
    case 'UINT16':
    case 'UINT32':
      return InferTensorContents.fromPartial({ uintContents: list(data as Uint32Array) });
    case 'UINT64':
      return InferTensorContents.fromPartial({ uint64Contents: Array.from(data as BigUint64Array) });
    case 'FP32':
      return InferTensorContents.fromPartial({ fp32Contents: list(data as Float32Array) });
    case 'FP64':
      return InferTensorContents.fromPartial({ fp64Contents: list(data as Float64Array) });
    case 'BYTES':
      return InferTensorContents.fromPartial({ bytesContents: t.data.map((e) => (typeof e === 'string' ? Buffer.from(e, 'utf8') : Buffer.from(e))) });
    case 'FP16':
    case 'BF16':
      throw invalidInput(`input '${t.name}': ${t.datatype} has no typed contents field; use the raw encoding`);
  }
}

export function toModelInferRequest(model: string, inputs: readonly InferInput[], o: InferOptions = {}, encoding: GrpcInputEncoding = 'raw'): ModelInferRequest {
  const raw = encoding === 'raw';
  return {
    modelName: model,
    modelVersion: o.version ?? '',
    id: o.id ?? '',
    parameters: parametersOf(requestParameters(o)),
    inputs: inputs.map((t) => ({
      name: t.name,
      datatype: t.datatype,
      shape: t.shape.map((d) => BigInt(d)),
      parameters: parametersOf(t.parameters),
      ...(raw || isSharedMemoryInput(t) ? {} : { contents: typedContents(t) }),
    })),
    outputs: (requestedOutputs(o) ?? []).map(({ name, classes, shared }) => ({
      name,
      parameters: {
        ...(classes > 0 ? { classification: { parameterChoice: { $case: 'int64Param' as const, value: BigInt(classes) } } } : {}),
        ...(shared ? parametersOf(sharedMemoryParameters(shared)) : {}),
      },
    })),
    // Triton's indexing: one entry per input not in shared memory.
    rawInputContents: raw ? inputs.filter((t) => !isSharedMemoryInput(t)).map(encodeRaw) : [],
  };
}

/** Typed `contents` of an answer (servers that do not answer raw) → the typed data. */
function fromContents(datatype: Datatype, c: InferTensorContents, name: string): TensorData {
  switch (datatype) {
    case 'BOOL':
      return c.boolContents;
    case 'INT8':
      return Int8Array.from(c.intContents);
    case 'INT16':
      return Int16Array.from(c.intContents);
    case 'INT32':
      return Int32Array.from(c.intContents);
    case 'INT64':
      return BigInt64Array.from(c.int64Contents);
    case 'UINT8':
      return Uint8Array.from(c.uintContents);
    case 'UINT16':
      return Uint16Array.from(c.uintContents);
    case 'UINT32':
      return Uint32Array.from(c.uintContents);
    case 'UINT64':
      return BigUint64Array.from(c.uint64Contents);
    case 'FP32':
      return Float32Array.from(c.fp32Contents);
    case 'FP64':
      return Float64Array.from(c.fp64Contents);
    case 'BYTES':
      return c.bytesContents.map((b) => b.toString('utf8'));
    case 'FP16':
    case 'BF16':
      throw new InferenceError(GrpcStatus.UNKNOWN, `output '${name}': ${datatype} came in typed contents, which cannot carry it`);
  }
}

export function fromModelInferResponse(r: ModelInferResponse): InferResult {
  const params: Record<string, ParameterValue> = {};
  for (const [k, p] of Object.entries(r.parameters)) {
    const v = fromInferParameter(p);
    if (v !== undefined) params[k] = v;
  }
  const outputs = r.outputs.map((o, i) => {
    const shape = o.shape.map(Number);
    const raw = r.rawOutputContents[i];
    if (raw !== undefined && raw.byteLength === 0 && writtenElsewhere(shape)) return new InferOutput(o.name, o.datatype, shape, { inSharedMemory: true });
    if (raw !== undefined) return new InferOutput(o.name, o.datatype, shape, { raw });
    if (!isDatatype(o.datatype)) throw new InferenceError(GrpcStatus.UNKNOWN, `output '${o.name}': the server sent an unknown datatype '${o.datatype}'`);
    return new InferOutput(o.name, o.datatype, shape, { data: fromContents(o.datatype, o.contents ?? InferTensorContents.fromPartial({}), o.name) });
  });
  return new InferResult({ modelName: r.modelName, modelVersion: r.modelVersion, id: r.id, parameters: params, outputs });
}

export function fromModelMetadata(m: ModelMetadataResponse): ModelMetadata {
  const tensor = (t: { name: string; datatype: string; shape: bigint[] }): ModelMetadata['inputs'][number] => ({ name: t.name, datatype: t.datatype, shape: t.shape.map(Number) });
  return { name: m.name, versions: m.versions, platform: m.platform, inputs: m.inputs.map(tensor), outputs: m.outputs.map(tensor) };
}
