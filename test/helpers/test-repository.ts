import { fileURLToPath } from 'node:url';
import { type Datatype } from '../../core/datatypes.js';

/** Where the global setup builds the test models (no config.pbtxt files). */
export const TEST_REPOSITORY = fileURLToPath(new URL('../.models/repository', import.meta.url));

/** Models built for every run; mlp_large is left to the benchmarks. */
export const TEST_REPOSITORY_MODELS = [
  'identity_fp32',
  'identity_bool',
  'identity_uint8',
  'identity_uint16',
  'identity_uint32',
  'identity_uint64',
  'identity_int8',
  'identity_int16',
  'identity_int32',
  'identity_int64',
  'identity_fp16',
  'identity_fp64',
  'identity_string',
  'add_sub',
  'string_identity',
  'multi_dtype',
  'fixed_fp32',
  'mlp',
  'simple_cnn',
] as const;

/** The identity model of each datatype ONNX Runtime for Node runs, with its datatype. */
export const IDENTITY_MODELS: ReadonlyArray<readonly [string, Datatype]> = [
  ['identity_bool', 'BOOL'],
  ['identity_uint8', 'UINT8'],
  ['identity_uint16', 'UINT16'],
  ['identity_uint32', 'UINT32'],
  ['identity_uint64', 'UINT64'],
  ['identity_int8', 'INT8'],
  ['identity_int16', 'INT16'],
  ['identity_int32', 'INT32'],
  ['identity_int64', 'INT64'],
  ['identity_fp16', 'FP16'],
  ['identity_fp32', 'FP32'],
  ['identity_fp64', 'FP64'],
  ['identity_string', 'BYTES'],
];
