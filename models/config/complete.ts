import { type ModelSignature } from '../../core/signature.js';
import {
  type ModelConfig,
  type ModelDynamicBatching,
  type ModelInput,
  ModelInput_Format,
  type ModelInstanceGroup,
  ModelInstanceGroup_Kind,
  type ModelOutput,
  type ModelSequenceBatching,
} from '../../proto/gen/model_config.js';
import { type TensorSpec } from '../../proto/gen/worker.js';
import { mergeTensors, shapeText } from './complete-tensors.js';
import { ConfigError } from './config-error.js';
import { type BatchIoPlan, batchIoPlanOf } from './batch-io-config.js';
import { dynamicBatchingIn, sequenceBatchingIn } from './model-config.js';
import { DEFAULT_SEQUENCE_IDLE_US, type SequencePlan, sequencePlanOf } from './sequence-config.js';

export const ONNX_PLATFORM = 'onnxruntime_onnx';
export const ONNX_BACKEND = 'onnxruntime';

export interface CompleteConfigInput {
  /** The model's directory name. */
  readonly name: string;
  /** As parsed from config.pbtxt; undefined when the model has none. Not modified. */
  readonly config: ModelConfig | undefined;
  /**
   * `ParsedModelConfig.present`: which fields the file writes. Without it a
   * max_batch_size of 0 counts as unset, which is Triton's own rule.
   */
  readonly present?: ReadonlySet<string>;
  /** Named by errors; defaults to `model "<name>"`. */
  readonly file?: string;
  /** What ONNX Runtime reports for the loaded model. */
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /** max_batch_size given to a model that can batch when the config does not set one. */
  readonly defaultMaxBatchSize: number;
}

export interface CompletedConfig {
  readonly config: ModelConfig;
  /** What clients send and get: without the inputs and outputs a sequence model's server fills and keeps. */
  readonly signature: Omit<ModelSignature, 'version'>;
  /** A stateful model's `sequence_batching`, checked against the model. */
  readonly sequence?: SequencePlan;
  /** Ragged inputs, batch inputs and batch outputs, checked against the model; undefined when the config has none. */
  readonly batchIo?: BatchIoPlan;
}

/**
 * What Triton's ONNX Runtime backend does with auto-complete on: fills what
 * config.pbtxt leaves out from the model's own inputs and outputs, checks
 * what it does say against them, and normalises the rest, so every later
 * layer reads one complete config. Throws ConfigError naming file and field.
 */
export function completeConfig(input: CompleteConfigInput): CompletedConfig {
  const { name, inputs, outputs, defaultMaxBatchSize } = input;
  if (!Number.isSafeInteger(defaultMaxBatchSize) || defaultMaxBatchSize < 0) {
    throw new RangeError(`Expected defaultMaxBatchSize to be an integer ≥ 0, got ${defaultMaxBatchSize}`);
  }
  const file = input.file ?? `model ${JSON.stringify(name)}`;
  const fail = (field: string, reason: string): never => {
    throw new ConfigError(file, field, reason);
  };
  const given = input.config;

  if (given && given.name !== '' && given.name !== name) {
    fail('name', `expected ${JSON.stringify(name)} (the model's directory name), got ${JSON.stringify(given.name)}`);
  }
  for (const [field, expected] of [['platform', ONNX_PLATFORM], ['backend', ONNX_BACKEND]] as const) {
    const value = given?.[field] ?? '';
    if (value !== '' && value !== expected) {
      fail(field, `expected ${JSON.stringify(expected)} (Fabriek serves ONNX models only), got ${JSON.stringify(value)}`);
    }
  }

  const maxBatchSize = resolveMaxBatchSize(input, fail);
  const common = { file, maxBatchSize };
  const sequenceBatching = sequenceBatchingIn(given);
  const sequence = sequenceBatching && sequencePlanOf(sequenceBatching, inputs, outputs, maxBatchSize, fail);
  const batchIo = given && batchIoPlanOf(given, inputs, outputs, maxBatchSize, fail);
  const serverMade = (s: TensorSpec): boolean => sequence?.serverInputs.has(s.name) === true || batchIo?.serverInputs.has(s.name) === true;
  const completedInputs = mergeTensors<ModelInput>({
    ...common,
    kind: 'input',
    entries: given?.input ?? [],
    specs: sequence || batchIo ? inputs.filter((s) => !serverMade(s)) : inputs,
    clientShaped: batchIo?.clientShaped,
    create: (t) => ({
      ...t,
      format: ModelInput_Format.FORMAT_NONE,
      isShapeTensor: false,
      allowRaggedBatch: false,
      optional: false,
    }),
    optional: (e) => e.optional,
  });
  const completedOutputs = mergeTensors<ModelOutput>({
    ...common,
    kind: 'output',
    entries: given?.output ?? [],
    specs: sequence ? outputs.filter((s) => !sequence.serverOutputs.has(s.name)) : outputs,
    clientShaped: batchIo?.clientShaped,
    create: (t) => ({ ...t, labelFilename: '', isShapeTensor: false }),
    optional: () => false,
  });

  if (sequence && given?.responseCache?.enable) {
    fail('response_cache.enable', "expected false: a sequence model's answers depend on its sequence's state, which a cached answer does not");
  }
  const dynamicBatching = dynamicBatchingIn(given);
  const config: ModelConfig = {
    name,
    platform: ONNX_PLATFORM,
    backend: ONNX_BACKEND,
    runtime: given?.runtime ?? '',
    versionPolicy: given?.versionPolicy?.policyChoice
      ? structuredClone(given.versionPolicy)
      : { policyChoice: { $case: 'latest', value: { numVersions: 1 } } },
    maxBatchSize,
    input: completedInputs.entries,
    output: completedOutputs.entries,
    optimization: given?.optimization && structuredClone(given.optimization),
    schedulingChoice: dynamicBatching
      ? { $case: 'dynamicBatching', value: completeBatching(dynamicBatching, maxBatchSize, fail) }
      : sequenceBatching && { $case: 'sequenceBatching', value: completeSequenceBatching(sequenceBatching, maxBatchSize, fail) },
    instanceGroup: completeGroups(name, given?.instanceGroup ?? [], fail),
    defaultModelFilename: given?.defaultModelFilename ?? '',
    metricTags: { ...given?.metricTags },
    parameters: structuredClone(given?.parameters ?? {}),
    modelWarmup: structuredClone(given?.modelWarmup ?? []),
    batchInput: structuredClone(given?.batchInput ?? []),
    batchOutput: structuredClone(given?.batchOutput ?? []),
    responseCache: given?.responseCache && { enable: given.responseCache.enable },
  };
  return {
    config,
    signature: { name, maxBatchSize, inputs: completedInputs.signatures, outputs: completedOutputs.signatures },
    ...(sequence ? { sequence } : {}),
    ...(batchIo ? { batchIo } : {}),
  };
}

/**
 * The model can batch when every input and output has a dynamic first
 * dimension. An unset max_batch_size then becomes the default (Triton's
 * autofill); a set one must be 0 for a model that cannot batch.
 */
function resolveMaxBatchSize(input: CompleteConfigInput, fail: (field: string, reason: string) => never): number {
  const { config, present } = input;
  const tensors = [...input.inputs.map((s) => ['input', s] as const), ...input.outputs.map((s) => ['output', s] as const)];
  const blocker = tensors.find(([, s]) => s.shape.length === 0 || s.shape[0] !== -1n);
  const canBatch = input.inputs.length > 0 && blocker === undefined;
  const isSet = config !== undefined && (present ? present.has('max_batch_size') : config.maxBatchSize !== 0);
  if (!isSet) return canBatch ? input.defaultMaxBatchSize : 0;
  if (config.maxBatchSize > 0 && !canBatch) {
    const why = blocker
      ? `the ONNX model's ${blocker[0]} ${JSON.stringify(blocker[1].name)} has shape ${shapeText(blocker[1].shape)}, ` +
        'whose first dimension is not -1'
      : 'the ONNX model has no inputs';
    fail('max_batch_size', `expected 0 because the model cannot batch (${why}), got ${config.maxBatchSize}`);
  }
  return config.maxBatchSize;
}

/** Triton's instance-group normalisation; the gateway resolves KIND_AUTO and GPU lists. */
function completeGroups(
  name: string,
  groups: readonly ModelInstanceGroup[],
  fail: (field: string, reason: string) => never,
): ModelInstanceGroup[] {
  if (groups.length === 0) {
    const kind = ModelInstanceGroup_Kind.KIND_CPU;
    return [{ name: `${name}_0`, kind, count: 1, gpus: [], profile: [], passive: false, hostPolicy: '' }];
  }
  return groups.map((g, i) => {
    const path = `instance_group[${i}]`;
    if (g.kind === ModelInstanceGroup_Kind.KIND_MODEL) {
      const reason = 'expected KIND_AUTO, KIND_CPU or KIND_GPU (KIND_MODEL is for TensorFlow models), got KIND_MODEL';
      fail(`${path}.kind`, reason);
    }
    if (g.kind === ModelInstanceGroup_Kind.KIND_CPU && g.gpus.length > 0) {
      fail(`${path}.gpus`, `expected no GPUs for kind KIND_CPU, got ${shapeText(g.gpus)}`);
    }
    if (g.profile.length > 0) {
      fail(`${path}.profile`, `expected none (profiles are for TensorRT models), got ${JSON.stringify(g.profile)}`);
    }
    return { ...g, name: g.name || `${name}_${i}`, count: Math.max(g.count, 1), gpus: [...g.gpus], profile: [] };
  });
}

/** Checks that need max_batch_size; fills default_priority_level when priorities are on. */
function completeBatching(
  given: ModelDynamicBatching,
  maxBatchSize: number,
  fail: (field: string, reason: string) => never,
): ModelDynamicBatching {
  given.preferredBatchSize.forEach((size, i) => {
    if (size > maxBatchSize) {
      const note = maxBatchSize === 0 ? ': the model does not batch' : '';
      const reason = `expected at most max_batch_size (${maxBatchSize}${note}), got ${size}`;
      fail(`dynamic_batching.preferred_batch_size[${i}]`, reason);
    }
  });
  const batching = structuredClone(given);
  // Triton insists on an explicit default level; unmarked requests taking the lowest priority is the safe reading.
  if (batching.priorityLevels > 0n && batching.defaultPriorityLevel === 0n) {
    batching.defaultPriorityLevel = batching.priorityLevels;
  }
  return batching;
}

/** Triton's defaults written out: the direct strategy, an idle limit of 1 s. */
function completeSequenceBatching(
  given: ModelSequenceBatching,
  maxBatchSize: number,
  fail: (field: string, reason: string) => never,
): ModelSequenceBatching {
  const sequence = structuredClone(given);
  sequence.strategyChoice ??= { $case: 'direct', value: { maxQueueDelayMicroseconds: 0n, minimumSlotUtilization: 0 } };
  if (sequence.maxSequenceIdleMicroseconds === 0n) sequence.maxSequenceIdleMicroseconds = BigInt(DEFAULT_SEQUENCE_IDLE_US);
  if (sequence.strategyChoice.$case === 'oldest') {
    sequence.strategyChoice.value.preferredBatchSize.forEach((size, i) => {
      if (size > Math.max(maxBatchSize, 1)) {
        fail(`sequence_batching.oldest.preferred_batch_size[${i}]`, `expected at most max_batch_size (${maxBatchSize}), got ${size}`);
      }
    });
  }
  return sequence;
}
