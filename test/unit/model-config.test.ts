import { describe, expect, it } from 'vitest';
import { ConfigError, dynamicBatchingIn, parseModelConfig } from '../../models/config/model-config.js';
import { PbtxtSyntaxError } from '../../models/config/pbtxt.js';
import {
  DataType,
  ModelInput_Format,
  ModelInstanceGroup_Kind,
  ModelOptimizationPolicy_ModelPriority,
  ModelQueuePolicy_TimeoutAction,
} from '../../proto/gen/model_config.js';

const FILE = 'models/foo/config.pbtxt';

const TRITON_CONFIG = `
# A config as Triton users write it.
name: "foo"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, -1, -1 ]
  },
  {
    name: "MASK"
    data_type: TYPE_BOOL
    dims: [ 1 ]
    reshape: { shape: [ ] }
    optional: true
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    label_filename: "labels.txt"
  }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  priority_levels: 2
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000 }
  priority_queue_policy { key: 1 value { max_queue_size: 5 } }
}
instance_group [ { count: 2 kind: KIND_GPU gpus: [ 0, 1 ] } ]
version_policy: { specific { versions: [ 1, 3 ] } }
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
`;

function configError(text: string, file = FILE): ConfigError {
  try {
    parseModelConfig(text, file);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(text)}`);
}

describe('parseModelConfig: a realistic Triton config', () => {
  const { config, warnings, present } = parseModelConfig(TRITON_CONFIG, FILE);

  it('reads the top-level fields', () => {
    expect(config.name).toBe('foo');
    expect(config.platform).toBe('onnxruntime_onnx');
    expect(config.backend).toBe('');
    expect(config.maxBatchSize).toBe(8);
    expect(warnings).toEqual([]);
  });

  it('reads inputs and outputs with their enums, dims and reshape', () => {
    expect(config.input).toEqual([
      {
        name: 'INPUT0',
        dataType: DataType.TYPE_FP32,
        format: ModelInput_Format.FORMAT_NCHW,
        dims: [3n, -1n, -1n],
        reshape: undefined,
        isShapeTensor: false,
        allowRaggedBatch: false,
        optional: false,
      },
      {
        name: 'MASK',
        dataType: DataType.TYPE_BOOL,
        format: ModelInput_Format.FORMAT_NONE,
        dims: [1n],
        reshape: { shape: [] },
        isShapeTensor: false,
        allowRaggedBatch: false,
        optional: true,
      },
    ]);
    expect(config.output).toEqual([
      { name: 'OUTPUT0', dataType: DataType.TYPE_FP32, dims: [1000n], reshape: undefined, labelFilename: 'labels.txt', isShapeTensor: false },
    ]);
  });

  it('reads dynamic_batching with its queue policies and the uint64 map', () => {
    expect(config.schedulingChoice?.$case).toBe('dynamicBatching');
    const batching = dynamicBatchingIn(config);
    expect(batching).toEqual({
      preferredBatchSize: [4, 8],
      maxQueueDelayMicroseconds: 100n,
      preserveOrdering: false,
      priorityLevels: 2n,
      defaultPriorityLevel: 0n,
      defaultQueuePolicy: {
        timeoutAction: ModelQueuePolicy_TimeoutAction.DELAY,
        defaultTimeoutMicroseconds: 1000n,
        allowTimeoutOverride: false,
        maxQueueSize: 0,
      },
      priorityQueuePolicy: new Map([
        [1n, { timeoutAction: ModelQueuePolicy_TimeoutAction.REJECT, defaultTimeoutMicroseconds: 0n, allowTimeoutOverride: false, maxQueueSize: 5 }],
      ]),
    });
  });

  it('reads instance groups, the version policy oneof and parameters', () => {
    expect(config.instanceGroup).toEqual([
      { name: '', kind: ModelInstanceGroup_Kind.KIND_GPU, count: 2, gpus: [0, 1], profile: [], passive: false, hostPolicy: '' },
    ]);
    expect(config.versionPolicy).toEqual({ policyChoice: { $case: 'specific', value: { versions: [1n, 3n] } } });
    expect(config.parameters).toEqual({ intra_op_thread_count: { stringValue: '1' } });
    expect(config.metricTags).toEqual({});
    expect(config.optimization).toBeUndefined();
  });

  it('records which fields the file writes', () => {
    for (const path of ['max_batch_size', 'input[1].reshape', 'input[1].optional', 'dynamic_batching.priority_levels', 'instance_group[0].gpus']) {
      expect(present.has(path), path).toBe(true);
    }
    for (const path of ['backend', 'input[0].reshape', 'dynamic_batching.default_priority_level', 'optimization']) {
      expect(present.has(path), path).toBe(false);
    }
  });
});

describe('parseModelConfig: the rest of the schema', () => {
  it('gives proto defaults for an empty file, and records nothing as present', () => {
    const { config, warnings, present } = parseModelConfig('# nothing here\n', FILE);
    expect(config).toEqual({
      name: '',
      platform: '',
      backend: '',
      runtime: '',
      versionPolicy: undefined,
      maxBatchSize: 0,
      input: [],
      output: [],
      optimization: undefined,
      schedulingChoice: undefined,
      instanceGroup: [],
      defaultModelFilename: '',
      metricTags: {},
      parameters: {},
      modelWarmup: [],
      batchInput: [],
      batchOutput: [],
    });
    expect(warnings).toEqual([]);
    expect(present.size).toBe(0);
  });

  it('tells max_batch_size: 0 from no max_batch_size', () => {
    expect(parseModelConfig('max_batch_size: 0', FILE).present.has('max_batch_size')).toBe(true);
    expect(parseModelConfig('name: "foo"', FILE).present.has('max_batch_size')).toBe(false);
  });

  it('reads optimization, metric_tags, backend, runtime and default_model_filename', () => {
    const { config } = parseModelConfig(
      `backend: "onnxruntime" runtime: "r" default_model_filename: "net.onnx"
       metric_tags [ { key: "team" value: "vision" }, { key: "tier" value: "gold" } ]
       optimization {
         graph { level: -1 }
         priority: PRIORITY_MAX
         execution_accelerators {
           gpu_execution_accelerator: [ { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ]
           cpu_execution_accelerator: [ { name: "openvino" } ]
         }
         input_pinned_memory { enable: false }
         output_pinned_memory: { enable: True }
       }`,
      FILE,
    );
    expect(config.backend).toBe('onnxruntime');
    expect(config.runtime).toBe('r');
    expect(config.defaultModelFilename).toBe('net.onnx');
    expect(config.metricTags).toEqual({ team: 'vision', tier: 'gold' });
    expect(config.optimization).toEqual({
      graph: { level: -1 },
      priority: ModelOptimizationPolicy_ModelPriority.PRIORITY_MAX,
      executionAccelerators: {
        gpuExecutionAccelerator: [{ name: 'tensorrt', parameters: { precision_mode: 'FP16' } }],
        cpuExecutionAccelerator: [{ name: 'openvino', parameters: {} }],
      },
      inputPinnedMemory: { enable: false },
      outputPinnedMemory: { enable: true },
    });
  });

  it('reads version_policy latest and all', () => {
    expect(parseModelConfig('version_policy: { latest { num_versions: 2 } }', FILE).config.versionPolicy).toEqual({
      policyChoice: { $case: 'latest', value: { numVersions: 2 } },
    });
    expect(parseModelConfig('version_policy { latest {} }', FILE).config.versionPolicy).toEqual({
      policyChoice: { $case: 'latest', value: { numVersions: 1 } },
    });
    expect(parseModelConfig('version_policy: { all {} }', FILE).config.versionPolicy).toEqual({
      policyChoice: { $case: 'all', value: {} },
    });
    expect(parseModelConfig('version_policy {}', FILE).config.versionPolicy).toEqual({});
  });

  it('accepts enums by number, integers in hex and octal, and protobuf boolean spellings', () => {
    const { config } = parseModelConfig(
      'max_batch_size: 0x10 instance_group { kind: 2 count: 010 passive: t } input { name: "a" optional: 1 is_shape_tensor: False }',
      FILE,
    );
    expect(config.maxBatchSize).toBe(16);
    expect(config.instanceGroup[0]).toMatchObject({ kind: ModelInstanceGroup_Kind.KIND_CPU, count: 8, passive: true });
    expect(config.input[0]).toMatchObject({ optional: true, isShapeTensor: false });
  });

  it('reads uint64 values beyond 2^53 exactly', () => {
    const { config } = parseModelConfig('dynamic_batching { max_queue_delay_microseconds: 18446744073709551615 }', FILE);
    expect(dynamicBatchingIn(config)?.maxQueueDelayMicroseconds).toBe(2n ** 64n - 1n);
  });

  it('accepts Triton fields Fabriek ignores, with a warning naming file, field and position', () => {
    const { config, warnings } = parseModelConfig(
      'name: "foo"\nmodel_operations { op_library_filename: "x" }\nresponse_cache { enable: true }\ninstance_group { count: 1 rate_limiter { } }\noptimization { cuda { graphs: true } }',
      FILE,
    );
    expect(config.name).toBe('foo');
    // response_cache is read since the response cache exists (gateway/cache).
    expect(config.responseCache).toEqual({ enable: true });
    expect(warnings).toEqual([
      'models/foo/config.pbtxt: model_operations: ignored: Fabriek does not implement it (line 2, column 1)',
      'models/foo/config.pbtxt: instance_group[0].rate_limiter: ignored: Fabriek does not implement it (line 4, column 27)',
      'models/foo/config.pbtxt: optimization.cuda: ignored: applies to other backends only (line 5, column 16)',
    ]);
  });

  it('reads response_cache { enable } and refuses a field it does not have', () => {
    expect(parseModelConfig('response_cache { enable: false }', FILE).config.responseCache).toEqual({ enable: false });
    expect(parseModelConfig('name: "x"', FILE).config.responseCache).toBeUndefined();
    expect(() => parseModelConfig('response_cache { enabled: true }', FILE)).toThrow(/response_cache\.enabled/);
  });

  it('warns once per ignored field, and keeps the last value of a repeated map key', () => {
    const { config, warnings } = parseModelConfig(
      'model_operations { op_library_filename: "a" } model_operations { op_library_filename: "b" }\nparameters { key: "k" value { string_value: "1" } }\nparameters { key: "k" value { string_value: "2" } }',
      FILE,
    );
    expect(config.parameters).toEqual({ k: { stringValue: '2' } });
    expect(warnings).toEqual([
      'models/foo/config.pbtxt: model_operations: ignored: Fabriek does not implement it (line 1, column 1)',
      'models/foo/config.pbtxt: parameters[1]: key "k" is set more than once; the last value is used (line 3, column 12)',
    ]);
  });
});

describe('parseModelConfig: errors name file, field and position', () => {
  it('matches the documented form exactly', () => {
    const error = configError('dynamic_batching {\n  max_queue_delay_microseconds: "abc"\n}');
    expect(error.message).toBe(
      'models/foo/config.pbtxt: dynamic_batching.max_queue_delay_microseconds: expected a non-negative integer, got "abc" (line 2, column 33)',
    );
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('ConfigError');
    expect(error.code).toBe('ERR_MODEL_CONFIG');
    expect(error.file).toBe(FILE);
    expect(error.field).toBe('dynamic_batching.max_queue_delay_microseconds');
    expect(error.reason).toBe('expected a non-negative integer, got "abc"');
    expect(error.position).toEqual({ line: 2, column: 33 });
  });

  const cases: [string, string, string, string][] = [
    // [name, text, field, reason]
    ['unknown top-level field', 'name: "x"\nmax_batch: 4', 'max_batch',
      'unknown field; expected one of dynamic_batching, sequence_batching, ensemble_scheduling, name, platform, backend, runtime, version_policy, max_batch_size, input, output, optimization, instance_group, default_model_filename, metric_tags, parameters, model_warmup, batch_input, batch_output, response_cache'],
    ['unknown nested field', 'dynamic_batching { max_queue_delay: 5 }', 'dynamic_batching.max_queue_delay',
      'unknown field; expected one of priority_levels, preferred_batch_size, max_queue_delay_microseconds, preserve_ordering, default_priority_level, default_queue_policy, priority_queue_policy'],
    ['unknown field in a list item', 'input [ { name: "a" }, { nmae: "b" } ]', 'input[1].nmae',
      'unknown field; expected one of name, data_type, format, dims, reshape, is_shape_tensor, allow_ragged_batch, optional'],
    ['wrong enum value', 'instance_group [ { kind: KIND_TPU } ]', 'instance_group[0].kind',
      'expected one of KIND_AUTO, KIND_GPU, KIND_CPU, KIND_MODEL, got KIND_TPU'],
    ['KServe datatype name instead of the config name', 'input { name: "a" data_type: FP32 }', 'input[0].data_type',
      'expected one of TYPE_INVALID, TYPE_BOOL, TYPE_UINT8, TYPE_UINT16, TYPE_UINT32, TYPE_UINT64, TYPE_INT8, TYPE_INT16, TYPE_INT32, TYPE_INT64, TYPE_FP16, TYPE_FP32, TYPE_FP64, TYPE_STRING, TYPE_BF16, got FP32'],
    ['enum written as a string', 'dynamic_batching { default_queue_policy { timeout_action: "DELAY" } }',
      'dynamic_batching.default_queue_policy.timeout_action', 'expected one of REJECT, DELAY, got "DELAY"'],
    ['enum number out of range', 'instance_group { kind: 7 }', 'instance_group[0].kind', 'expected one of KIND_AUTO, KIND_GPU, KIND_CPU, KIND_MODEL, got 7'],
    ['negative max_batch_size', 'max_batch_size: -1', 'max_batch_size', 'expected a non-negative integer up to 2147483647, got -1'],
    ['int32 overflow', 'max_batch_size: 3000000000', 'max_batch_size', 'expected a non-negative integer up to 2147483647, got 3000000000'],
    ['float for an integer', 'max_batch_size: 1.5', 'max_batch_size', 'expected a non-negative integer up to 2147483647, got 1.5'],
    ['uint64 overflow', 'dynamic_batching { priority_levels: 18446744073709551616 }', 'dynamic_batching.priority_levels',
      'expected a non-negative integer, got 18446744073709551616'],
    ['string for an integer', 'max_batch_size: "8"', 'max_batch_size', 'expected a non-negative integer up to 2147483647, got "8"'],
    ['number for a string', 'name: 5', 'name', 'expected a quoted string, got 5'],
    ['identifier for a string', 'platform: onnxruntime_onnx', 'platform', 'expected a quoted string, got onnxruntime_onnx'],
    ['bad boolean', 'input { name: "a" optional: yes }', 'input[0].optional', 'expected true or false, got yes'],
    ['zero dimension', 'input { name: "a" dims: [ 3, 0 ] }', 'input[0].dims[1]', 'expected -1 (any size) or a positive integer, got 0'],
    ['dimension below -1', 'output { name: "a" dims: -2 }', 'output[0].dims[0]', 'expected -1 (any size) or a positive integer, got -2'],
    ['bad reshape dimension', 'input { name: "a" reshape { shape: [ 0 ] } }', 'input[0].reshape.shape[0]', 'expected -1 (any size) or a positive integer, got 0'],
    ['zero preferred batch size', 'dynamic_batching { preferred_batch_size: [ 4, 0 ] }', 'dynamic_batching.preferred_batch_size[1]',
      'expected a positive integer up to 2147483647, got 0'],
    ['negative gpu', 'instance_group { gpus: [ -1 ] }', 'instance_group[0].gpus[0]', 'expected a non-negative integer up to 2147483647, got -1'],
    ['zero num_versions', 'version_policy { latest { num_versions: 0 } }', 'version_policy.latest.num_versions',
      'expected a positive integer up to 4294967295, got 0'],
    ['negative specific version', 'version_policy { specific { versions: [ -1 ] } }', 'version_policy.specific.versions[0]',
      'expected a non-negative integer, got -1'],
    ['singular field set twice', 'name: "a"\nname: "b"', 'name', 'expected the field once (it is not repeated), got it again after line 1, column 1'],
    ['singular message set twice', 'dynamic_batching {}\ndynamic_batching {}', 'dynamic_batching',
      'expected the field once (it is not repeated), got it again after line 1, column 1'],
    ['list for a singular scalar', 'max_batch_size: [ 1 ]', 'max_batch_size',
      'expected a non-negative integer up to 2147483647, got a list [ … ] (the field is not repeated)'],
    ['list for a singular message', 'dynamic_batching: [ {} ]', 'dynamic_batching', 'expected a message { … }, got a list [ … ] (the field is not repeated)'],
    ['scalar for a message', 'dynamic_batching: 5', 'dynamic_batching', 'expected a message { … }, got 5'],
    ['scalar in a repeated message list', 'input: [ "a" ]', 'input[0]', 'expected a message { … }, got "a"'],
    ['message for a repeated scalar', 'input { name: "a" dims: [ { } ] }', 'input[0].dims[0]', 'expected -1 (any size) or a positive integer, got a message { … }'],
    ['message for a map value of string type', 'metric_tags { key: "a" value { } }', 'metric_tags[0].value', 'expected a quoted string, got a message { … }'],
    ['two version policies', 'version_policy { latest {} all {} }', 'version_policy.all',
      'expected only one of latest, all, specific (they are alternatives), got both latest and all'],
    ['dynamic and sequence batching', 'dynamic_batching {}\nsequence_batching {}', 'sequence_batching',
      'expected only one of dynamic_batching, sequence_batching, ensemble_scheduling (they are alternatives), got both dynamic_batching and sequence_batching'],
    ['priority queue key out of range', 'dynamic_batching { priority_levels: 2 priority_queue_policy { key: 3 value {} } }',
      'dynamic_batching.priority_queue_policy[0].key', 'expected a priority level from 1 to priority_levels (2), got 3'],
    ['priority queue without levels', 'dynamic_batching { priority_queue_policy { key: 1 value {} } }',
      'dynamic_batching.priority_queue_policy[0].key', 'expected a priority level from 1 to priority_levels (0), got 1'],
    ['default priority above levels', 'dynamic_batching { priority_levels: 2 default_priority_level: 3 }',
      'dynamic_batching.default_priority_level', 'expected a priority level from 1 to priority_levels (2), got 3'],
    ['unknown field in a map value', 'parameters { key: "a" value { string: "x" } }', 'parameters[0].value.string',
      'unknown field; expected one of string_value'],
  ];
  it.each(cases)('%s', (_name, text, field, reason) => {
    const error = configError(text);
    expect(error.field).toBe(field);
    expect(error.reason).toBe(reason);
    expect(error.file).toBe(FILE);
    expect(error.message).toMatch(new RegExp(`^models/foo/config\\.pbtxt: ${escape(field)}: ${escape(reason)} \\(line \\d+, column \\d+\\)$`));
  });

  it('points at the offending value', () => {
    expect(configError('name: "foo"\ninput [\n  { name: "a" dims: [ 3, 0 ] }\n]').position).toEqual({ line: 3, column: 26 });
    expect(configError('name: "a"\n  name: "b"').position).toEqual({ line: 2, column: 3 });
  });

  it('turns syntax errors into ConfigErrors with the same file, field and position', () => {
    const error = configError('name: "foo"\ndynamic_batching {\n  max_queue_delay_microseconds 100\n}');
    expect(error.message).toBe(
      'models/foo/config.pbtxt: dynamic_batching.max_queue_delay_microseconds: expected ":" or "{" after the field name "max_queue_delay_microseconds", got 100 (line 3, column 32)',
    );
    expect(error.field).toBe('dynamic_batching.max_queue_delay_microseconds');
    expect(error.cause).toBeInstanceOf(PbtxtSyntaxError);
  });

  it('reports a syntax error at top level with an empty field', () => {
    const error = configError('name: "foo" }', 'repo/m/config.pbtxt');
    expect(error.message).toBe('repo/m/config.pbtxt: expected a field name, got "}" (line 1, column 13)');
    expect(error.field).toBe('');
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
