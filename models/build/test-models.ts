// Deterministic ONNX models for tests, benchmarks and the example repository.
// Every model is built from code (no binary fixtures to trust), and the same
// name always gives the same bytes, so re-runs can skip unchanged files.

import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { GraphBuilder, type Dim, type ElemType } from './onnx-graph.js';
import { uniformFloat32 } from './seeded-random.js';

// ---------------------------------------------------------------------------
// Model builders
// ---------------------------------------------------------------------------

/** Identity over one tensor: INPUT0 → OUTPUT0, same type and shape. */
export function identityModel(name: string, type: ElemType, dims: readonly Dim[]): Uint8Array {
  const g = new GraphBuilder(name);
  g.input('INPUT0', type, dims);
  g.op('Identity', ['INPUT0'], 'OUTPUT0');
  g.output('OUTPUT0', type, dims);
  return g.encode();
}

/** add_sub: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, FP32 [batch,16]. */
export function addSubModel(): Uint8Array {
  const dims = ['batch', 16] as const;
  const g = new GraphBuilder('add_sub');
  g.input('INPUT0', 'float', dims);
  g.input('INPUT1', 'float', dims);
  g.op('Add', ['INPUT0', 'INPUT1'], 'OUTPUT0');
  g.op('Sub', ['INPUT0', 'INPUT1'], 'OUTPUT1');
  g.output('OUTPUT0', 'float', dims);
  g.output('OUTPUT1', 'float', dims);
  return g.encode();
}

/** multi_dtype: three inputs of different types, one op each. */
export function multiDtypeModel(): Uint8Array {
  const dims = ['batch', 4] as const;
  const g = new GraphBuilder('multi_dtype');
  g.input('A', 'int32', dims);
  g.input('B', 'double', dims);
  g.input('C', 'bool', dims);
  g.op('Cast', ['A'], 'A_FLOAT', { to: 1 /* FLOAT */ });
  g.op('Add', ['B', 'B'], 'B_DOUBLED');
  g.op('Not', ['C'], 'C_NOT');
  g.output('A_FLOAT', 'float', dims);
  g.output('B_DOUBLED', 'double', dims);
  g.output('C_NOT', 'bool', dims);
  return g.encode();
}

/** fixed_fp32: Y = Relu(X), X FP32 [2,3] with no dynamic dim (→ max_batch_size 0). */
export function fixedFp32Model(): Uint8Array {
  const g = new GraphBuilder('fixed_fp32');
  g.input('X', 'float', [2, 3]);
  g.op('Relu', ['X'], 'Y');
  g.output('Y', 'float', [2, 3]);
  return g.encode();
}

// He-uniform weights (±sqrt(6/fan_in)) keep activation variance roughly
// constant through ReLU layers, so deep MLP logits are O(1), not vanishing.
// Biases use the smaller PyTorch default ±1/sqrt(fan_in).
function dense(g: GraphBuilder, model: string, layer: string, x: string, fanIn: number, fanOut: number, out: string): string {
  const w = g.initializer(`${layer}.weight`, [fanOut, fanIn], uniformFloat32(`${model}/${layer}.weight`, fanOut * fanIn, Math.sqrt(6 / fanIn)));
  const b = g.initializer(`${layer}.bias`, [fanOut], uniformFloat32(`${model}/${layer}.bias`, fanOut, 1 / Math.sqrt(fanIn)));
  // Weights stored [out, in] (PyTorch layout), hence transB.
  return g.op('Gemm', [x, w, b], out, { transB: 1 });
}

/**
 * MLP "input" FP32 [batch,inputSize] → Gemm+Relu per hidden layer → Gemm →
 * "logits" FP32 [batch,outputSize]. Layers are named fc1..fcN (fcN = logits).
 */
export function mlpModel(name: string, hidden: readonly number[], inputSize = 784, outputSize = 10): Uint8Array {
  const g = new GraphBuilder(name);
  let x = g.input('input', 'float', ['batch', inputSize]);
  let fanIn = inputSize;
  hidden.forEach((width, i) => {
    const h = dense(g, name, `fc${i + 1}`, x, fanIn, width, `fc${i + 1}_out`);
    x = g.op('Relu', [h], `relu${i + 1}_out`);
    fanIn = width;
  });
  dense(g, name, `fc${hidden.length + 1}`, x, fanIn, outputSize, 'logits');
  g.output('logits', 'float', ['batch', outputSize]);
  return g.encode();
}

/**
 * simple_cnn: "image" FP32 [batch,1,28,28] → Conv(8,3x3,pad 1) → Relu → MaxPool 2
 * → Conv(16,3x3,pad 1) → Relu → MaxPool 2 → Flatten → Gemm(784→10) → "logits".
 */
export function simpleCnnModel(): Uint8Array {
  const name = 'simple_cnn';
  const g = new GraphBuilder(name);
  let x = g.input('image', 'float', ['batch', 1, 28, 28]);
  const convs = [
    { layer: 'conv1', cin: 1, cout: 8 },
    { layer: 'conv2', cin: 8, cout: 16 },
  ];
  for (const [i, { layer, cin, cout }] of convs.entries()) {
    const fanIn = cin * 9;
    const w = g.initializer(`${layer}.weight`, [cout, cin, 3, 3], uniformFloat32(`${name}/${layer}.weight`, cout * fanIn, Math.sqrt(6 / fanIn)));
    const b = g.initializer(`${layer}.bias`, [cout], uniformFloat32(`${name}/${layer}.bias`, cout, 1 / Math.sqrt(fanIn)));
    const c = g.op('Conv', [x, w, b], `${layer}_out`, { kernel_shape: [3, 3], pads: [1, 1, 1, 1] });
    const r = g.op('Relu', [c], `relu${i + 1}_out`);
    x = g.op('MaxPool', [r], `pool${i + 1}_out`, { kernel_shape: [2, 2], strides: [2, 2] });
  }
  const flat = g.op('Flatten', [x], 'flat', { axis: 1 });
  dense(g, name, 'fc', flat, 16 * 7 * 7, 10, 'logits');
  g.output('logits', 'float', ['batch', 10]);
  return g.encode();
}

/**
 * scalar_add: SUM = A + B over rank-0 FP32 tensors (ONNX shape []), as many
 * of ONNX's backend test models declare their inputs.
 */
export function scalarAddModel(): Uint8Array {
  const g = new GraphBuilder('scalar_add');
  g.input('A', 'float', []);
  g.input('B', 'float', []);
  g.op('Add', ['A', 'B'], 'SUM');
  g.output('SUM', 'float', []);
  return g.encode();
}

/** A conv (no padding given = "same" for odd kernels) with He-uniform weights and a bias (batch norm folded away). */
function conv(g: GraphBuilder, model: string, layer: string, x: string, cin: number, cout: number, k: number, stride: number): string {
  const fanIn = cin * k * k;
  const w = g.initializer(`${layer}.weight`, [cout, cin, k, k], uniformFloat32(`${model}/${layer}.weight`, cout * fanIn, Math.sqrt(6 / fanIn)));
  const b = g.initializer(`${layer}.bias`, [cout], uniformFloat32(`${model}/${layer}.bias`, cout, 1 / Math.sqrt(fanIn)));
  const p = (k - 1) >> 1;
  return g.op('Conv', [x, w, b], `${layer}_out`, { kernel_shape: [k, k], strides: [stride, stride], pads: [p, p, p, p] });
}

/**
 * ResNet-18's shape: "image" FP32 [batch,3,224,224] (602,112 bytes a row) →
 * 7×7/2 stem, 3×3/2 max pool, four stages of two basic blocks (widths
 * w, 2w, 4w, 8w; each later stage halves the size, with a 1×1/2 shortcut),
 * global average pool, Gemm → "logits" FP32 [batch,1000]. Batch norm is
 * folded into the convs' biases, as inference graphs do. w = 64 is
 * ResNet-18 itself (11.7 M weights, 1.8 GFLOP a row); smaller w keeps the
 * request size and the graph, at a fraction of the compute (w = 16: 1/16).
 * Weights are seeded: the same w always builds the same bytes.
 */
export function resnetModel(name: string, width = 64, classes = 1000): Uint8Array {
  const g = new GraphBuilder(name);
  let x = g.input('image', 'float', ['batch', 3, 224, 224]);
  x = g.op('Relu', [conv(g, name, 'stem', x, 3, width, 7, 2)], 'stem_relu');
  x = g.op('MaxPool', [x], 'stem_pool', { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] });
  let cin = width;
  for (let stage = 0; stage < 4; stage++) {
    const cout = width << stage;
    for (let block = 0; block < 2; block++) {
      const stride = stage > 0 && block === 0 ? 2 : 1;
      const id = `s${stage + 1}b${block + 1}`;
      const a = g.op('Relu', [conv(g, name, `${id}.conv1`, x, cin, cout, 3, stride)], `${id}_relu1`);
      const b = conv(g, name, `${id}.conv2`, a, cout, cout, 3, 1);
      const shortcut = stride === 1 && cin === cout ? x : conv(g, name, `${id}.down`, x, cin, cout, 1, stride);
      x = g.op('Relu', [g.op('Add', [b, shortcut], `${id}_sum`)], `${id}_out`);
      cin = cout;
    }
  }
  const pooled = g.op('GlobalAveragePool', [x], 'pool');
  const flat = g.op('Flatten', [pooled], 'flat', { axis: 1 });
  dense(g, name, 'fc', flat, cin, classes, 'logits');
  g.output('logits', 'float', ['batch', classes]);
  return g.encode();
}

/**
 * A model that takes a known, steady time a row with tiny requests:
 * "input" FP32 [batch,width] → `depth` MatMuls by one shared width×width
 * weight → "output" FP32 [batch,width]. Weights are uniform ±sqrt(3/width)
 * (variance 1/width), so values stay O(1) through the chain. Its time grows
 * with rows × depth × width², its file only with width².
 */
export function slowChainModel(name: string, width: number, depth: number): Uint8Array {
  const g = new GraphBuilder(name);
  let x = g.input('input', 'float', ['batch', width]);
  const w = g.initializer('w', [width, width], uniformFloat32(`${name}/w`, width * width, Math.sqrt(3 / width)));
  for (let i = 0; i < depth; i++) x = g.op('MatMul', [x, w], i === depth - 1 ? 'output' : `h${i + 1}`);
  g.output('output', 'float', ['batch', width]);
  return g.encode();
}

// ---------------------------------------------------------------------------
// Registry
/**
 * running_sum: a stateful model for Triton's sequence batcher. OUTPUT is the
 * sum of the sequence's INPUTs so far: the server keeps STATE_OUT and feeds it
 * back as STATE_IN (implicit state). CONTROLS and CORRELATION_ID echo the
 * control inputs the server filled (START, END, READY; CORRID), so tests and
 * users can see them.
 */
export function runningSumModel(): Uint8Array {
  const g = new GraphBuilder('running_sum');
  const dims = ['batch', 1] as const;
  g.input('INPUT', 'float', dims);
  g.input('STATE_IN', 'float', dims);
  g.input('START', 'int32', dims);
  g.input('END', 'int32', dims);
  g.input('READY', 'int32', dims);
  g.input('CORRID', 'uint64', dims);
  g.op('Add', ['STATE_IN', 'INPUT'], 'SUM');
  g.op('Identity', ['SUM'], 'OUTPUT');
  g.op('Identity', ['SUM'], 'STATE_OUT');
  g.op('Concat', ['START', 'END', 'READY'], 'CONTROLS', { axis: 1 });
  g.op('Identity', ['CORRID'], 'CORRELATION_ID');
  g.output('OUTPUT', 'float', dims);
  g.output('STATE_OUT', 'float', dims);
  g.output('CONTROLS', 'int32', ['batch', 3]);
  g.output('CORRELATION_ID', 'uint64', dims);
  return g.encode();
}

/** running_sum_unbatched: running_sum's sum without controls or a batch dimension (INPUT, STATE_IN, OUTPUT, STATE_OUT: FP32 [1]). */
export function runningSumUnbatchedModel(): Uint8Array {
  const g = new GraphBuilder('running_sum_unbatched');
  g.input('INPUT', 'float', [1]);
  g.input('STATE_IN', 'float', [1]);
  g.op('Add', ['STATE_IN', 'INPUT'], 'SUM');
  g.op('Identity', ['SUM'], 'OUTPUT');
  g.op('Identity', ['SUM'], 'STATE_OUT');
  g.output('OUTPUT', 'float', [1]);
  g.output('STATE_OUT', 'float', [1]);
  return g.encode();
}

/**
 * Each batch item's sum of `values` (its items end to end, 1-D) into `out`,
 * given each item's length (`lengths`): the running sums with a 0 in front,
 * taken at each item's end less at its start. `axis0` and `zero` are the
 * builder's initializers of 0 (INT32 scalar) and [0] (FP32).
 */
function itemSums(g: GraphBuilder, values: string, lengths: string, axis0: string, zero: string, out: string): void {
  g.op('CumSum', [values, axis0], 'running');
  g.op('Concat', [zero, 'running'], 'running0', { axis: 0 });
  g.op('CumSum', [lengths, axis0], 'ends');
  g.op('Sub', ['ends', lengths], 'starts');
  g.op('Gather', ['running0', 'ends'], 'at_ends', { axis: 0 });
  g.op('Gather', ['running0', 'starts'], 'at_starts', { axis: 0 });
  g.op('Sub', ['at_ends', 'at_starts'], out);
}

/**
 * ragged_sum: Triton's ragged batching. INPUT reaches the model as every
 * batch item's values end to end (shape [-1]), and ITEM_LENGTHS, a batch input
 * the server makes (BATCH_ITEM_SHAPE_FLATTEN of INPUT), as each item's length.
 * SUM is each item's sum, one per item; DOUBLED is INPUT × 2, which the server
 * scatters back to each request in the shape of its INPUT (batch_output).
 */
export function raggedSumModel(): Uint8Array {
  const g = new GraphBuilder('ragged_sum');
  g.input('INPUT', 'float', ['elements']);
  g.input('ITEM_LENGTHS', 'int32', ['items']);
  const axis = g.initializer('axis0', [], new Int32Array([0]));
  const zero = g.initializer('zero', [1], new Float32Array([0]));
  itemSums(g, 'INPUT', 'ITEM_LENGTHS', axis, zero, 'SUM');
  g.op('Add', ['INPUT', 'INPUT'], 'DOUBLED');
  g.output('SUM', 'float', ['items']);
  g.output('DOUBLED', 'float', ['elements']);
  return g.encode();
}

/**
 * ragged_running_sum: ragged batching and an implicit state together, as a
 * streaming model that takes chunks of any length: OUTPUT is the sum of every
 * value its sequence sent so far (STATE_IN → STATE_OUT, [batch, 1]); INPUT is
 * ragged and ITEM_LENGTHS its batch input, as in ragged_sum.
 */
export function raggedRunningSumModel(): Uint8Array {
  const g = new GraphBuilder('ragged_running_sum');
  g.input('INPUT', 'float', ['elements']);
  g.input('ITEM_LENGTHS', 'int32', ['items']);
  g.input('STATE_IN', 'float', ['items', 1]);
  const axis = g.initializer('axis0', [], new Int32Array([0]));
  const one = g.initializer('axes1', [1], new BigInt64Array([1n]));
  const zero = g.initializer('zero', [1], new Float32Array([0]));
  itemSums(g, 'INPUT', 'ITEM_LENGTHS', axis, zero, 'chunk_sums');
  g.op('Unsqueeze', ['chunk_sums', one], 'chunk_column');
  g.op('Add', ['STATE_IN', 'chunk_column'], 'total');
  g.op('Identity', ['total'], 'OUTPUT');
  g.op('Identity', ['total'], 'STATE_OUT');
  g.output('OUTPUT', 'float', ['items', 1]);
  g.output('STATE_OUT', 'float', ['items', 1]);
  return g.encode();
}

/** Width of the per-value MLP of ragged_mlp and row_mlp. */
export const VALUE_MLP_WIDTH = 2048;

/** The per-value MLP's weights: value → VALUE_MLP_WIDTH (tanh) → 1, no biases (so a padding 0 adds 0). */
function valueMlp(g: GraphBuilder, name: string): { w1: string; w2: string } {
  return {
    w1: g.initializer('w1', [1, VALUE_MLP_WIDTH], uniformFloat32(`${name}/w1`, VALUE_MLP_WIDTH, 1)),
    w2: g.initializer('w2', [VALUE_MLP_WIDTH, 1], uniformFloat32(`${name}/w2`, VALUE_MLP_WIDTH, 1 / VALUE_MLP_WIDTH)),
  };
}

/**
 * ragged_mlp: ragged_sum whose values first pass a small MLP each (1 →
 * VALUE_MLP_WIDTH, tanh → 1): SUM is each item's sum of f(value), with compute
 * that grows with the values sent. Same weights as row_mlp ('value_mlp' seeds).
 */
export function raggedMlpModel(): Uint8Array {
  const g = new GraphBuilder('ragged_mlp');
  g.input('INPUT', 'float', ['elements']);
  g.input('ITEM_LENGTHS', 'int32', ['items']);
  const { w1, w2 } = valueMlp(g, 'value_mlp');
  const axis = g.initializer('axis0', [], new Int32Array([0]));
  const one = g.initializer('axes1', [1], new BigInt64Array([1n]));
  const zero = g.initializer('zero', [1], new Float32Array([0]));
  g.op('Unsqueeze', ['INPUT', one], 'column');
  g.op('MatMul', ['column', w1], 'hidden');
  g.op('Tanh', ['hidden'], 'activated');
  g.op('MatMul', ['activated', w2], 'mapped');
  g.op('Squeeze', ['mapped', one], 'values');
  itemSums(g, 'values', 'ITEM_LENGTHS', axis, zero, 'SUM');
  g.output('SUM', 'float', ['items']);
  return g.encode();
}

/** row_mlp: ragged_mlp without ragged batching: INPUT FP32 [batch, n] → SUM FP32 [batch]. */
export function rowMlpModel(): Uint8Array {
  const g = new GraphBuilder('row_mlp');
  g.input('INPUT', 'float', ['batch', 'n']);
  const { w1, w2 } = valueMlp(g, 'value_mlp');
  const two = g.initializer('axes2', [1], new BigInt64Array([2n]));
  const rows = g.initializer('axes12', [2], new BigInt64Array([1n, 2n]));
  g.op('Unsqueeze', ['INPUT', two], 'column');
  g.op('MatMul', ['column', w1], 'hidden');
  g.op('Tanh', ['hidden'], 'activated');
  g.op('MatMul', ['activated', w2], 'mapped');
  g.op('ReduceSum', ['mapped', rows], 'SUM', { keepdims: 0 });
  g.output('SUM', 'float', ['batch']);
  return g.encode();
}

/** row_sum: ragged_sum's SUM without ragged batching: INPUT FP32 [batch, n] → SUM FP32 [batch], each row's sum. */
export function rowSumModel(): Uint8Array {
  const g = new GraphBuilder('row_sum');
  g.input('INPUT', 'float', ['batch', 'n']);
  const axes = g.initializer('axes', [1], new BigInt64Array([1n]));
  g.op('ReduceSum', ['INPUT', axes], 'SUM', { keepdims: 0 });
  g.output('SUM', 'float', ['batch']);
  return g.encode();
}

// ---------------------------------------------------------------------------

/** identity_<suffix> models: KServe-style suffix → ONNX element type. */
const IDENTITY_TYPES = {
  bool: 'bool',
  uint8: 'uint8',
  uint16: 'uint16',
  uint32: 'uint32',
  uint64: 'uint64',
  int8: 'int8',
  int16: 'int16',
  int32: 'int32',
  int64: 'int64',
  fp16: 'float16',
  fp64: 'double',
  string: 'string',
} as const satisfies Record<string, ElemType>;

type IdentityName = `identity_${keyof typeof IDENTITY_TYPES}`;

const identityBuilders = Object.fromEntries(
  Object.entries(IDENTITY_TYPES).map(([suffix, type]) => [
    `identity_${suffix}`,
    () => identityModel(`identity_${suffix}`, type, ['batch', 'n']),
  ]),
) as Record<IdentityName, () => Uint8Array>;

const BUILDERS = {
  // identity_fp32 has a fixed inner dim (unlike the other identity_<type>
  // models) because it doubles as the simplest example model.
  identity_fp32: () => identityModel('identity_fp32', 'float', ['batch', 16]),
  ...identityBuilders,
  string_identity: () => identityModel('string_identity', 'string', ['batch', 'n']),
  add_sub: addSubModel,
  multi_dtype: multiDtypeModel,
  fixed_fp32: fixedFp32Model,
  scalar_add: scalarAddModel,
  // One value per batch item (ONNX [batch]): Triton completes it as dims [1] reshape [].
  per_item_scalar: () => identityModel('per_item_scalar', 'int32', ['batch']),
  mlp: () => mlpModel('mlp', [1024, 1024, 1024]),
  mlp_large: () => mlpModel('mlp_large', [2048, 2048, 2048, 2048]),
  mlp_small: () => mlpModel('mlp_small', [128]),
  running_sum: runningSumModel,
  running_sum_unbatched: runningSumUnbatchedModel,
  ragged_sum: raggedSumModel,
  // ragged_sum's sums for requests batched only by equal length, or padded by the client (fabriek bench ragged).
  row_sum: rowSumModel,
  ragged_mlp: raggedMlpModel,
  ragged_running_sum: raggedRunningSumModel,
  row_mlp: rowMlpModel,
  simple_cnn: simpleCnnModel,
  // ResNet-18's request size and graph at 1/16 of its compute: the overload tests' slow model.
  resnet_small: () => resnetModel('resnet_small', 16),
  // ResNet-18 at full width (47 MB, ~90 images/s on 2 cores): issue #15's compute-bound model for the noisy-neighbour bench.
  resnet18: () => resnetModel('resnet18'),
  // 512-wide chain of 256 MatMuls: ~67 M multiply-adds a row from a 2 KB request (the shedding tests' model).
  slow_chain: () => slowChainModel('slow_chain', 512, 256),
  // Expected to fail to load in ORT CPU (exercises the server's load-error path).
  bf16_identity: () => identityModel('bf16_identity', 'bfloat16', ['batch', 4]),
} satisfies Record<string, () => Uint8Array>;

export type TestModelName = keyof typeof BUILDERS;

/** Every buildable model name. */
export const TEST_MODELS: readonly TestModelName[] = Object.keys(BUILDERS) as TestModelName[];

/** Models of the committed example repository (models/examples/). */
export const EXAMPLE_MODELS: readonly TestModelName[] = ['identity_fp32', 'add_sub', 'simple_cnn', 'string_identity', 'mlp_small', 'running_sum', 'ragged_sum'];

/** Hand-written configs shipped next to example models; others get theirs completed from the model. */
export const EXAMPLE_CONFIGS: Readonly<Partial<Record<TestModelName, string>>> = {
  add_sub: `name: "add_sub"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_FP32
    dims: [ 16 ]
  },
  {
    name: "INPUT1"
    data_type: TYPE_FP32
    dims: [ 16 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_FP32
    dims: [ 16 ]
  },
  {
    name: "OUTPUT1"
    data_type: TYPE_FP32
    dims: [ 16 ]
  }
]
dynamic_batching {
  max_queue_delay_microseconds: 100
}
instance_group [
  {
    count: 1
    kind: KIND_CPU
  }
]
`,
  running_sum: `name: "running_sum"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT"
    data_type: TYPE_FP32
    dims: [ 1 ]
  }
]
output [
  {
    name: "OUTPUT"
    data_type: TYPE_FP32
    dims: [ 1 ]
  }
]
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  control_input [
    {
      name: "START"
      control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ]
    },
    {
      name: "END"
      control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ]
    },
    {
      name: "READY"
      control [ { kind: CONTROL_SEQUENCE_READY int32_false_true: [ 0, 1 ] } ]
    },
    {
      name: "CORRID"
      control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ]
    }
  ]
  state [
    {
      input_name: "STATE_IN"
      output_name: "STATE_OUT"
      data_type: TYPE_FP32
      dims: [ 1 ]
    }
  ]
  oldest {
    max_candidate_sequences: 64
    max_queue_delay_microseconds: 500
  }
}
instance_group [
  {
    count: 1
    kind: KIND_CPU
  }
]
`,
  ragged_sum: `name: "ragged_sum"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [
  {
    name: "INPUT"
    data_type: TYPE_FP32
    dims: [ -1 ]
    allow_ragged_batch: true
  }
]
batch_input [
  {
    kind: BATCH_ITEM_SHAPE_FLATTEN
    target_name: "ITEM_LENGTHS"
    data_type: TYPE_INT32
    source_input: "INPUT"
  }
]
output [
  {
    name: "SUM"
    data_type: TYPE_FP32
    dims: [ 1 ]
    reshape: { shape: [ ] }
  },
  {
    name: "DOUBLED"
    data_type: TYPE_FP32
    dims: [ -1 ]
  }
]
batch_output [
  {
    target_name: "DOUBLED"
    kind: BATCH_SCATTER_WITH_INPUT_SHAPE
    source_input: "INPUT"
  }
]
dynamic_batching {
  max_queue_delay_microseconds: 2000
}
`,
};

export function isTestModelName(name: string): name is TestModelName {
  return Object.hasOwn(BUILDERS, name);
}

/** The serialized model (deterministic). Throws on an unknown name. */
export function buildModel(name: string): Uint8Array {
  if (!isTestModelName(name)) throw new Error(`unknown test model "${name}"; known: ${TEST_MODELS.join(', ')}`);
  return BUILDERS[name]();
}

/** Path of a model file in a Triton-style repository: <dir>/<name>/1/model.onnx. */
export function modelPath(repoDir: string, name: string): string {
  return join(repoDir, name, '1', 'model.onnx');
}

/**
 * Writes `bytes` to `path` unless the file already holds exactly them.
 * Returns true when written. Write-then-rename so concurrent builders (parallel
 * test files) never see a half-written model.
 */
export async function writeIfChanged(path: string, bytes: Uint8Array): Promise<boolean> {
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isFile() && existing.size === bytes.byteLength) {
    const current = await readFile(path);
    if (current.equals(bytes)) return false;
  }
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
  return true;
}

/**
 * Builds models into `<outDir>/<name>/1/model.onnx` (no config.pbtxt), all of
 * TEST_MODELS by default. Unchanged files are left alone. Returns the model
 * file paths in the order of `names`.
 */
export async function buildModels(outDir: string, names: readonly string[] = TEST_MODELS): Promise<string[]> {
  for (const name of names) {
    if (!isTestModelName(name)) throw new Error(`unknown test model "${name}"; known: ${TEST_MODELS.join(', ')}`);
  }
  const paths: string[] = [];
  // One at a time: mlp_large alone is ~57 MB, no need to hold several.
  for (const name of names) {
    const path = modelPath(outDir, name);
    await writeIfChanged(path, buildModel(name));
    paths.push(path);
  }
  return paths;
}

/** (Re)writes the example repository: EXAMPLE_MODELS plus their EXAMPLE_CONFIGS. Returns written-or-kept paths. */
export async function buildExampleRepository(dir: string): Promise<string[]> {
  const paths = await buildModels(dir, EXAMPLE_MODELS);
  for (const [name, config] of Object.entries(EXAMPLE_CONFIGS)) {
    const path = join(dir, name, 'config.pbtxt');
    await writeIfChanged(path, new TextEncoder().encode(config));
    paths.push(path);
  }
  return paths;
}
