import { fileURLToPath } from 'node:url';

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
