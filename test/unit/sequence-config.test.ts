import { describe, expect, it } from 'vitest';
import { completeConfig } from '../../models/config/complete.js';
import { ConfigError, parseModelConfig } from '../../models/config/model-config.js';
import { type TensorSpec } from '../../proto/gen/worker.js';
import { configErrorOf } from '../helpers/config-error.js';

// sequence_batching read from config.pbtxt and checked against the model's
// own inputs and outputs (running_sum's, as ONNX Runtime reports them).

const spec = (name: string, datatype: string, shape: readonly number[]): TensorSpec => ({ name, datatype, shape: shape.map(BigInt), dimNames: shape.map(() => '') });

const INPUTS = [
  spec('INPUT', 'FP32', [-1, 1]),
  spec('STATE_IN', 'FP32', [-1, 1]),
  spec('START', 'INT32', [-1, 1]),
  spec('END', 'INT32', [-1, 1]),
  spec('READY', 'INT32', [-1, 1]),
  spec('CORRID', 'UINT64', [-1, 1]),
];
const OUTPUTS = [spec('OUTPUT', 'FP32', [-1, 1]), spec('STATE_OUT', 'FP32', [-1, 1]), spec('CONTROLS', 'INT32', [-1, 3])];

const CONTROLS = `control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },
    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "READY" control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]`;
const STATE = 'state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]';

const complete = (sequence: string, extra = '') => {
  const parsed = parseModelConfig(`name: "m"\nmax_batch_size: 8\n${extra}\nsequence_batching {\n${sequence}\n}`, 'm/config.pbtxt');
  return completeConfig({ name: 'm', config: parsed.config, present: parsed.present, file: 'm/config.pbtxt', inputs: INPUTS, outputs: OUTPUTS, defaultMaxBatchSize: 8 });
};

const failure = (sequence: string, extra = ''): ConfigError => configErrorOf(() => complete(sequence, extra));

describe('sequence_batching', () => {
  it('hides the control and state tensors from the signature, and plans them', () => {
    const { signature, sequence, config } = complete(`${CONTROLS}\n${STATE}\nmax_sequence_idle_microseconds: 2500`);
    expect(signature.inputs.map((t) => t.name)).toEqual(['INPUT']);
    expect(signature.outputs.map((t) => t.name)).toEqual(['OUTPUT', 'CONTROLS']);
    expect(sequence?.controls.map((c) => [c.name, c.kind, c.datatype, c.falseTrue, c.itemRank])).toEqual([
      ['START', 'start', 'INT32', [0, 1], 1],
      ['END', 'end', 'INT32', [0, 1], 1],
      ['READY', 'ready', 'INT32', [0, 1], 1],
      ['CORRID', 'corrid', 'UINT64', undefined, 1],
    ]);
    expect(sequence?.states).toEqual([{ inputName: 'STATE_IN', outputName: 'STATE_OUT', datatype: 'FP32', dims: [1] }]);
    expect(sequence?.idleUs).toBe(2500);
    expect(sequence?.maxCandidates).toBe(0);
    // Triton's defaults written out: the direct strategy.
    expect(config.schedulingChoice?.$case).toBe('sequenceBatching');
    const written = config.schedulingChoice?.$case === 'sequenceBatching' ? config.schedulingChoice.value : undefined;
    expect(written?.strategyChoice?.$case).toBe('direct');
  });

  it('takes Triton\'s defaults: a 1 s idle limit, state dims and type from the model, oldest\'s candidates', () => {
    const { sequence } = complete(`${CONTROLS}\nstate [ { input_name: "STATE_IN" output_name: "STATE_OUT" } ]\noldest { max_candidate_sequences: 12 preferred_batch_size: [ 4 ] }`);
    expect(sequence?.idleUs).toBe(1_000_000);
    expect(sequence?.states[0]?.dims).toEqual([1]);
    expect(sequence?.maxCandidates).toBe(12);
  });

  it('reads fp32 and bool controls, and warns of fields it does not act on', () => {
    const parsed = parseModelConfig(
      'sequence_batching { state [ { input_name: "S" output_name: "T" use_same_buffer_for_input_output: true } ] iterative_sequence: true control_input [ { name: "A" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0.5, 1.5 ] } ] } ] }',
      'm/config.pbtxt',
    );
    const seq = parsed.config.schedulingChoice?.$case === 'sequenceBatching' ? parsed.config.schedulingChoice.value : undefined;
    expect(seq?.controlInput[0]?.control[0]?.fp32FalseTrue).toEqual([0.5, 1.5]);
    expect(parsed.warnings.join('\n')).toContain('sequence_batching.iterative_sequence: ignored');
    expect(parsed.warnings.join('\n')).toContain('use_same_buffer_for_input_output: ignored');
  });

  it.each([
    ['an unknown control input', 'control_input [ { name: "BEGIN" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] } ]',
      'sequence_batching.control_input[0].name', 'expected the name of one of the ONNX model\'s inputs'],
    ['two controls on one input', 'control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }, { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] } ]',
      'sequence_batching.control_input[0].control', 'expected exactly one control, got 2'],
    ['a kind twice', 'control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] }, { name: "END" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] } ]',
      'sequence_batching.control_input[1].control[0].kind', 'expected each control kind once, got CONTROL_SEQUENCE_START again'],
    ['no values', 'control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START } ] } ]',
      'sequence_batching.control_input[0].control[0]', 'expected exactly one of int32_false_true, fp32_false_true or bool_false_true, got none'],
    ['one value', 'control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 1 ] } ] } ]',
      'sequence_batching.control_input[0].control[0].int32_false_true', 'expected two values, false then true, got 1'],
    ['values of another type', 'control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] } ]',
      'sequence_batching.control_input[0].control[0].fp32_false_true', 'expected int32_false_true for the ONNX model\'s TYPE_INT32 input, got fp32_false_true'],
    ['a CORRID of a type Triton does not take', 'control_input [ { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_FP32 } ] } ]',
      'sequence_batching.control_input[0].control[0].data_type', 'expected one of TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32, TYPE_STRING for CONTROL_SEQUENCE_CORRID, got TYPE_FP32'],
    ['a CORRID of another type than the model\'s', 'control_input [ { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_INT64 } ] } ]',
      'sequence_batching.control_input[0].control[0].data_type', 'expected TYPE_UINT64 (the ONNX model\'s type for "CORRID"), got TYPE_INT64'],
    ['a state output of another type', 'state [ { input_name: "STATE_IN" output_name: "CONTROLS" } ]',
      'sequence_batching.state[0].output_name', 'expected an output of the input\'s type TYPE_FP32, got INT32 for "CONTROLS"'],
    ['an unknown state output', 'state [ { input_name: "STATE_IN" output_name: "NOPE" } ]',
      'sequence_batching.state[0].output_name', 'expected the name of one of the ONNX model\'s outputs'],
    ['a state of the wrong type', 'state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_INT32 } ]',
      'sequence_batching.state[0].data_type', 'expected TYPE_FP32 (the ONNX model\'s type for "STATE_IN"), got TYPE_INT32'],
    ['a state of the wrong dims', 'state [ { input_name: "STATE_IN" output_name: "STATE_OUT" dims: [ 2 ] } ]',
      'sequence_batching.state[0].dims', 'expected [1] to match the ONNX model\'s shape [-1, 1] less its batch dimension, got [2]'],
    ['a tensor claimed twice', 'control_input [ { name: "STATE_IN" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] } ]\nstate [ { input_name: "STATE_IN" output_name: "STATE_OUT" } ]',
      'sequence_batching.state[0].input_name', 'expected each model tensor in one control or state, got "STATE_IN" again'],
    ['an initial state of another type', 'state [ { input_name: "STATE_IN" output_name: "STATE_OUT" initial_state [ { data_type: TYPE_INT32 zero_data: true } ] } ]',
      'sequence_batching.state[0].initial_state[0].data_type', "expected the state's type TYPE_FP32, got TYPE_INT32"],
    ['an initial state of other dims', 'state [ { input_name: "STATE_IN" output_name: "STATE_OUT" initial_state [ { dims: [ 2 ] zero_data: true } ] } ]',
      'sequence_batching.state[0].initial_state[0].dims', "expected the state's dims [1], got [2]"],
    ['an initial state file outside its directory', 'state [ { input_name: "STATE_IN" output_name: "STATE_OUT" initial_state [ { data_file: "../x" } ] } ]',
      'sequence_batching.state[0].initial_state[0].data_file', "expected a file name inside the model's initial_state/ directory (relative, no '..')"],
  ])('refuses %s, naming the field', (_name, sequence, field, reason) => {
    const error = failure(sequence);
    expect(error.field).toBe(field);
    expect(error.reason).toContain(reason);
  });

  it('refuses the response cache for a sequence model', () => {
    const error = failure(STATE, 'response_cache { enable: true }');
    expect(error.field).toBe('response_cache.enable');
  });
});
