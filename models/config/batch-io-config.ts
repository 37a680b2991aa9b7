// Triton's ragged batching, checked against the ONNX model: inputs with
// `allow_ragged_batch` (requests of any shape batch together, the model
// getting their elements end to end in one 1-D tensor), `batch_input` (model
// inputs the server makes from each batch: element counts, item shapes) and
// `batch_output` (a batch output scattered back by the shape of an input).
// The rules follow Triton's ONNX Runtime backend (onnxruntime.cc) and its
// backend library (backend_input_collector.cc, backend_output_responder.cc).
import { configNameOf, datatypeFromConfigName, elementSize, isDatatype } from '../../core/datatypes.js';
import {
  type BatchInput as BatchInputConfig,
  BatchInput_Kind,
  type BatchOutput as BatchOutputConfig,
  BatchOutput_Kind,
  DataType,
  type ModelInput,
  type ModelOutput,
} from '../../proto/gen/model_config.js';
import { type TensorSpec } from '../../proto/gen/worker.js';
import { shapeText } from './complete-tensors.js';

export type BatchInputKind =
  | 'element_count'
  | 'accumulated_element_count'
  | 'accumulated_element_count_with_zero'
  | 'max_element_count_as_shape'
  | 'item_shape'
  | 'item_shape_flatten';

const KIND_NAMES: Record<number, BatchInputKind> = {
  [BatchInput_Kind.BATCH_ELEMENT_COUNT]: 'element_count',
  [BatchInput_Kind.BATCH_ACCUMULATED_ELEMENT_COUNT]: 'accumulated_element_count',
  [BatchInput_Kind.BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO]: 'accumulated_element_count_with_zero',
  [BatchInput_Kind.BATCH_MAX_ELEMENT_COUNT_AS_SHAPE]: 'max_element_count_as_shape',
  [BatchInput_Kind.BATCH_ITEM_SHAPE]: 'item_shape',
  [BatchInput_Kind.BATCH_ITEM_SHAPE_FLATTEN]: 'item_shape_flatten',
};

/** A model input the server makes for each batch from one input of its requests. */
export interface BatchInputPlan {
  readonly kind: BatchInputKind;
  /** Model inputs that get it (Triton allows several names for one value). */
  readonly targets: readonly string[];
  readonly datatype: 'INT32' | 'FP32';
  /** The client input it is derived from. */
  readonly source: string;
}

/** A model output of the whole batch, cut into each request's part by the shape of its `source` input. */
export interface BatchOutputPlan {
  readonly target: string;
  readonly source: string;
  /** Bytes of one element (the output has a fixed-size datatype). */
  readonly elementBytes: number;
  /** A request's output shape (batch dimension first); -1 = the source input's size at that index. */
  readonly shape: readonly number[];
}

/** What the gateway's batchers need to build a ragged model's batches and answer its requests. */
export interface BatchIoPlan {
  /** Inputs joined as one 1-D tensor of all their requests' elements. */
  readonly ragged: ReadonlySet<string>;
  readonly inputs: readonly BatchInputPlan[];
  readonly outputs: readonly BatchOutputPlan[];
  /** Model inputs the server makes (batch input targets), which clients neither send nor see. */
  readonly serverInputs: ReadonlySet<string>;
  /** Inputs and outputs whose config dims say what clients send and get, not the ONNX model's own shape. */
  readonly clientShaped: ReadonlySet<string>;
}

const BATCH_INPUT_TYPES = new Set<DataType>([DataType.TYPE_INT32, DataType.TYPE_FP32]);

/**
 * Checks the config's ragged inputs, batch inputs and batch outputs against
 * each other and the ONNX model; undefined when the config has none (the
 * batchers then do nothing extra). `fail` throws a ConfigError naming the
 * field.
 */
export function batchIoPlanOf(
  config: { readonly input: readonly ModelInput[]; readonly output: readonly ModelOutput[]; readonly batchInput: readonly BatchInputConfig[]; readonly batchOutput: readonly BatchOutputConfig[] },
  modelInputs: readonly TensorSpec[],
  modelOutputs: readonly TensorSpec[],
  maxBatchSize: number,
  fail: (field: string, reason: string) => never,
): BatchIoPlan | undefined {
  const raggedEntries = config.input.map((entry, i) => ({ entry, i })).filter(({ entry }) => entry.allowRaggedBatch);
  if (raggedEntries.length === 0 && config.batchInput.length === 0 && config.batchOutput.length === 0) return undefined;
  const first = raggedEntries[0] ? `input[${raggedEntries[0].i}].allow_ragged_batch` : config.batchInput.length > 0 ? 'batch_input[0]' : 'batch_output[0]';
  if (maxBatchSize === 0) {
    fail(first, 'expected a model that batches (max_batch_size > 0): ragged inputs, batch inputs and batch outputs describe a batch of requests');
  }
  const clientInputs = new Map(config.input.map((entry) => [entry.name, entry]));

  const ragged = new Set<string>();
  for (const { entry, i } of raggedEntries) {
    const path = `input[${i}]`;
    const spec = modelInputs.find((s) => s.name === entry.name);
    // An unknown name is reported by completion, with the model's names.
    if (!spec) continue;
    if (spec.shape.length !== 1 || spec.shape[0] !== -1n) {
      fail(`${path}.allow_ragged_batch`, `expected the ONNX model's input ${JSON.stringify(entry.name)} to have shape [-1] (a ragged input reaches the model as its requests' elements end to end), got ${shapeText(spec.shape)}`);
    }
    if (entry.optional) fail(`${path}.optional`, 'expected false: a ragged input cannot be optional');
    if (entry.reshape) fail(`${path}.reshape`, 'expected none: a ragged input reaches the model as one 1-D tensor');
    if (entry.dims.length === 0) fail(`${path}.dims`, "expected the dims clients send (without the batch dimension), e.g. [ -1 ]: the model's [-1] is the whole batch's elements");
    ragged.add(entry.name);
  }

  const serverInputs = new Set<string>();
  const inputs = config.batchInput.map((b, i): BatchInputPlan => {
    const path = `batch_input[${i}]`;
    const kind = KIND_NAMES[b.kind];
    if (kind === undefined) return fail(`${path}.kind`, `expected one of ${Object.keys(BatchInput_Kind).filter((k) => k.startsWith('BATCH')).join(', ')}`);
    if (!BATCH_INPUT_TYPES.has(b.dataType)) {
      fail(`${path}.data_type`, `expected TYPE_INT32 or TYPE_FP32, got ${DataType[b.dataType] ?? b.dataType}`);
    }
    const datatype = b.dataType === DataType.TYPE_INT32 ? 'INT32' : 'FP32';
    if (b.sourceInput.length !== 1) fail(`${path}.source_input`, `expected exactly one input, got ${b.sourceInput.length}`);
    const source = b.sourceInput[0] as string;
    const sourceEntry = clientInputs.get(source);
    if (!sourceEntry) fail(`${path}.source_input`, `expected an input listed in the config's input, got ${JSON.stringify(source)}`);
    if (b.targetName.length === 0) fail(`${path}.target_name`, 'expected at least one name of a model input');
    b.targetName.forEach((target, t) => {
      const field = `${path}.target_name[${t}]`;
      if (clientInputs.has(target)) fail(field, `expected a model input clients do not send, got ${JSON.stringify(target)}, which the config lists in input`);
      if (serverInputs.has(target)) fail(field, `expected each model input made once, got ${JSON.stringify(target)} again`);
      const spec = modelInputs.find((s) => s.name === target);
      if (!spec) {
        const names = modelInputs.map((s) => JSON.stringify(s.name)).join(', ');
        return fail(field, `expected the name of one of the ONNX model's inputs (${names}), got ${JSON.stringify(target)}`);
      }
      if (spec.datatype !== datatype) {
        const model = isDatatype(spec.datatype) ? configNameOf(spec.datatype) : spec.datatype;
        fail(`${path}.data_type`, `expected the ONNX model's type for ${JSON.stringify(target)}, ${model}, got ${DataType[b.dataType]}`);
      }
      const rank = kind === 'item_shape' ? 2 : 1;
      if (spec.shape.length !== rank || spec.shape[0] !== -1n) {
        const want = rank === 2 ? '[-1, k]' : '[-1]';
        fail(field, `expected the ONNX model's input ${JSON.stringify(target)} to have shape ${want} for ${BatchInput_Kind[b.kind]}, got ${shapeText(spec.shape)}`);
      }
      if (rank === 2 && sourceEntry && spec.shape[1] !== -1n && spec.shape[1] !== BigInt(sourceEntry.dims.length)) {
        fail(field, `expected the ONNX model's input ${JSON.stringify(target)} to have shape [-1, ${sourceEntry.dims.length}] (the rank of ${JSON.stringify(source)} per batch item), got ${shapeText(spec.shape)}`);
      }
      serverInputs.add(target);
    });
    return { kind, targets: [...b.targetName], datatype, source };
  });

  const clientShaped = new Set(ragged);
  const scattered = new Set<string>();
  const outputs = config.batchOutput.flatMap((b, i): BatchOutputPlan[] => {
    const path = `batch_output[${i}]`;
    if (b.kind !== BatchOutput_Kind.BATCH_SCATTER_WITH_INPUT_SHAPE) fail(`${path}.kind`, 'expected BATCH_SCATTER_WITH_INPUT_SHAPE');
    if (b.sourceInput.length !== 1) fail(`${path}.source_input`, `expected exactly one input, got ${b.sourceInput.length}`);
    const source = b.sourceInput[0] as string;
    const sourceEntry = clientInputs.get(source);
    if (!sourceEntry) return fail(`${path}.source_input`, `expected an input listed in the config's input, got ${JSON.stringify(source)}`);
    if (b.targetName.length === 0) fail(`${path}.target_name`, 'expected at least one name of an output');
    return b.targetName.map((target, t) => {
      const field = `${path}.target_name[${t}]`;
      const out = config.output.find((o) => o.name === target);
      if (!out || out.dims.length === 0) {
        return fail(field, `expected an output listed in the config's output with its dims (the shape each request gets), got ${JSON.stringify(target)}`);
      }
      if (scattered.has(target)) fail(field, `expected each output scattered once, got ${JSON.stringify(target)} again`);
      const spec = modelOutputs.find((s) => s.name === target);
      // An unknown output name is reported by completion, with the model's names.
      const datatype = spec && isDatatype(spec.datatype) ? spec.datatype : datatypeFromConfigName(DataType[out.dataType] ?? '');
      const elementBytes = datatype ? elementSize(datatype) : 0;
      if (datatype === undefined || elementBytes === 0) {
        fail(field, `expected an output of a fixed-size type to scatter by shape, got ${datatype ?? DataType[out.dataType]}`);
      }
      if (out.reshape) fail(`output[${config.output.indexOf(out)}].reshape`, 'expected none on an output scattered by batch_output');
      const shape = [-1, ...out.dims.map(Number)];
      const sourceRank = 1 + sourceEntry.dims.length;
      const beyond = shape.findIndex((d, j) => d === -1 && j >= sourceRank);
      if (beyond >= 0) {
        fail(field, `expected its -1 dims within the rank of ${JSON.stringify(source)} (${sourceRank} with the batch dimension), whose sizes they take; dims ${shapeText(out.dims)} has -1 at dims[${beyond - 1}]`);
      }
      scattered.add(target);
      clientShaped.add(target);
      return { target, source, elementBytes, shape };
    });
  });
  return { ragged, inputs, outputs, serverInputs, clientShaped };
}
