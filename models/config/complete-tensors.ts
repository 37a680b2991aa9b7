import { configNameOf, type Datatype, DATATYPES, isDatatype } from '../../core/datatypes.js';
import { type TensorSignature } from '../../core/signature.js';
import { DataType, type ModelTensorReshape } from '../../proto/gen/model_config.js';
import { type TensorSpec } from '../../proto/gen/worker.js';
import { ConfigError } from './config-error.js';

/** What ModelInput and ModelOutput share, the part completion fills and checks. */
export interface ConfigTensor {
  name: string;
  dataType: DataType;
  dims: bigint[];
  reshape?: ModelTensorReshape | undefined;
}

export interface MergeTensorsInput<E extends ConfigTensor> {
  readonly kind: 'input' | 'output';
  readonly file: string;
  readonly entries: readonly E[];
  readonly specs: readonly TensorSpec[];
  readonly maxBatchSize: number;
  /** A config entry for a tensor the config leaves out. */
  readonly create: (filled: ConfigTensor) => E;
  readonly optional: (entry: E) => boolean;
  /** Tensors whose config dims say what clients send or get, not the model's own shape (ragged inputs, scattered outputs). */
  readonly clientShaped?: ReadonlySet<string> | undefined;
}

const DATA_TYPE_BY_NAME = new Map<string, DataType>();
for (const [key, value] of Object.entries(DataType)) {
  if (typeof value === 'number' && value > 0) DATA_TYPE_BY_NAME.set(key, value);
}

export const shapeText = (shape: readonly (bigint | number)[]): string => `[${shape.join(', ')}]`;

/**
 * Checks the config's entries for one side (inputs or outputs) against what
 * ONNX Runtime reports, fills what they leave out (data_type, dims, whole
 * entries), and derives the signature the gateway validates requests with.
 * Config entries keep their order; tensors they omit follow in model order.
 */
export function mergeTensors<E extends ConfigTensor>(
  m: MergeTensorsInput<E>,
): { entries: E[]; signatures: TensorSignature[] } {
  const batching = m.maxBatchSize > 0;
  const fail = (field: string, reason: string): never => {
    throw new ConfigError(m.file, field, reason);
  };
  const entries: E[] = [];
  const signatures: TensorSignature[] = [];
  const listed = new Map<string, number>();

  m.entries.forEach((entry, i) => {
    const path = `${m.kind}[${i}]`;
    const spec = m.specs.find((s) => s.name === entry.name);
    if (!spec) {
      const names = m.specs.map((s) => JSON.stringify(s.name)).join(', ');
      const expected = names
        ? `the name of one of the ONNX model's ${m.kind}s (${names})`
        : `no ${m.kind}: the ONNX model has none`;
      fail(`${path}.name`, `expected ${expected}, got ${JSON.stringify(entry.name)}`);
      return;
    }
    const earlier = listed.get(entry.name);
    if (earlier !== undefined) {
      const reason = `expected each ${m.kind} once, got ${JSON.stringify(entry.name)} again (also ${m.kind}[${earlier}])`;
      fail(`${path}.name`, reason);
    }
    listed.set(entry.name, i);

    const datatype = modelDatatype(spec, m.kind, `${path}.data_type`, fail);
    const modelName = configNameOf(datatype);
    if (entry.dataType !== DataType.TYPE_INVALID && DataType[entry.dataType] !== modelName) {
      const reason = `expected ${modelName} (the ONNX model's type for ${JSON.stringify(spec.name)}), got ${DataType[entry.dataType]}`;
      fail(`${path}.data_type`, reason);
    }

    let dims = entry.dims;
    let reshape = entry.reshape;
    if (dims.length === 0) {
      if (reshape) fail(`${path}.dims`, 'expected dims when reshape is set, got none');
      ({ dims, reshape } = filledDims(spec, batching));
    } else if (!m.clientShaped?.has(entry.name)) {
      checkDims(spec, entry, batching, path, fail);
    }
    if (batching && m.optional(entry)) {
      const reason = `expected false: an optional ${m.kind} cannot be batched (max_batch_size ${m.maxBatchSize}), got true`;
      fail(`${path}.optional`, reason);
    }
    const dataType = DATA_TYPE_BY_NAME.get(modelName) ?? entry.dataType;
    entries.push({ ...structuredClone(entry), dataType, dims: [...dims], reshape: reshape && { shape: [...reshape.shape] } });
    signatures.push(signatureOf(spec, datatype, dims, reshape, batching, m.optional(entry)));
  });

  for (const spec of m.specs) {
    if (listed.has(spec.name)) continue;
    const datatype = modelDatatype(spec, m.kind, m.kind, fail);
    const { dims, reshape } = filledDims(spec, batching);
    const dataType = DATA_TYPE_BY_NAME.get(configNameOf(datatype)) ?? DataType.TYPE_INVALID;
    entries.push(m.create({ name: spec.name, dataType, dims, reshape }));
    signatures.push(signatureOf(spec, datatype, dims, reshape, batching, false));
  }
  return { entries, signatures };
}

function modelDatatype(spec: TensorSpec, kind: string, field: string, fail: (f: string, r: string) => never): Datatype {
  if (isDatatype(spec.datatype)) return spec.datatype;
  const reason =
    `the ONNX model's ${kind} ${JSON.stringify(spec.name)} has type ${JSON.stringify(spec.datatype)}, ` +
    `which Fabriek does not serve; expected one of ${DATATYPES.join(', ')}`;
  return fail(field, reason);
}

/**
 * The model's own dims. A per-item scalar of a batching model becomes [1]
 * reshaped to [] (Triton's rule: a batch item needs a dimension); a
 * non-batching model's scalar stays [], so clients send the rank-0 tensor the
 * model declares.
 */
function filledDims(spec: TensorSpec, batching: boolean): { dims: bigint[]; reshape: ModelTensorReshape | undefined } {
  const dims = batching ? spec.shape.slice(1) : [...spec.shape];
  if (dims.length > 0 || !batching) return { dims, reshape: undefined };
  return { dims: [1n], reshape: { shape: [] } };
}

/** Config dims (or reshape.shape) must fit the model: equal where the model's are fixed. */
function checkDims(
  spec: TensorSpec,
  entry: ConfigTensor,
  batching: boolean,
  path: string,
  fail: (f: string, r: string) => never,
): void {
  const target = entry.reshape ? entry.reshape.shape : entry.dims;
  const field = entry.reshape ? `${path}.reshape.shape` : `${path}.dims`;
  if (!batching && spec.shape.length === 0) {
    if (target.some((d) => d !== 1n)) {
      fail(field, `expected only 1s (the ONNX model's ${JSON.stringify(spec.name)} is a scalar), got ${shapeText(target)}`);
    }
    return;
  }
  const model = batching ? spec.shape.slice(1) : spec.shape;
  const fits = model.length === target.length && model.every((d, j) => d === -1n || d === target[j]);
  if (fits) return;
  const less = batching ? ' less its batch dimension' : '';
  const hint = batching && model.length === 0 ? '; for one value per batch item write dims: [ 1 ] reshape: { shape: [ ] }' : '';
  const reason =
    `expected ${shapeText(model)} to match the ONNX model's shape ${shapeText(spec.shape)}${less} ` +
    `(-1 in the model allows any size), got ${shapeText(target)}${hint}`;
  fail(field, reason);
}

function signatureOf(
  spec: TensorSpec,
  datatype: Datatype,
  dims: readonly bigint[],
  reshape: ModelTensorReshape | undefined,
  batching: boolean,
  optional: boolean,
): TensorSignature {
  // Names describe the model's dimensions, so they only carry over when dims are the model's own.
  const offset = batching ? 1 : 0;
  const sameShape = !reshape && dims.length === spec.shape.length - offset;
  // dims of 1s for a non-batching scalar (checkDims allows them) mean the same as reshape: { shape: [] }.
  const modelShape = reshape ? reshape.shape.map(Number) : !batching && spec.shape.length === 0 && dims.length > 0 ? [] : undefined;
  return {
    name: spec.name,
    datatype,
    dims: dims.map(Number),
    dimNames: dims.map((_, j) => (sameShape ? (spec.dimNames[j + offset] ?? '') : '')),
    optional,
    ...(modelShape !== undefined ? { reshape: modelShape } : {}),
  };
}
