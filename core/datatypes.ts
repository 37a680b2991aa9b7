// The one table of tensor datatypes: KServe names, config.pbtxt names,
// ONNX Runtime names and element sizes. Every layer converts through here.

export const DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
  'BF16',
] as const;

/** A KServe v2 tensor datatype name. */
export type Datatype = (typeof DATATYPES)[number];

/** The ONNX Runtime (onnxruntime-common) tensor type names we support. */
export type OrtType =
  | 'bool'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'float16'
  | 'float32'
  | 'float64'
  | 'string'
  | 'bfloat16';

interface DatatypeInfo {
  /** Bytes per element in raw form; 0 for BYTES (variable, length-prefixed). */
  readonly size: number;
  /** Name in config.pbtxt / model_config.proto (`data_type: TYPE_FP32`). */
  readonly configName: string;
  readonly ort: OrtType;
}

const INFO: Readonly<Record<Datatype, DatatypeInfo>> = {
  BOOL: { size: 1, configName: 'TYPE_BOOL', ort: 'bool' },
  UINT8: { size: 1, configName: 'TYPE_UINT8', ort: 'uint8' },
  UINT16: { size: 2, configName: 'TYPE_UINT16', ort: 'uint16' },
  UINT32: { size: 4, configName: 'TYPE_UINT32', ort: 'uint32' },
  UINT64: { size: 8, configName: 'TYPE_UINT64', ort: 'uint64' },
  INT8: { size: 1, configName: 'TYPE_INT8', ort: 'int8' },
  INT16: { size: 2, configName: 'TYPE_INT16', ort: 'int16' },
  INT32: { size: 4, configName: 'TYPE_INT32', ort: 'int32' },
  INT64: { size: 8, configName: 'TYPE_INT64', ort: 'int64' },
  FP16: { size: 2, configName: 'TYPE_FP16', ort: 'float16' },
  FP32: { size: 4, configName: 'TYPE_FP32', ort: 'float32' },
  FP64: { size: 8, configName: 'TYPE_FP64', ort: 'float64' },
  BYTES: { size: 0, configName: 'TYPE_STRING', ort: 'string' },
  BF16: { size: 2, configName: 'TYPE_BF16', ort: 'bfloat16' },
};

const BY_CONFIG_NAME = new Map<string, Datatype>(DATATYPES.map((d) => [INFO[d].configName, d]));
const BY_ORT = new Map<string, Datatype>(DATATYPES.map((d) => [INFO[d].ort, d]));

export function isDatatype(value: string): value is Datatype {
  return Object.hasOwn(INFO, value);
}

/** Bytes per element in raw form; 0 for BYTES. */
export function elementSize(datatype: Datatype): number {
  return INFO[datatype].size;
}

export function configNameOf(datatype: Datatype): string {
  return INFO[datatype].configName;
}

/** `TYPE_FP32` → `FP32`; undefined for unknown names. */
export function datatypeFromConfigName(name: string): Datatype | undefined {
  return BY_CONFIG_NAME.get(name);
}

export function ortTypeOf(datatype: Datatype): OrtType {
  return INFO[datatype].ort;
}

/** ONNX Runtime type name (`float32`) → KServe datatype; undefined if unsupported. */
export function datatypeFromOrtType(ortType: string): Datatype | undefined {
  return BY_ORT.get(ortType);
}
