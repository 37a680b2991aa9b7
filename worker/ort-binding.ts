import type ort from 'onnxruntime-node';
import { type Binding, binding, initOrt } from 'onnxruntime-node/dist/binding.js';

// An ONNX Runtime session driven through onnxruntime-node's native binding,
// whose run is synchronous. The package's InferenceSession wraps that same
// call in a Promise and a setImmediate of its own, and re-checks feeds and
// fetches in JavaScript: for a small model that was 20 µs of CPU per run
// against 8.5 (identity, 16 floats, this 2-core machine), and an event-loop
// turn before every run. Fabriek checks a request against the model before it
// gets here, and runs on a thread of its own or on a main thread whose runs
// are known to be short (inline-runs.ts), so nothing gains from the deferral.
//
// binding.d.ts ships with the package (no exports map fences it off); the
// version is pinned, and test/unit/ort-binding.test.ts compares this class
// with the package's session on the same model.

type ExecutionProviders = NonNullable<ort.InferenceSession.SessionOptions['executionProviders']>;

/** onnxruntime-node's element type names by ONNX TensorProto type, as its own session reports them. */
const TYPE_NAMES: readonly (ort.Tensor.Type | undefined)[] = [
  undefined,
  'float32',
  'uint8',
  'int8',
  'uint16',
  'int16',
  'int32',
  'int64',
  'string',
  'bool',
  'float16',
  'float64',
  'uint32',
  'uint64',
  undefined,
  undefined,
  undefined,
  undefined,
  undefined,
  undefined,
  undefined,
  'uint4',
  'int4',
];

/**
 * An input as the binding reads it: it takes these four properties of any
 * object (its C++ gets them by name), so a plain object does. The package's
 * Tensor does not fit every Node: where Node has Float16Array (24 and later)
 * its constructor turns a float16 tensor's Uint16Array into a Float16Array,
 * whose bytes the binding, reading through Node-API, cannot see ("not enough
 * space: expected 8, got 0"): every FP16 model failed there. A plain object
 * also skips the constructor's checks, which a request has already passed.
 */
export interface Feed {
  readonly type: ort.Tensor.Type;
  readonly dims: readonly number[];
  readonly location: 'cpu';
  /** FP16 as its raw bits in a Uint16Array; strings as string[]. */
  readonly data: ort.Tensor.DataType;
}

/** Runs need no options; one frozen object serves them all. */
const NO_RUN_OPTIONS: ort.InferenceSession.RunOptions = Object.freeze({});

export class OrtSession {
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  readonly #native: Binding.InferenceSession;
  /** Every output, for a run that names none (built once). */
  readonly #allOutputs: Record<string, null>;

  private constructor(native: Binding.InferenceSession) {
    this.#native = native;
    this.inputMetadata = native.inputMetadata.map(valueMetadata);
    this.outputMetadata = native.outputMetadata.map(valueMetadata);
    this.#allOutputs = fetchesOf(this.outputMetadata.map((m) => m.name));
  }

  /**
   * Loads the model; blocks the calling thread for as long as ONNX Runtime
   * takes (as the package's own create does, one turn later). An execution
   * provider this build lacks fails here, where the package's session would
   * drop it with a console warning and load on the CPU.
   */
  static open(model: string | Uint8Array, options: ort.InferenceSession.SessionOptions): OrtSession {
    checkProviders(options.executionProviders ?? []);
    initOrt();
    const native = new binding.InferenceSession();
    if (typeof model === 'string') native.loadModel(model, options);
    else {
      // The binding reads an ArrayBuffer; bytes in shared memory are copied out first.
      const { buffer } = model;
      if (buffer instanceof ArrayBuffer) native.loadModel(buffer, model.byteOffset, model.byteLength, options);
      // new Uint8Array(view) copies; a Buffer's slice() would only be another view of the shared memory.
      else native.loadModel(new Uint8Array(model).buffer, 0, model.byteLength, options);
    }
    try {
      return new OrtSession(native);
    } catch (error) {
      native.dispose();
      throw error;
    }
  }

  /**
   * One synchronous run; `outputs` empty means all of the model's. Outputs
   * come back as the package's Tensors (a float16 one holds a Float16Array
   * where Node has it: its bytes are the raw bits all the same).
   */
  run(feeds: Readonly<Record<string, Feed>>, outputs: readonly string[]): Record<string, ort.OnnxValue> {
    const fetches = outputs.length === 0 ? this.#allOutputs : fetchesOf(outputs);
    // The binding's types ask for the package's Tensors; it reads only what Feed has (see Feed).
    return this.#native.run(feeds as unknown as Record<string, ort.OnnxValue>, fetches, NO_RUN_OPTIONS);
  }

  release(): void {
    this.#native.dispose();
  }
}

function fetchesOf(names: readonly string[]): Record<string, null> {
  const fetches: Record<string, null> = {};
  for (const name of names) fetches[name] = null;
  return fetches;
}

/** The binding's metadata as the package's session gives it: type names, symbolic dimensions by name. */
function valueMetadata(m: Binding.ValueMetadata): ort.InferenceSession.ValueMetadata {
  if (!m.isTensor) return { name: m.name, isTensor: false };
  const type = TYPE_NAMES[m.type];
  // The package's words: ort-session.ts explains a load failure from them.
  if (type === undefined) throw new Error(`Unsupported data type: ${m.type}`);
  const shape = m.shape.map((dim, i) => {
    if (dim === -1) return m.symbolicDimensions[i] ?? '';
    if (dim >= 0) return dim;
    throw new Error(`Invalid dimension: ${dim}`);
  });
  return { name: m.name, isTensor: true, type, shape };
}

function checkProviders(providers: ExecutionProviders): void {
  const supported = binding.listSupportedBackends();
  for (const provider of providers) {
    const name = typeof provider === 'string' ? provider : provider.name;
    if (!supported.some((b) => b.name === name)) {
      throw new Error(`execution provider "${name}" is not in this onnxruntime-node build (it has ${supported.map((b) => b.name).join(', ')})`);
    }
  }
}
