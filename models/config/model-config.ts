import {
  type BatchInput,
  BatchInput_Kind,
  type BatchOutput,
  BatchOutput_Kind,
  DataType,
  type ModelConfig,
  type ModelDynamicBatching,
  type ModelEnsembling,
  type ModelInput,
  ModelInput_Format,
  type ModelInstanceGroup,
  ModelInstanceGroup_Kind,
  type ModelOptimizationPolicy,
  type ModelOptimizationPolicy_ExecutionAccelerators_Accelerator,
  ModelOptimizationPolicy_ModelPriority,
  type ModelOutput,
  type ModelParameter,
  type ModelQueuePolicy,
  ModelQueuePolicy_TimeoutAction,
  type ModelSequenceBatching,
  type ModelSequenceBatching_Control,
  ModelSequenceBatching_Control_Kind,
  type ModelSequenceBatching_InitialState,
  type ModelSequenceBatching_State,
  type ModelTensorReshape,
  type ModelVersionPolicy,
  type ModelWarmup,
  type ModelWarmup_Input,
} from '../../proto/gen/model_config.js';
import { ConfigError, type SourcePosition } from './config-error.js';
import { type IgnoredFields, MessageReader, type ReadContext } from './field-reader.js';
import { type PbMessage, parsePbtxt, PbtxtSyntaxError } from './pbtxt.js';
import {
  BOOL,
  DIM,
  enumType,
  FLOAT,
  INT32,
  INT64,
  NON_NEGATIVE_INT32,
  NON_NEGATIVE_INT64,
  POSITIVE_INT32,
  POSITIVE_UINT32,
  refine,
  type ScalarType,
  STRING,
  UINT32,
  UINT64,
} from './scalar-types.js';

export { ConfigError } from './config-error.js';

/** The config's dynamic_batching, when its scheduling choice is that. */
export function dynamicBatchingIn(config: ModelConfig | undefined): ModelDynamicBatching | undefined {
  return config?.schedulingChoice?.$case === 'dynamicBatching' ? config.schedulingChoice.value : undefined;
}

/** The config's sequence_batching, when its scheduling choice is that. */
export function sequenceBatchingIn(config: ModelConfig | undefined): ModelSequenceBatching | undefined {
  return config?.schedulingChoice?.$case === 'sequenceBatching' ? config.schedulingChoice.value : undefined;
}

/**
 * Whether requests of the model run several to an execution, so that a worker
 * may merge executions waiting for an instance along dimension 0: dynamic or
 * sequence batching, and no ragged input or batch input or output, whose
 * tensors describe one whole batch and cannot be joined by rows.
 */
export function batchesRequests(config: ModelConfig | undefined): boolean {
  const choice = config?.schedulingChoice?.$case;
  if (choice !== 'dynamicBatching' && choice !== 'sequenceBatching') return false;
  return config?.batchInput.length === 0 && config.batchOutput.length === 0 && !config.input.some((i) => i.allowRaggedBatch);
}

/** The config's ensemble_scheduling, when its scheduling choice is that. */
export function ensembleIn(config: ModelConfig | undefined): ModelEnsembling | undefined {
  return config?.schedulingChoice?.$case === 'ensembleScheduling' ? config.schedulingChoice.value : undefined;
}

export interface ParsedModelConfig {
  readonly config: ModelConfig;
  /** One line per Triton field that was accepted but is not acted on, or a repeated map key. */
  readonly warnings: string[];
  /**
   * Paths of the fields the file writes (`max_batch_size`, `input[0].dims`,
   * `dynamic_batching.priority_levels`): how completion tells a field left
   * out from one written with its default value (`max_batch_size: 0`).
   */
  readonly present: ReadonlySet<string>;
}

/**
 * config.pbtxt text → ModelConfig, checking every field against the schema
 * of proto/model_config.proto. Throws ConfigError naming `file`, the field
 * path and the position.
 */
export function parseModelConfig(text: string, file: string): ParsedModelConfig {
  let tree: PbMessage;
  try {
    tree = parsePbtxt(text);
  } catch (error) {
    if (!(error instanceof PbtxtSyntaxError)) throw error;
    throw new ConfigError(file, error.field, error.reason, { line: error.line, column: error.column }, { cause: error });
  }
  const ctx: ReadContext = { file, warnings: [], present: new Set() };
  const config = MessageReader.read(tree, '', ctx, modelConfig, CONFIG_IGNORED);
  // In file order, though nested messages finish reading before their parents.
  const at = (p: SourcePosition | undefined): number => (p ? p.line * 1e6 + p.column : 0);
  const warnings = [...ctx.warnings].sort((a, b) => at(a.pos) - at(b.pos)).map((w) => w.message);
  return { config, warnings, present: ctx.present };
}

const NOT_IMPLEMENTED = 'Fabriek does not implement it';
const CONFIG_IGNORED: IgnoredFields = {
  model_transaction_policy: `${NOT_IMPLEMENTED}; every request gets exactly one response`,
  model_operations: NOT_IMPLEMENTED,
  model_repository_agents: NOT_IMPLEMENTED,
  cc_model_filenames: NOT_IMPLEMENTED,
  model_metrics: NOT_IMPLEMENTED,
};
const IO_IGNORED: IgnoredFields = { is_non_linear_format_io: 'applies to TensorRT models only' };
const GROUP_IGNORED: IgnoredFields = { secondary_devices: NOT_IMPLEMENTED, rate_limiter: NOT_IMPLEMENTED };
const OPTIMIZATION_IGNORED: IgnoredFields = {
  cuda: 'applies to other backends only',
  gather_kernel_buffer_threshold: NOT_IMPLEMENTED,
  eager_batching: NOT_IMPLEMENTED,
};

const DATA_TYPE = enumType<DataType>(DataType);
const BATCH_INPUT_KIND = enumType<BatchInput_Kind>(BatchInput_Kind);
const BATCH_OUTPUT_KIND = enumType<BatchOutput_Kind>(BatchOutput_Kind);
const CONTROL_KIND = enumType<ModelSequenceBatching_Control_Kind>(ModelSequenceBatching_Control_Kind);
const FORMAT = enumType<ModelInput_Format>(ModelInput_Format);
const KIND = enumType<ModelInstanceGroup_Kind>(ModelInstanceGroup_Kind);
const PRIORITY = enumType<ModelOptimizationPolicy_ModelPriority>(ModelOptimizationPolicy_ModelPriority);
const TIMEOUT_ACTION = enumType<ModelQueuePolicy_TimeoutAction>(ModelQueuePolicy_TimeoutAction);
const ENSEMBLE_VERSION = refine(INT64, (n) => n === -1n || n >= 0n, '-1 (the latest version) or a version number');
/** A file inside one of the model's own directories (warmup/, initial_state/): relative, without `..`. */
function fileInside(directory: string): ScalarType<string> {
  return {
    expected: `a file name inside the model's ${directory}/ directory (relative, no '..')`,
    read: (value) => {
      const name = STRING.read(value);
      if (name === undefined || name === '' || name.startsWith('/') || name.split(/[\\/]/).includes('..')) return undefined;
      return name;
    },
  };
}
const WARMUP_FILE = fileInside('warmup');
const INITIAL_STATE_FILE = fileInside('initial_state');

function modelConfig(r: MessageReader): ModelConfig {
  r.oneof(['dynamic_batching', 'sequence_batching', 'ensemble_scheduling']);
  const dynamicBatching = r.message('dynamic_batching', dynamicBatchingOf);
  const sequenceBatching = r.message('sequence_batching', sequenceBatchingOf, SEQUENCE_IGNORED);
  const ensemble = r.message('ensemble_scheduling', ensembleOf);
  return {
    name: r.scalar('name', STRING) ?? '',
    platform: r.scalar('platform', STRING) ?? '',
    backend: r.scalar('backend', STRING) ?? '',
    runtime: r.scalar('runtime', STRING) ?? '',
    versionPolicy: r.message('version_policy', versionPolicyOf),
    maxBatchSize: r.scalar('max_batch_size', NON_NEGATIVE_INT32) ?? 0,
    input: r.messages('input', inputOf, IO_IGNORED),
    output: r.messages('output', outputOf, IO_IGNORED),
    optimization: r.message('optimization', optimizationOf, OPTIMIZATION_IGNORED),
    schedulingChoice: dynamicBatching
      ? { $case: 'dynamicBatching', value: dynamicBatching }
      : sequenceBatching
        ? { $case: 'sequenceBatching', value: sequenceBatching }
        : ensemble && { $case: 'ensembleScheduling', value: ensemble },
    instanceGroup: r.messages('instance_group', instanceGroupOf, GROUP_IGNORED),
    defaultModelFilename: r.scalar('default_model_filename', STRING) ?? '',
    metricTags: Object.fromEntries(r.map('metric_tags', STRING, '', (e) => e.scalar('value', STRING) ?? '')),
    parameters: Object.fromEntries(
      r.map('parameters', STRING, '', (e) => e.message('value', parameterOf) ?? { stringValue: '' }),
    ),
    modelWarmup: r.messages('model_warmup', warmupOf),
    batchInput: r.messages('batch_input', batchInputOf),
    batchOutput: r.messages('batch_output', batchOutputOf),
    responseCache: r.message('response_cache', (c) => ({ enable: c.scalar('enable', BOOL) ?? false })),
  };
}

function batchInputOf(r: MessageReader): BatchInput {
  return {
    kind: r.scalar('kind', BATCH_INPUT_KIND) ?? BatchInput_Kind.BATCH_ELEMENT_COUNT,
    targetName: r.scalars('target_name', STRING),
    dataType: r.scalar('data_type', DATA_TYPE) ?? DataType.TYPE_INVALID,
    sourceInput: r.scalars('source_input', STRING),
  };
}

function batchOutputOf(r: MessageReader): BatchOutput {
  return {
    targetName: r.scalars('target_name', STRING),
    kind: r.scalar('kind', BATCH_OUTPUT_KIND) ?? BatchOutput_Kind.BATCH_SCATTER_WITH_INPUT_SHAPE,
    sourceInput: r.scalars('source_input', STRING),
  };
}

function ensembleOf(r: MessageReader): ModelEnsembling {
  const names = (e: MessageReader): string => e.scalar('value', STRING) ?? '';
  return {
    step: r.messages('step', (st) => ({
      modelName: st.scalar('model_name', STRING) ?? '',
      // Unset means what -1 says: the version the step model's policy serves, the latest.
      modelVersion: st.scalar('model_version', ENSEMBLE_VERSION) ?? -1n,
      inputMap: Object.fromEntries(st.map('input_map', STRING, '', names)),
      outputMap: Object.fromEntries(st.map('output_map', STRING, '', names)),
      modelNamespace: st.scalar('model_namespace', STRING) ?? '',
    })),
  };
}

function warmupOf(r: MessageReader): ModelWarmup {
  return {
    name: r.scalar('name', STRING) ?? '',
    // Triton requires batch_size ≥ 1; unset means one request of one item.
    batchSize: r.scalar('batch_size', POSITIVE_UINT32) ?? 1,
    inputs: Object.fromEntries(r.map('inputs', STRING, '', (e) => e.message('value', warmupInputOf) ?? warmupInputOf0())),
    count: r.scalar('count', UINT32) ?? 0,
  };
}

function warmupInputOf(r: MessageReader): ModelWarmup_Input {
  r.oneof(['zero_data', 'random_data', 'input_data_file']);
  const file = r.scalar('input_data_file', WARMUP_FILE);
  const inputDataType: ModelWarmup_Input['inputDataType'] =
    file !== undefined
      ? { $case: 'inputDataFile', value: file }
      : r.has('random_data')
        ? { $case: 'randomData', value: r.scalar('random_data', BOOL) ?? true }
        : r.has('zero_data')
          ? { $case: 'zeroData', value: r.scalar('zero_data', BOOL) ?? true }
          : undefined;
  return { dataType: r.scalar('data_type', DATA_TYPE) ?? DataType.TYPE_INVALID, dims: r.scalars('dims', DIM), inputDataType };
}

function warmupInputOf0(): ModelWarmup_Input {
  return { dataType: DataType.TYPE_INVALID, dims: [], inputDataType: undefined };
}

function parameterOf(r: MessageReader): ModelParameter {
  return { stringValue: r.scalar('string_value', STRING) ?? '' };
}

function versionPolicyOf(r: MessageReader): ModelVersionPolicy {
  r.oneof(['latest', 'all', 'specific']);
  // `latest {}` would select no version at all; one is what "latest" means without a count.
  const latest = r.message('latest', (l) => ({ numVersions: l.scalar('num_versions', POSITIVE_UINT32) ?? 1 }));
  const all = r.message('all', () => ({}));
  const specific = r.message('specific', (s) => ({ versions: s.scalars('versions', NON_NEGATIVE_INT64) }));
  if (latest) return { policyChoice: { $case: 'latest', value: latest } };
  if (all) return { policyChoice: { $case: 'all', value: all } };
  if (specific) return { policyChoice: { $case: 'specific', value: specific } };
  return {};
}

function reshapeOf(r: MessageReader): ModelTensorReshape {
  return { shape: r.scalars('shape', DIM) };
}

function inputOf(r: MessageReader): ModelInput {
  return {
    name: r.scalar('name', STRING) ?? '',
    dataType: r.scalar('data_type', DATA_TYPE) ?? DataType.TYPE_INVALID,
    format: r.scalar('format', FORMAT) ?? ModelInput_Format.FORMAT_NONE,
    dims: r.scalars('dims', DIM),
    reshape: r.message('reshape', reshapeOf),
    isShapeTensor: r.scalar('is_shape_tensor', BOOL) ?? false,
    allowRaggedBatch: r.scalar('allow_ragged_batch', BOOL) ?? false,
    optional: r.scalar('optional', BOOL) ?? false,
  };
}

function outputOf(r: MessageReader): ModelOutput {
  return {
    name: r.scalar('name', STRING) ?? '',
    dataType: r.scalar('data_type', DATA_TYPE) ?? DataType.TYPE_INVALID,
    dims: r.scalars('dims', DIM),
    reshape: r.message('reshape', reshapeOf),
    labelFilename: r.scalar('label_filename', STRING) ?? '',
    isShapeTensor: r.scalar('is_shape_tensor', BOOL) ?? false,
  };
}

function instanceGroupOf(r: MessageReader): ModelInstanceGroup {
  return {
    name: r.scalar('name', STRING) ?? '',
    kind: r.scalar('kind', KIND) ?? ModelInstanceGroup_Kind.KIND_AUTO,
    count: r.scalar('count', NON_NEGATIVE_INT32) ?? 0,
    gpus: r.scalars('gpus', NON_NEGATIVE_INT32),
    profile: r.scalars('profile', STRING),
    passive: r.scalar('passive', BOOL) ?? false,
    hostPolicy: r.scalar('host_policy', STRING) ?? '',
  };
}

function optimizationOf(r: MessageReader): ModelOptimizationPolicy {
  const pinned = (p: MessageReader): { enable: boolean } => ({ enable: p.scalar('enable', BOOL) ?? false });
  const accelerator = (a: MessageReader): ModelOptimizationPolicy_ExecutionAccelerators_Accelerator => ({
    name: a.scalar('name', STRING) ?? '',
    parameters: Object.fromEntries(a.map('parameters', STRING, '', (e) => e.scalar('value', STRING) ?? '')),
  });
  return {
    graph: r.message('graph', (g) => ({ level: g.scalar('level', INT32) ?? 0 })),
    priority: r.scalar('priority', PRIORITY) ?? ModelOptimizationPolicy_ModelPriority.PRIORITY_DEFAULT,
    executionAccelerators: r.message('execution_accelerators', (e) => ({
      gpuExecutionAccelerator: e.messages('gpu_execution_accelerator', accelerator),
      cpuExecutionAccelerator: e.messages('cpu_execution_accelerator', accelerator),
    })),
    inputPinnedMemory: r.message('input_pinned_memory', pinned),
    outputPinnedMemory: r.message('output_pinned_memory', pinned),
  };
}

function queuePolicyOf(r: MessageReader): ModelQueuePolicy {
  return {
    timeoutAction: r.scalar('timeout_action', TIMEOUT_ACTION) ?? ModelQueuePolicy_TimeoutAction.REJECT,
    defaultTimeoutMicroseconds: r.scalar('default_timeout_microseconds', UINT64) ?? 0n,
    allowTimeoutOverride: r.scalar('allow_timeout_override', BOOL) ?? false,
    maxQueueSize: r.scalar('max_queue_size', UINT32) ?? 0,
  };
}

function dynamicBatchingOf(r: MessageReader): ModelDynamicBatching {
  const priorityLevels = r.scalar('priority_levels', UINT64) ?? 0n;
  // Triton's checks: levels are numbered 1..priority_levels (1 = highest).
  const level = refine(
    UINT64,
    (n) => n >= 1n && n <= priorityLevels,
    `a priority level from 1 to priority_levels (${priorityLevels})`,
  );
  const defaultLevel = priorityLevels === 0n ? UINT64 : refine(UINT64, (n) => n <= priorityLevels, level.expected);
  return {
    preferredBatchSize: r.scalars('preferred_batch_size', POSITIVE_INT32),
    maxQueueDelayMicroseconds: r.scalar('max_queue_delay_microseconds', UINT64) ?? 0n,
    preserveOrdering: r.scalar('preserve_ordering', BOOL) ?? false,
    priorityLevels,
    defaultPriorityLevel: r.scalar('default_priority_level', defaultLevel) ?? 0n,
    defaultQueuePolicy: r.message('default_queue_policy', queuePolicyOf),
    priorityQueuePolicy: r.map('priority_queue_policy', level, 0n, (e) => e.message('value', queuePolicyOf) ?? queuePolicyOf0()),
  };
}

const SEQUENCE_IGNORED: IgnoredFields = {
  iterative_sequence: `${NOT_IMPLEMENTED}; each request of a sequence runs once`,
};
const STATE_IGNORED: IgnoredFields = {
  use_same_buffer_for_input_output: 'the gateway keeps each state in a buffer of its own',
  use_growable_memory: 'applies to CUDA memory only',
};

function sequenceBatchingOf(r: MessageReader): ModelSequenceBatching {
  r.oneof(['direct', 'oldest']);
  const direct = r.message('direct', (d) => ({
    maxQueueDelayMicroseconds: d.scalar('max_queue_delay_microseconds', UINT64) ?? 0n,
    minimumSlotUtilization: d.scalar('minimum_slot_utilization', FLOAT) ?? 0,
  }));
  const oldest = r.message('oldest', (o) => ({
    maxCandidateSequences: o.scalar('max_candidate_sequences', NON_NEGATIVE_INT32) ?? 0,
    preferredBatchSize: o.scalars('preferred_batch_size', POSITIVE_INT32),
    maxQueueDelayMicroseconds: o.scalar('max_queue_delay_microseconds', UINT64) ?? 0n,
    preserveOrdering: o.scalar('preserve_ordering', BOOL) ?? false,
  }));
  return {
    strategyChoice: direct ? { $case: 'direct', value: direct } : oldest && { $case: 'oldest', value: oldest },
    maxSequenceIdleMicroseconds: r.scalar('max_sequence_idle_microseconds', UINT64) ?? 0n,
    controlInput: r.messages('control_input', (c) => ({
      name: c.scalar('name', STRING) ?? '',
      control: c.messages('control', controlOf),
    })),
    state: r.messages('state', stateOf, STATE_IGNORED),
  };
}

function controlOf(r: MessageReader): ModelSequenceBatching_Control {
  return {
    kind: r.scalar('kind', CONTROL_KIND) ?? ModelSequenceBatching_Control_Kind.CONTROL_SEQUENCE_START,
    int32FalseTrue: r.scalars('int32_false_true', INT32),
    fp32FalseTrue: r.scalars('fp32_false_true', FLOAT),
    dataType: r.scalar('data_type', DATA_TYPE) ?? DataType.TYPE_INVALID,
    boolFalseTrue: r.scalars('bool_false_true', BOOL),
  };
}

function stateOf(r: MessageReader): ModelSequenceBatching_State {
  return {
    inputName: r.scalar('input_name', STRING) ?? '',
    outputName: r.scalar('output_name', STRING) ?? '',
    dataType: r.scalar('data_type', DATA_TYPE) ?? DataType.TYPE_INVALID,
    dims: r.scalars('dims', DIM),
    initialState: r.messages('initial_state', initialStateOf),
  };
}

function initialStateOf(r: MessageReader): ModelSequenceBatching_InitialState {
  r.oneof(['zero_data', 'data_file']);
  const file = r.scalar('data_file', INITIAL_STATE_FILE);
  return {
    dataType: r.scalar('data_type', DATA_TYPE) ?? DataType.TYPE_INVALID,
    dims: r.scalars('dims', DIM),
    stateData: file !== undefined ? { $case: 'dataFile', value: file } : r.has('zero_data') ? { $case: 'zeroData', value: r.scalar('zero_data', BOOL) ?? true } : undefined,
    name: r.scalar('name', STRING) ?? '',
  };
}

function queuePolicyOf0(): ModelQueuePolicy {
  return {
    timeoutAction: ModelQueuePolicy_TimeoutAction.REJECT,
    defaultTimeoutMicroseconds: 0n,
    allowTimeoutOverride: false,
    maxQueueSize: 0,
  };
}
