import { describe, expect, it } from 'vitest';
import { completeConfig } from '../../models/config/complete.js';
import { batchesRequests, ConfigError, parseModelConfig } from '../../models/config/model-config.js';
import { ModelDynamicBatching } from '../../proto/gen/model_config.js';
import { type TensorSpec } from '../../proto/gen/worker.js';
import { configErrorOf } from '../helpers/config-error.js';

// Ragged inputs, batch_input and batch_output read from config.pbtxt and
// checked against the model's own inputs and outputs (ragged_sum's, as ONNX
// Runtime reports them, plus an item-shape input for BATCH_ITEM_SHAPE).

const spec = (name: string, datatype: string, shape: readonly number[]): TensorSpec => ({ name, datatype, shape: shape.map(BigInt), dimNames: shape.map(() => '') });

const INPUTS = [spec('INPUT', 'FP32', [-1]), spec('ITEM_LENGTHS', 'INT32', [-1]), spec('SHAPES', 'INT32', [-1, 2]), spec('DENSE', 'FP32', [-1, 2, 2])];
const OUTPUTS = [spec('SUM', 'FP32', [-1]), spec('DOUBLED', 'FP32', [-1])];

const RAGGED = 'input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]';
const LENGTHS = 'batch_input [ { kind: BATCH_ITEM_SHAPE_FLATTEN target_name: "ITEM_LENGTHS" data_type: TYPE_INT32 source_input: "INPUT" } ]';
const SHAPES = 'batch_input [ { kind: BATCH_ITEM_SHAPE target_name: "SHAPES" data_type: TYPE_INT32 source_input: "DENSE" } ]';
const SCATTER = 'output [ { name: "DOUBLED" data_type: TYPE_FP32 dims: [ -1 ] } ]\nbatch_output [ { target_name: "DOUBLED" kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: "INPUT" } ]';
const DENSE = 'input [ { name: "DENSE" data_type: TYPE_FP32 dims: [ 2, 2 ] } ]';
const WHOLE = [RAGGED, LENGTHS, SCATTER, DENSE, SHAPES].join('\n');

const complete = (text: string, maxBatchSize = 8) => {
  const parsed = parseModelConfig(`name: "m"\nmax_batch_size: ${maxBatchSize}\n${text}`, 'm/config.pbtxt');
  return completeConfig({ name: 'm', config: parsed.config, present: parsed.present, file: 'm/config.pbtxt', inputs: INPUTS, outputs: OUTPUTS, defaultMaxBatchSize: 8 });
};

const failure = (text: string, maxBatchSize = 8): ConfigError => configErrorOf(() => complete(text, maxBatchSize));

describe('ragged batching config', () => {
  it('plans the ragged input, the batch inputs and the batch output; hides the batch inputs from clients', () => {
    const { signature, batchIo, config } = complete(WHOLE);
    expect(signature.inputs.map((t) => [t.name, t.dims])).toEqual([
      ['INPUT', [-1]],
      ['DENSE', [2, 2]],
    ]);
    expect(signature.outputs.map((t) => [t.name, t.dims])).toEqual([
      ['DOUBLED', [-1]],
      ['SUM', [1]],
    ]);
    expect([...(batchIo?.ragged ?? [])]).toEqual(['INPUT']);
    expect(batchIo?.inputs).toEqual([
      { kind: 'item_shape_flatten', targets: ['ITEM_LENGTHS'], datatype: 'INT32', source: 'INPUT' },
      { kind: 'item_shape', targets: ['SHAPES'], datatype: 'INT32', source: 'DENSE' },
    ]);
    expect(batchIo?.outputs).toEqual([{ target: 'DOUBLED', source: 'INPUT', elementBytes: 4, shape: [-1, -1] }]);
    expect([...(batchIo?.serverInputs ?? [])]).toEqual(['ITEM_LENGTHS', 'SHAPES']);
    // ModelConfig answers carry them (Triton's field numbers 20 and 21).
    expect(config.batchInput.map((b) => b.targetName)).toEqual([['ITEM_LENGTHS'], ['SHAPES']]);
    expect(config.batchOutput[0]?.targetName).toEqual(['DOUBLED']);
    // A worker must not merge such a model's executions by rows.
    expect(batchesRequests({ ...config, schedulingChoice: { $case: 'dynamicBatching', value: ModelDynamicBatching.fromPartial({}) } })).toBe(false);
  });

  it('leaves a model without any of it unplanned', () => {
    const { batchIo } = complete(DENSE);
    expect(batchIo).toBeUndefined();
  });

  it.each([
    ['a model that does not batch', WHOLE, 0, 'input[0].allow_ragged_batch: expected a model that batches (max_batch_size > 0)'],
    ['a ragged input the model does not take as [-1]', 'input [ { name: "DENSE" data_type: TYPE_FP32 dims: [ 2, 2 ] allow_ragged_batch: true } ]', 8, 'input[0].allow_ragged_batch: expected the ONNX model\'s input "DENSE" to have shape [-1]'],
    ['an optional ragged input', 'input [ { name: "INPUT" dims: [ -1 ] allow_ragged_batch: true optional: true } ]', 8, 'input[0].optional: expected false: a ragged input cannot be optional'],
    ['a ragged input without dims', 'input [ { name: "INPUT" allow_ragged_batch: true } ]', 8, 'input[0].dims: expected the dims clients send'],
    ['a batch input of another type', `${RAGGED}\nbatch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "ITEM_LENGTHS" data_type: TYPE_INT64 source_input: "INPUT" } ]`, 8, 'batch_input[0].data_type: expected TYPE_INT32 or TYPE_FP32, got TYPE_INT64'],
    ['a batch input whose type is not the model\'s', `${RAGGED}\nbatch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "ITEM_LENGTHS" data_type: TYPE_FP32 source_input: "INPUT" } ]`, 8, 'batch_input[0].data_type: expected the ONNX model\'s type for "ITEM_LENGTHS", TYPE_INT32, got TYPE_FP32'],
    ['a batch input from an input the config does not list', `${RAGGED}\nbatch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "ITEM_LENGTHS" data_type: TYPE_INT32 source_input: "NOPE" } ]`, 8, 'batch_input[0].source_input: expected an input listed in the config\'s input, got "NOPE"'],
    ['a batch input with two sources', `${RAGGED}\n${DENSE}\nbatch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "ITEM_LENGTHS" data_type: TYPE_INT32 source_input: [ "INPUT", "DENSE" ] } ]`, 8, 'batch_input[0].source_input: expected exactly one input, got 2'],
    ['a batch input into a client input', `${RAGGED}\n${DENSE}\nbatch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "DENSE" data_type: TYPE_FP32 source_input: "INPUT" } ]`, 8, 'batch_input[0].target_name[0]: expected a model input clients do not send, got "DENSE"'],
    ['a batch input the model lacks', `${RAGGED}\nbatch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "COUNTS" data_type: TYPE_INT32 source_input: "INPUT" } ]`, 8, 'batch_input[0].target_name[0]: expected the name of one of the ONNX model\'s inputs'],
    ['a batch input made twice', `${RAGGED}\nbatch_input [ { kind: BATCH_ELEMENT_COUNT target_name: [ "ITEM_LENGTHS", "ITEM_LENGTHS" ] data_type: TYPE_INT32 source_input: "INPUT" } ]`, 8, 'batch_input[0].target_name[1]: expected each model input made once'],
    ['an item shape into a 1-D input', `${RAGGED}\nbatch_input [ { kind: BATCH_ITEM_SHAPE target_name: "ITEM_LENGTHS" data_type: TYPE_INT32 source_input: "INPUT" } ]`, 8, 'batch_input[0].target_name[0]: expected the ONNX model\'s input "ITEM_LENGTHS" to have shape [-1, k] for BATCH_ITEM_SHAPE, got [-1]'],
    ['an item shape of another rank', `${RAGGED}\nbatch_input [ { kind: BATCH_ITEM_SHAPE target_name: "SHAPES" data_type: TYPE_INT32 source_input: "INPUT" } ]`, 8, 'to have shape [-1, 1] (the rank of "INPUT" per batch item), got [-1, 2]'],
    ['a batch output not listed in output', `${RAGGED}\nbatch_output [ { target_name: "DOUBLED" kind: BATCH_SCATTER_WITH_INPUT_SHAPE source_input: "INPUT" } ]`, 8, 'batch_output[0].target_name[0]: expected an output listed in the config\'s output with its dims'],
    ['a batch output whose -1 has no size to take', `${RAGGED}\noutput [ { name: "DOUBLED" dims: [ -1, -1 ] } ]\nbatch_output [ { target_name: "DOUBLED" source_input: "INPUT" } ]`, 8, 'expected its -1 dims within the rank of "INPUT" (2 with the batch dimension)'],
    ['an unknown batch input kind', `${RAGGED}\nbatch_input [ { kind: BATCH_SOMETHING target_name: "ITEM_LENGTHS" data_type: TYPE_INT32 source_input: "INPUT" } ]`, 8, 'batch_input[0].kind'],
  ])('refuses %s, naming the field', (_, text, maxBatchSize, message) => {
    expect(failure(text, maxBatchSize).message).toContain(message);
  });
});
