// A small typed builder for ONNX graphs over onnx-proto's generated protobufjs
// classes. Enough for the test and example models: typed inputs/outputs with
// symbolic dims, float initializers, nodes with int/float/string attributes.

import onnxProto, { type onnx as OnnxTypes } from 'onnx-proto';

// onnx-proto is a CommonJS protobufjs static module: `module.exports = { onnx }`.
const { onnx } = onnxProto;

/** ONNX TensorProto.DataType codes, by ONNX element-type name. */
export const ELEM_TYPE = {
  float: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  double: 11,
  uint32: 12,
  uint64: 13,
  bfloat16: 16,
} as const;

export type ElemType = keyof typeof ELEM_TYPE;

/** A dimension: a fixed size, or a symbolic (dynamic) name such as 'batch'. */
export type Dim = number | string;

/**
 * Attribute values. Plain numbers and number arrays are INT/INTS because the
 * operators used here (kernel_shape, pads, axis, transB, to) take ints; wrap
 * a value as { float } / { floats } to get FLOAT/FLOATS.
 */
export type AttrValue =
  | number
  | readonly number[]
  | string
  | { readonly float: number }
  | { readonly floats: readonly number[] };

export type Attrs = Readonly<Record<string, AttrValue>>;

/** Tensor data for an initializer; the element type follows the array type. */
export type InitData = Float32Array | Float64Array | Int32Array | BigInt64Array;

export interface ModelOptions {
  /** Default 17. */
  readonly opset?: number;
  /** Default 8 (the IR version that goes with opset 17). */
  readonly irVersion?: number;
  readonly docString?: string;
}

const PRODUCER_NAME = 'fabriek-test-models';
const PRODUCER_VERSION = '1';

// protobufjs writes raw_data as given; ONNX requires little-endian, which is
// what typed arrays hold on every platform Node supports in practice.
const HOST_IS_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function valueInfo(name: string, type: ElemType, dims: readonly Dim[]): OnnxTypes.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM_TYPE[type],
        shape: {
          dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
        },
      },
    },
  };
}

function attribute(name: string, value: AttrValue): OnnxTypes.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`attribute ${name}: ${value} is not an int; use { float }`);
    return { name, type: T.INT, i: value };
  }
  if (typeof value === 'string') {
    return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  }
  if ('float' in value) return { name, type: T.FLOAT, f: value.float };
  if ('floats' in value) return { name, type: T.FLOATS, floats: [...value.floats] };
  if (!value.every(Number.isInteger)) throw new Error(`attribute ${name}: non-int in ints; use { floats }`);
  return { name, type: T.INTS, ints: [...value] };
}

function elemTypeOf(data: InitData): ElemType {
  if (data instanceof Float32Array) return 'float';
  if (data instanceof Float64Array) return 'double';
  if (data instanceof Int32Array) return 'int32';
  return 'int64';
}

export class GraphBuilder {
  private readonly inputs: OnnxTypes.IValueInfoProto[] = [];
  private readonly outputs: OnnxTypes.IValueInfoProto[] = [];
  private readonly nodes: OnnxTypes.INodeProto[] = [];
  private readonly initializers: OnnxTypes.ITensorProto[] = [];
  private readonly names = new Set<string>();
  private nodeCount = 0;

  constructor(readonly name: string) {}

  /** Declares a graph input; returns its name for use in node(). */
  input(name: string, type: ElemType, dims: readonly Dim[]): string {
    this.claim(name);
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Declares a graph output (some node must produce `name`). */
  output(name: string, type: ElemType, dims: readonly Dim[]): string {
    this.outputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Adds a constant tensor (weights); returns its name. */
  initializer(name: string, dims: readonly number[], data: InitData): string {
    const count = dims.reduce((a, b) => a * b, 1);
    if (count !== data.length) throw new Error(`initializer ${name}: dims ${dims.join('x')} != ${data.length} values`);
    if (!HOST_IS_LE) throw new Error('raw_data must be little-endian; big-endian hosts are not supported');
    this.claim(name);
    this.initializers.push({
      name,
      dims: [...dims],
      dataType: ELEM_TYPE[elemTypeOf(data)],
      // Copy so later mutation of the caller's array cannot change the model.
      rawData: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)),
    });
    return name;
  }

  /**
   * Adds a node. `outputs` may be a single name; returns the output names.
   * Nodes must be added in topological order (ONNX requires it).
   */
  node(opType: string, inputs: readonly string[], outputs: string | readonly string[], attrs: Attrs = {}): string[] {
    const outs = typeof outputs === 'string' ? [outputs] : [...outputs];
    for (const o of outs) this.claim(o);
    this.nodes.push({
      name: `${opType.toLowerCase()}_${this.nodeCount++}`,
      opType,
      input: [...inputs],
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs;
  }

  /** Shorthand for a single-output node; returns the output name. */
  op(opType: string, inputs: readonly string[], output: string, attrs: Attrs = {}): string {
    this.node(opType, inputs, output, attrs);
    return output;
  }

  toModel(options: ModelOptions = {}): OnnxTypes.IModelProto {
    return {
      irVersion: options.irVersion ?? 8,
      opsetImport: [{ domain: '', version: options.opset ?? 17 }],
      producerName: PRODUCER_NAME,
      producerVersion: PRODUCER_VERSION,
      ...(options.docString === undefined ? {} : { docString: options.docString }),
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    };
  }

  /** Serialized ModelProto. Deterministic: same calls give the same bytes. */
  encode(options: ModelOptions = {}): Uint8Array {
    return onnx.ModelProto.encode(onnx.ModelProto.create(this.toModel(options))).finish();
  }

  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`graph ${this.name}: name ${name} defined twice`);
    this.names.add(name);
  }
}

/** A float initializer read back from a serialized model (for reference checks). */
export interface FloatTensor {
  readonly dims: readonly number[];
  readonly data: Float32Array;
}

/** Decodes a model and returns its FLOAT initializers (stored as raw_data) by name. */
export function readFloatInitializers(modelBytes: Uint8Array): Map<string, FloatTensor> {
  const model = onnx.ModelProto.decode(modelBytes);
  const out = new Map<string, FloatTensor>();
  for (const t of model.graph?.initializer ?? []) {
    // Decoded messages type every field as optional; only raw_data floats are ours.
    const raw = t.rawData;
    if (t.dataType !== ELEM_TYPE.float || !t.name || !raw || raw.byteLength === 0) continue;
    // Copy into a fresh, aligned buffer: the decoded bytes are a view into
    // modelBytes (and on Node a Buffer, whose slice() does not copy).
    const data = new Float32Array(new Uint8Array(raw).buffer);
    out.set(t.name, { dims: (t.dims ?? []).map(Number), data });
  }
  return out;
}
