import { configNameOf, type Datatype, datatypeFromConfigName, isDatatype } from '../../core/datatypes.js';
import {
  DataType,
  type ModelSequenceBatching,
  type ModelSequenceBatching_Control,
  ModelSequenceBatching_Control_Kind as Kind,
  type ModelSequenceBatching_State,
} from '../../proto/gen/model_config.js';
import { type TensorSpec } from '../../proto/gen/worker.js';
import { shapeText } from './complete-tensors.js';

/** Triton's default `max_sequence_idle_microseconds` (when unset or 0). */
export const DEFAULT_SEQUENCE_IDLE_US = 1_000_000;

export type ControlKind = 'start' | 'end' | 'ready' | 'corrid';

/** One control input the server fills for every request of a sequence. */
export interface SequenceControl {
  readonly name: string;
  readonly kind: ControlKind;
  readonly datatype: Datatype;
  /** START, END, READY: the tensor's values for false and true. */
  readonly falseTrue?: readonly [number | boolean, number | boolean];
  /** 1: the model takes [batch, 1] ([1] without batching); 0: [batch] ([]). */
  readonly itemRank: 0 | 1;
}

/** An implicit state: output `outputName` of one request is input `inputName` of the sequence's next. */
export interface SequenceState {
  readonly inputName: string;
  readonly outputName: string;
  readonly datatype: Datatype;
  /** Without the batch dimension; -1 = any size (a zero initial state then starts at size 0). */
  readonly dims: readonly number[];
  /** A file in the model's initial_state/ directory; undefined = zeros. */
  readonly initialFile?: string;
}

/** What the gateway's sequence scheduler needs of a model's `sequence_batching`. */
export interface SequencePlan {
  readonly controls: readonly SequenceControl[];
  readonly states: readonly SequenceState[];
  readonly idleUs: number;
  /** `oldest.max_candidate_sequences`; 0 = one a batch slot (max_batch_size, or 1, per instance). */
  readonly maxCandidates: number;
  /** Model inputs and outputs the server fills and keeps, which clients neither send nor see. */
  readonly serverInputs: ReadonlySet<string>;
  readonly serverOutputs: ReadonlySet<string>;
}

const KIND_NAMES: Record<number, ControlKind> = {
  [Kind.CONTROL_SEQUENCE_START]: 'start',
  [Kind.CONTROL_SEQUENCE_END]: 'end',
  [Kind.CONTROL_SEQUENCE_READY]: 'ready',
  [Kind.CONTROL_SEQUENCE_CORRID]: 'corrid',
};
const CORRID_TYPES: readonly Datatype[] = ['UINT64', 'INT64', 'UINT32', 'INT32', 'BYTES'];

/**
 * Checks `sequence_batching` against the ONNX model's own inputs and outputs
 * and reduces it to a SequencePlan. `fail` throws (ConfigError naming the
 * file and the field).
 */
export function sequencePlanOf(
  sequence: ModelSequenceBatching,
  inputs: readonly TensorSpec[],
  outputs: readonly TensorSpec[],
  maxBatchSize: number,
  fail: (field: string, reason: string) => never,
): SequencePlan {
  const batching = maxBatchSize > 0;
  const serverInputs = new Set<string>();
  const serverOutputs = new Set<string>();
  const claim = (names: Set<string>, name: string, field: string): void => {
    if (names.has(name)) fail(field, `expected each model tensor in one control or state, got ${JSON.stringify(name)} again`);
    names.add(name);
  };
  const kinds = new Set<ControlKind>();
  const controls = sequence.controlInput.map((input, i): SequenceControl => {
    const path = `sequence_batching.control_input[${i}]`;
    const spec = specNamed(inputs, input.name, 'input', `${path}.name`, fail);
    claim(serverInputs, input.name, `${path}.name`);
    if (input.control.length !== 1) fail(`${path}.control`, `expected exactly one control, got ${input.control.length}`);
    const control = input.control[0] as ModelSequenceBatching_Control;
    const kind = KIND_NAMES[control.kind];
    if (kind === undefined) return fail(`${path}.control[0].kind`, `expected a known control kind, got ${control.kind}`);
    if (kinds.has(kind)) fail(`${path}.control[0].kind`, `expected each control kind once, got ${Kind[control.kind]} again`);
    kinds.add(kind);
    const datatype = specDatatype(spec, `${path}.name`, fail);
    const itemRank = oneValuePerItem(spec, batching, `${path}.name`, fail);
    if (kind === 'corrid') {
      const declared = datatypeFromConfigName(DataType[control.dataType] ?? '');
      if (declared === undefined || !CORRID_TYPES.includes(declared)) {
        const allowed = CORRID_TYPES.map(configNameOf).join(', ');
        fail(`${path}.control[0].data_type`, `expected one of ${allowed} for CONTROL_SEQUENCE_CORRID, got ${DataType[control.dataType] ?? control.dataType}`);
      }
      if (declared !== datatype) fail(`${path}.control[0].data_type`, `expected ${configNameOf(datatype)} (the ONNX model's type for ${JSON.stringify(spec.name)}), got ${DataType[control.dataType]}`);
      return { name: input.name, kind, datatype, itemRank };
    }
    return { name: input.name, kind, datatype, itemRank, falseTrue: falseTrueOf(control, datatype, `${path}.control[0]`, fail) };
  });
  const states = sequence.state.map((state, i) => {
    const checked = stateOf(state, i, inputs, outputs, batching, fail);
    claim(serverInputs, checked.inputName, `sequence_batching.state[${i}].input_name`);
    claim(serverOutputs, checked.outputName, `sequence_batching.state[${i}].output_name`);
    return checked;
  });
  const idleUs = Number(sequence.maxSequenceIdleMicroseconds);
  const oldest = sequence.strategyChoice?.$case === 'oldest' ? sequence.strategyChoice.value : undefined;
  return {
    controls,
    states,
    idleUs: idleUs > 0 ? idleUs : DEFAULT_SEQUENCE_IDLE_US,
    maxCandidates: oldest?.maxCandidateSequences ?? 0,
    serverInputs,
    serverOutputs,
  };
}

function stateOf(
  state: ModelSequenceBatching_State,
  i: number,
  inputs: readonly TensorSpec[],
  outputs: readonly TensorSpec[],
  batching: boolean,
  fail: (field: string, reason: string) => never,
): SequenceState {
  const path = `sequence_batching.state[${i}]`;
  const input = specNamed(inputs, state.inputName, 'input', `${path}.input_name`, fail);
  const output = specNamed(outputs, state.outputName, 'output', `${path}.output_name`, fail);
  const datatype = specDatatype(input, `${path}.input_name`, fail);
  if (specDatatype(output, `${path}.output_name`, fail) !== datatype) {
    fail(`${path}.output_name`, `expected an output of the input's type ${configNameOf(datatype)}, got ${output.datatype} for ${JSON.stringify(output.name)}`);
  }
  if (state.dataType !== DataType.TYPE_INVALID && DataType[state.dataType] !== configNameOf(datatype)) {
    fail(`${path}.data_type`, `expected ${configNameOf(datatype)} (the ONNX model's type for ${JSON.stringify(input.name)}), got ${DataType[state.dataType]}`);
  }
  const model = (batching ? input.shape.slice(1) : input.shape).map(Number);
  const dims = state.dims.length > 0 ? state.dims.map(Number) : model;
  const fits = dims.length === model.length && model.every((d, j) => d === -1 || d === dims[j]);
  if (!fits) {
    const less = batching ? ' less its batch dimension' : '';
    fail(`${path}.dims`, `expected ${shapeText(model)} to match the ONNX model's shape ${shapeText(input.shape)}${less}, got ${shapeText(dims)}`);
  }
  if (state.initialState.length > 1) fail(`${path}.initial_state`, `expected at most one initial state, got ${state.initialState.length}`);
  const initial = state.initialState[0];
  if (initial !== undefined && initial.dataType !== DataType.TYPE_INVALID && DataType[initial.dataType] !== configNameOf(datatype)) {
    fail(`${path}.initial_state[0].data_type`, `expected the state's type ${configNameOf(datatype)}, got ${DataType[initial.dataType]}`);
  }
  if (initial !== undefined && initial.dims.length > 0 && (initial.dims.length !== dims.length || initial.dims.some((d, j) => Number(d) !== dims[j]))) {
    fail(`${path}.initial_state[0].dims`, `expected the state's dims ${shapeText(dims)}, got ${shapeText(initial.dims)}`);
  }
  if (initial === undefined || initial.stateData?.$case !== 'dataFile') return { inputName: state.inputName, outputName: state.outputName, datatype, dims };
  if (datatype === 'BYTES') fail(`${path}.initial_state[0].data_file`, 'expected zero_data: a BYTES state starts from empty strings');
  if (dims.includes(-1)) fail(`${path}.dims`, `expected fixed dims for a state read from a data_file, got ${shapeText(dims)}`);
  return { inputName: state.inputName, outputName: state.outputName, datatype, dims, initialFile: initial.stateData.value };
}

function specNamed(specs: readonly TensorSpec[], name: string, kind: 'input' | 'output', field: string, fail: (field: string, reason: string) => never): TensorSpec {
  const spec = specs.find((s) => s.name === name);
  if (spec) return spec;
  const names = specs.map((s) => JSON.stringify(s.name)).join(', ');
  return fail(field, `expected the name of one of the ONNX model's ${kind}s (${names}), got ${JSON.stringify(name)}`);
}

function specDatatype(spec: TensorSpec, field: string, fail: (field: string, reason: string) => never): Datatype {
  if (isDatatype(spec.datatype)) return spec.datatype;
  return fail(field, `the ONNX model's ${JSON.stringify(spec.name)} has type ${JSON.stringify(spec.datatype)}, which Fabriek does not serve`);
}

/** A control carries one value per batch item: Triton's [batch, 1] (or [1] without batching). */
function oneValuePerItem(spec: TensorSpec, batching: boolean, field: string, fail: (field: string, reason: string) => never): 0 | 1 {
  const item = batching ? spec.shape.slice(1) : spec.shape;
  if (item.length === 0) return 0;
  if (item.length === 1 && (item[0] === 1n || item[0] === -1n)) return 1;
  return fail(field, `expected a control input of one value per request (shape ${batching ? '[-1, 1] or [-1]' : '[1] or []'}), got ${JSON.stringify(spec.name)} of shape ${shapeText(spec.shape)}`);
}

function falseTrueOf(
  control: ModelSequenceBatching_Control,
  datatype: Datatype,
  path: string,
  fail: (field: string, reason: string) => never,
): readonly [number | boolean, number | boolean] {
  const given = [
    ['int32_false_true', control.int32FalseTrue, 'INT32'],
    ['fp32_false_true', control.fp32FalseTrue, 'FP32'],
    ['bool_false_true', control.boolFalseTrue, 'BOOL'],
  ] as const;
  const set = given.filter(([, values]) => values.length > 0);
  if (set.length !== 1) {
    return fail(path, `expected exactly one of int32_false_true, fp32_false_true or bool_false_true, got ${set.length === 0 ? 'none' : set.map(([f]) => f).join(' and ')}`);
  }
  const [field, values, type] = set[0] as (typeof given)[number];
  if (values.length !== 2) fail(`${path}.${field}`, `expected two values, false then true, got ${values.length}`);
  const fitting = given.find(([, , t]) => t === datatype);
  if (fitting === undefined) fail(path, `expected the ONNX model's input to be INT32, FP32 or BOOL for this control, got ${datatype}`);
  if (type !== datatype) fail(`${path}.${field}`, `expected ${fitting?.[0]} for the ONNX model's ${configNameOf(datatype)} input, got ${field}`);
  return [values[0] as number | boolean, values[1] as number | boolean];
}
