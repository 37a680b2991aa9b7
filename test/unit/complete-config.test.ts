import { describe, expect, it } from 'vitest';
import { type CompleteConfigInput, completeConfig } from '../../models/config/complete.js';
import { ConfigError } from '../../models/config/config-error.js';
import { dynamicBatchingIn, parseModelConfig } from '../../models/config/model-config.js';
import { DataType, type ModelConfig, ModelInstanceGroup_Kind } from '../../proto/gen/model_config.js';
import { type TensorSpec } from '../../proto/gen/worker.js';
import { configErrorOf } from '../helpers/config-error.js';

const FILE = 'models/foo/config.pbtxt';

function spec(name: string, datatype: string, shape: number[], dimNames: string[] = []): TensorSpec {
  return { name, datatype, shape: shape.map(BigInt), dimNames };
}

/** A classifier ONNX Runtime would report: batch dim -1 named "N". */
const IMAGE = spec('image', 'FP32', [-1, 3, 224, 224], ['N', '', '', '']);
const LOGITS = spec('logits', 'FP32', [-1, 1000], ['N', '']);

function input(overrides: Partial<CompleteConfigInput> = {}): CompleteConfigInput {
  return { name: 'foo', config: undefined, inputs: [IMAGE], outputs: [LOGITS], defaultMaxBatchSize: 4, ...overrides };
}

/** Config + presence as the scanner hands them over. */
function fromText(text: string, overrides: Partial<CompleteConfigInput> = {}): CompleteConfigInput {
  const { config, present } = parseModelConfig(text, FILE);
  return input({ config, present, file: FILE, ...overrides });
}

function completionError(args: CompleteConfigInput): ConfigError {
  return configErrorOf(() => completeConfig(args));
}

describe('completeConfig without config.pbtxt', () => {
  it('batches a model whose every tensor has a dynamic first dim, stripping it from dims', () => {
    const { config, signature } = completeConfig(input());
    expect(config).toEqual({
      name: 'foo',
      platform: 'onnxruntime_onnx',
      backend: 'onnxruntime',
      runtime: '',
      versionPolicy: { policyChoice: { $case: 'latest', value: { numVersions: 1 } } },
      maxBatchSize: 4,
      input: [
        { name: 'image', dataType: DataType.TYPE_FP32, format: 0, dims: [3n, 224n, 224n], reshape: undefined, isShapeTensor: false, allowRaggedBatch: false, optional: false },
      ],
      output: [{ name: 'logits', dataType: DataType.TYPE_FP32, dims: [1000n], reshape: undefined, labelFilename: '', isShapeTensor: false }],
      optimization: undefined,
      schedulingChoice: undefined,
      instanceGroup: [{ name: 'foo_0', kind: ModelInstanceGroup_Kind.KIND_CPU, count: 1, gpus: [], profile: [], passive: false, hostPolicy: '' }],
      defaultModelFilename: '',
      metricTags: {},
      parameters: {},
      modelWarmup: [],
      batchInput: [],
      batchOutput: [],
    });
    expect(signature).toEqual({
      name: 'foo',
      maxBatchSize: 4,
      inputs: [{ name: 'image', datatype: 'FP32', dims: [3, 224, 224], dimNames: ['', '', ''], optional: false }],
      outputs: [{ name: 'logits', datatype: 'FP32', dims: [1000], dimNames: [''], optional: false }],
    });
  });

  it('does not batch when a tensor has a fixed first dim, and keeps full shapes', () => {
    const fixed = spec('x', 'INT64', [1, -1], ['', 'seq']);
    const { config, signature } = completeConfig(input({ inputs: [fixed], outputs: [spec('y', 'INT64', [-1, -1], ['', 'seq'])] }));
    expect(config.maxBatchSize).toBe(0);
    expect(config.input[0]?.dims).toEqual([1n, -1n]);
    expect(signature.inputs[0]).toEqual({ name: 'x', datatype: 'INT64', dims: [1, -1], dimNames: ['', 'seq'], optional: false });
    expect(signature.outputs[0]?.dims).toEqual([-1, -1]);
  });

  it('does not batch when an output cannot, nor when the model has no inputs', () => {
    expect(completeConfig(input({ outputs: [spec('s', 'FP32', [])] })).config.maxBatchSize).toBe(0);
    expect(completeConfig(input({ inputs: [] })).config.maxBatchSize).toBe(0);
  });

  it('does not batch when defaultMaxBatchSize is 0', () => {
    const { signature } = completeConfig(input({ defaultMaxBatchSize: 0 }));
    expect(signature.maxBatchSize).toBe(0);
    expect(signature.inputs[0]?.dims).toEqual([-1, 3, 224, 224]);
    expect(signature.inputs[0]?.dimNames).toEqual(['N', '', '', '']);
  });

  it("fills a batching model's per-item scalar as dims [1] reshaped to [] (Triton's rule)", () => {
    const { config, signature } = completeConfig(input({ inputs: [spec('k', 'INT32', [-1])], outputs: [spec('y', 'BYTES', [-1])] }));
    expect(config.maxBatchSize).toBe(4);
    expect(config.input[0]).toMatchObject({ dataType: DataType.TYPE_INT32, dims: [1n], reshape: { shape: [] } });
    expect(config.output[0]).toMatchObject({ dataType: DataType.TYPE_STRING, dims: [1n], reshape: { shape: [] } });
    expect(signature.inputs[0]).toEqual({ name: 'k', datatype: 'INT32', dims: [1], dimNames: [''], optional: false, reshape: [] });
    expect(signature.outputs[0]).toMatchObject({ dims: [1], reshape: [] });
  });

  it('fills a non-batching scalar as dims [] (the rank-0 shape the model declares), without reshape', () => {
    const { config, signature } = completeConfig(input({ inputs: [spec('s', 'FP64', [])], outputs: [spec('t', 'FP64', [])] }));
    expect(config.maxBatchSize).toBe(0);
    expect(config.input[0]).toMatchObject({ dims: [], reshape: undefined });
    expect(signature.inputs[0]).toEqual({ name: 's', datatype: 'FP64', dims: [], dimNames: [], optional: false });
  });

  it("takes a non-batching scalar written Triton's way, dims [1] reshape [], or as dims [1] alone, and hands the model []", () => {
    const scalar = { inputs: [spec('s', 'FP64', [])], outputs: [spec('t', 'FP64', [])] };
    const triton = completeConfig(fromText('input { name: "s" dims: [ 1 ] reshape { shape: [ ] } } output { name: "t" dims: [ 1 ] reshape { shape: [ ] } }', scalar));
    expect(triton.signature.inputs[0]).toEqual({ name: 's', datatype: 'FP64', dims: [1], dimNames: [''], optional: false, reshape: [] });
    expect(triton.signature.outputs[0]).toMatchObject({ dims: [1], reshape: [] });
    const plain = completeConfig(fromText('input { name: "s" dims: [ 1 ] }', scalar));
    expect(plain.signature.inputs[0]).toMatchObject({ dims: [1], reshape: [] });
  });

  it('names errors after the model when there is no file', () => {
    const error = completionError(input({ inputs: [spec('c', 'COMPLEX64', [-1, 2])] }));
    expect(error.message).toBe(
      'model "foo": input: the ONNX model\'s input "c" has type "COMPLEX64", which Fabriek does not serve; ' +
        'expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES, BF16',
    );
    expect(error.file).toBe('model "foo"');
    expect(error.field).toBe('input');
  });

  it('rejects an unsupported output type too', () => {
    const error = completionError(input({ outputs: [spec('o', '', [-1])] }));
    expect(error.field).toBe('output');
    expect(error.reason).toMatch(/^the ONNX model's output "o" has type "", which Fabriek does not serve; expected one of BOOL/);
  });

  it('rejects a bad defaultMaxBatchSize as a programming error', () => {
    expect(() => completeConfig(input({ defaultMaxBatchSize: -1 }))).toThrow(RangeError);
    expect(() => completeConfig(input({ defaultMaxBatchSize: 1.5 }))).toThrow('Expected defaultMaxBatchSize to be an integer ≥ 0, got 1.5');
  });
});

describe('completeConfig: max_batch_size set or unset', () => {
  it('uses the default when the file leaves max_batch_size out', () => {
    expect(completeConfig(fromText('name: "foo"')).config.maxBatchSize).toBe(4);
  });

  it('keeps an explicit max_batch_size: 0, with full shapes', () => {
    const { config, signature } = completeConfig(fromText('max_batch_size: 0'));
    expect(config.maxBatchSize).toBe(0);
    expect(signature.inputs[0]?.dims).toEqual([-1, 3, 224, 224]);
  });

  it("treats 0 as unset when presence is unknown (Triton's autofill rule)", () => {
    const { config } = parseModelConfig('max_batch_size: 0', FILE);
    expect(completeConfig(input({ config })).config.maxBatchSize).toBe(4);
  });

  it('keeps an explicit positive max_batch_size on a batchable model', () => {
    const { config, signature } = completeConfig(fromText('max_batch_size: 32'));
    expect(config.maxBatchSize).toBe(32);
    expect(signature.maxBatchSize).toBe(32);
    expect(signature.inputs[0]?.dims).toEqual([3, 224, 224]);
  });

  it('rejects max_batch_size > 0 for a model that cannot batch', () => {
    const error = completionError(fromText('max_batch_size: 8', { inputs: [spec('x', 'FP32', [1, 3])] }));
    expect(error.message).toBe(
      'models/foo/config.pbtxt: max_batch_size: expected 0 because the model cannot batch ' +
        '(the ONNX model\'s input "x" has shape [1, 3], whose first dimension is not -1), got 8',
    );
    const scalarOut = completionError(fromText('max_batch_size: 8', { outputs: [spec('s', 'FP32', [])] }));
    expect(scalarOut.reason).toBe(
      'expected 0 because the model cannot batch (the ONNX model\'s output "s" has shape [], whose first dimension is not -1), got 8',
    );
    const noInputs = completionError(fromText('max_batch_size: 8', { inputs: [] }));
    expect(noInputs.reason).toBe('expected 0 because the model cannot batch (the ONNX model has no inputs), got 8');
  });
});

describe('completeConfig: inputs and outputs the config lists', () => {
  const MODEL = {
    inputs: [spec('a', 'FP32', [-1, 16], ['batch', '']), spec('b', 'INT64', [-1, -1], ['batch', 'seq'])],
    outputs: [spec('y', 'FP32', [-1, 16], ['batch', ''])],
  };

  it('checks listed entries, fills what they omit, and appends unlisted tensors in model order', () => {
    const { config, signature } = completeConfig(
      fromText('max_batch_size: 8\ninput [ { name: "b" dims: [ 7 ] }, { name: "a" data_type: TYPE_FP32 dims: [ 16 ] } ]', MODEL),
    );
    expect(config.input.map((i) => [i.name, DataType[i.dataType], i.dims])).toEqual([
      ['b', 'TYPE_INT64', [7n]],
      ['a', 'TYPE_FP32', [16n]],
    ]);
    expect(config.output.map((o) => [o.name, DataType[o.dataType], o.dims])).toEqual([['y', 'TYPE_FP32', [16n]]]);
    expect(signature.inputs).toEqual([
      { name: 'b', datatype: 'INT64', dims: [7], dimNames: ['seq'], optional: false },
      { name: 'a', datatype: 'FP32', dims: [16], dimNames: [''], optional: false },
    ]);
  });

  it('fills dims and data_type of an entry that names only the tensor', () => {
    const { config } = completeConfig(fromText('output { name: "y" label_filename: "labels.txt" }', MODEL));
    expect(config.output[0]).toEqual({ name: 'y', dataType: DataType.TYPE_FP32, dims: [16n], reshape: undefined, labelFilename: 'labels.txt', isShapeTensor: false });
  });

  it('accepts a reshape that matches the model, and drops dim names it invalidates', () => {
    const scalarModel = { inputs: [spec('k', 'INT32', [-1], ['batch'])], outputs: [spec('y', 'INT32', [-1, 2])] };
    const { signature } = completeConfig(fromText('max_batch_size: 2 input { name: "k" dims: [ 1 ] reshape { shape: [ ] } }', scalarModel));
    expect(signature.inputs[0]).toEqual({ name: 'k', datatype: 'INT32', dims: [1], dimNames: [''], optional: false, reshape: [] });
    const reshaped = completeConfig(fromText('max_batch_size: 2 input { name: "a" dims: [ 4, 4 ] reshape { shape: [ 16 ] } }', MODEL));
    expect(reshaped.signature.inputs[0]).toMatchObject({ name: 'a', dims: [4, 4], dimNames: ['', ''], reshape: [16] });
  });

  it('lets a -1 in the model take any config value', () => {
    const { signature } = completeConfig(fromText('max_batch_size: 8 input { name: "b" dims: [ -1 ] }', MODEL));
    expect(signature.inputs[0]).toEqual({ name: 'b', datatype: 'INT64', dims: [-1], dimNames: ['seq'], optional: false });
  });

  it('marks optional inputs optional when the model does not batch', () => {
    const { signature } = completeConfig(fromText('max_batch_size: 0 input { name: "b" optional: true }', MODEL));
    expect(signature.inputs.find((i) => i.name === 'b')).toMatchObject({ optional: true, dims: [-1, -1], dimNames: ['batch', 'seq'] });
  });

  const cases: [string, string, string, string][] = [
    // [name, config text, field, reason]
    ['a name the model lacks', 'input { name: "c" }', 'input[0].name', 'expected the name of one of the ONNX model\'s inputs ("a", "b"), got "c"'],
    ['an empty name', 'output [ { name: "y" }, { dims: [ 1 ] } ]', 'output[1].name', 'expected the name of one of the ONNX model\'s outputs ("y"), got ""'],
    ['a tensor listed twice', 'input [ { name: "a" }, { name: "b" }, { name: "a" } ]', 'input[2].name',
      'expected each input once, got "a" again (also input[0])'],
    ['a data_type that differs', 'input [ { name: "a" }, { name: "b" data_type: TYPE_INT32 } ]', 'input[1].data_type',
      'expected TYPE_INT64 (the ONNX model\'s type for "b"), got TYPE_INT32'],
    ['an output data_type that differs', 'output { name: "y" data_type: TYPE_FP16 dims: [ 16 ] }', 'output[0].data_type',
      'expected TYPE_FP32 (the ONNX model\'s type for "y"), got TYPE_FP16'],
    ['dims of the wrong rank', 'max_batch_size: 8 input { name: "a" dims: [ 4, 4 ] }', 'input[0].dims',
      'expected [16] to match the ONNX model\'s shape [-1, 16] less its batch dimension (-1 in the model allows any size), got [4, 4]'],
    ['a fixed dim that differs', 'max_batch_size: 8 output { name: "y" dims: [ 15 ] }', 'output[0].dims',
      'expected [16] to match the ONNX model\'s shape [-1, 16] less its batch dimension (-1 in the model allows any size), got [15]'],
    ['-1 where the model is fixed', 'max_batch_size: 8 input { name: "a" dims: [ -1 ] }', 'input[0].dims',
      'expected [16] to match the ONNX model\'s shape [-1, 16] less its batch dimension (-1 in the model allows any size), got [-1]'],
    ['full shape while batching', 'max_batch_size: 8 input { name: "a" dims: [ -1, 16 ] }', 'input[0].dims',
      'expected [16] to match the ONNX model\'s shape [-1, 16] less its batch dimension (-1 in the model allows any size), got [-1, 16]'],
    ['shape without batch dim while not batching', 'max_batch_size: 0 input { name: "a" dims: [ 16 ] }', 'input[0].dims',
      'expected [-1, 16] to match the ONNX model\'s shape [-1, 16] (-1 in the model allows any size), got [16]'],
    ['a reshape that does not match', 'input { name: "a" dims: [ 4, 4 ] reshape { shape: [ 4, 4 ] } }', 'input[0].reshape.shape',
      'expected [16] to match the ONNX model\'s shape [-1, 16] less its batch dimension (-1 in the model allows any size), got [4, 4]'],
    ['reshape without dims', 'input { name: "a" reshape { shape: [ 16 ] } }', 'input[0].dims', 'expected dims when reshape is set, got none'],
    ['an optional input while batching', 'max_batch_size: 8 input { name: "b" optional: true }', 'input[0].optional',
      'expected false: an optional input cannot be batched (max_batch_size 8), got true'],
  ];
  it.each(cases)('rejects %s', (_name, text, field, reason) => {
    const error = completionError(fromText(text, MODEL));
    expect(error.field).toBe(field);
    expect(error.reason).toBe(reason);
    expect(error.message).toBe(`${FILE}: ${field}: ${reason}`);
  });

  it("hints at reshape for a batching model's per-item scalar", () => {
    const error = completionError(fromText('max_batch_size: 4 input { name: "k" dims: [ 1 ] }', { inputs: [spec('k', 'INT32', [-1])], outputs: [LOGITS] }));
    expect(error.reason).toBe(
      "expected [] to match the ONNX model's shape [-1] less its batch dimension (-1 in the model allows any size), got [1]; " +
        'for one value per batch item write dims: [ 1 ] reshape: { shape: [ ] }',
    );
  });

  it('accepts only 1s for a true scalar and rejects anything else', () => {
    const scalar = { inputs: [spec('s', 'FP32', [])], outputs: [spec('t', 'FP32', [])] };
    expect(completeConfig(fromText('input { name: "s" dims: [ 1 ] }', scalar)).signature.inputs[0]?.dims).toEqual([1]);
    const error = completionError(fromText('input { name: "s" dims: [ 2 ] }', scalar));
    expect(error.message).toBe(`${FILE}: input[0].dims: expected only 1s (the ONNX model's "s" is a scalar), got [2]`);
  });

  it('rejects a listed tensor whose ONNX type is unsupported at its data_type', () => {
    const error = completionError(fromText('input { name: "z" }', { inputs: [spec('z', 'COMPLEX128', [-1])] }));
    expect(error.field).toBe('input[0].data_type');
    expect(error.reason).toMatch(/^the ONNX model's input "z" has type "COMPLEX128", which Fabriek does not serve/);
  });

  it('says the model has no outputs when it has none', () => {
    const error = completionError(fromText('output { name: "y" }', { outputs: [] }));
    expect(error.message).toBe(`${FILE}: output[0].name: expected no output: the ONNX model has none, got "y"`);
  });
});

describe('completeConfig: the rest of the config', () => {
  it('rejects a config that names another model, platform or backend', () => {
    expect(completionError(fromText('name: "bar"')).message).toBe(`${FILE}: name: expected "foo" (the model's directory name), got "bar"`);
    expect(completionError(fromText('platform: "tensorrt_plan"')).message).toBe(
      `${FILE}: platform: expected "onnxruntime_onnx" (Fabriek serves ONNX models only), got "tensorrt_plan"`,
    );
    expect(completionError(fromText('backend: "python"')).message).toBe(
      `${FILE}: backend: expected "onnxruntime" (Fabriek serves ONNX models only), got "python"`,
    );
  });

  it('normalises instance groups: names, count ≥ 1, KIND_AUTO left for the gateway', () => {
    const { config } = completeConfig(
      fromText('instance_group [ { count: 2 kind: KIND_GPU gpus: [ 0, 1 ] }, { name: "spare" kind: KIND_CPU }, { } ]'),
    );
    expect(config.instanceGroup.map((g) => [g.name, ModelInstanceGroup_Kind[g.kind], g.count, g.gpus])).toEqual([
      ['foo_0', 'KIND_GPU', 2, [0, 1]],
      ['spare', 'KIND_CPU', 1, []],
      ['foo_2', 'KIND_AUTO', 1, []],
    ]);
  });

  const groupCases: [string, string, string][] = [
    ['instance_group { kind: KIND_CPU gpus: [ 0 ] }', 'instance_group[0].gpus', 'expected no GPUs for kind KIND_CPU, got [0]'],
    ['instance_group [ {}, { kind: KIND_MODEL } ]', 'instance_group[1].kind',
      'expected KIND_AUTO, KIND_CPU or KIND_GPU (KIND_MODEL is for TensorFlow models), got KIND_MODEL'],
    ['instance_group { profile: [ "0" ] }', 'instance_group[0].profile', 'expected none (profiles are for TensorRT models), got ["0"]'],
  ];
  it.each(groupCases)('rejects %s', (text, field, reason) => {
    expect(completionError(fromText(text)).message).toBe(`${FILE}: ${field}: ${reason}`);
  });

  it('keeps dynamic_batching as configured, filling only default_priority_level', () => {
    const { config } = completeConfig(
      fromText('max_batch_size: 8 dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 priority_levels: 3 }'),
    );
    expect(dynamicBatchingIn(config)).toMatchObject({
      preferredBatchSize: [4, 8],
      maxQueueDelayMicroseconds: 100n,
      priorityLevels: 3n,
      defaultPriorityLevel: 3n,
    });
    const explicit = completeConfig(fromText('dynamic_batching { priority_levels: 3 default_priority_level: 1 }'));
    expect(dynamicBatchingIn(explicit.config)?.defaultPriorityLevel).toBe(1n);
    expect(completeConfig(fromText('max_batch_size: 8')).config.schedulingChoice).toBeUndefined();
  });

  it('rejects a preferred batch size above max_batch_size', () => {
    const error = completionError(fromText('max_batch_size: 8 dynamic_batching { preferred_batch_size: [ 4, 16 ] }'));
    expect(error.message).toBe(`${FILE}: dynamic_batching.preferred_batch_size[1]: expected at most max_batch_size (8), got 16`);
    const unbatched = completionError(fromText('max_batch_size: 0 dynamic_batching { preferred_batch_size: 2 }'));
    expect(unbatched.message).toBe(
      `${FILE}: dynamic_batching.preferred_batch_size[0]: expected at most max_batch_size (0: the model does not batch), got 2`,
    );
  });

  it('keeps version policy, optimization, parameters and metric tags', () => {
    const { config } = completeConfig(
      fromText(
        'version_policy { all {} } optimization { graph { level: 1 } } parameters { key: "p" value { string_value: "v" } } metric_tags { key: "k" value: "v" } default_model_filename: "net.onnx"',
      ),
    );
    expect(config.versionPolicy).toEqual({ policyChoice: { $case: 'all', value: {} } });
    expect(config.optimization?.graph).toEqual({ level: 1 });
    expect(config.parameters).toEqual({ p: { stringValue: 'v' } });
    expect(config.metricTags).toEqual({ k: 'v' });
    expect(config.defaultModelFilename).toBe('net.onnx');
  });

  it('does not modify the config it is given', () => {
    const args = fromText('max_batch_size: 8 input { name: "image" } dynamic_batching { priority_levels: 2 } instance_group { }');
    const before = structuredClone(args.config) as ModelConfig;
    const { config } = completeConfig(args);
    expect(args.config).toEqual(before);
    config.input[0]?.dims.push(9n);
    expect(args.config?.input[0]?.dims).toEqual([]);
  });

  it('completes the realistic Triton config against a matching model', () => {
    const text = `
      name: "foo"
      platform: "onnxruntime_onnx"
      max_batch_size: 8
      input [ { name: "image" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]
      dynamic_batching {
        preferred_batch_size: [4, 8] max_queue_delay_microseconds: 100 priority_levels: 2
        default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000 }
        priority_queue_policy { key: 1 value { max_queue_size: 5 } }
      }
      instance_group [ { count: 2 kind: KIND_GPU gpus: [0, 1] } ]
      version_policy: { specific { versions: [1, 3] } }
      parameters { key: "intra_op_thread_count" value: { string_value: "1" } }`;
    const { config, signature } = completeConfig(fromText(text));
    expect(signature).toEqual({
      name: 'foo',
      maxBatchSize: 8,
      inputs: [{ name: 'image', datatype: 'FP32', dims: [3, 224, 224], dimNames: ['', '', ''], optional: false }],
      outputs: [{ name: 'logits', datatype: 'FP32', dims: [1000], dimNames: [''], optional: false }],
    });
    expect(dynamicBatchingIn(config)?.defaultPriorityLevel).toBe(2n);
    expect(dynamicBatchingIn(config)?.priorityQueuePolicy.get(1n)?.maxQueueSize).toBe(5);
    expect(config.instanceGroup).toEqual([
      { name: 'foo_0', kind: ModelInstanceGroup_Kind.KIND_GPU, count: 2, gpus: [0, 1], profile: [], passive: false, hostPolicy: '' },
    ]);
  });
});
