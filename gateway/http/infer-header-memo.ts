// A client of the binary tensor extension sends the same JSON header with
// every request of a shape (tritonclient and perf_analyzer do: names,
// datatypes, shapes, binary sizes; no id unless asked). Parsing and checking
// it took about 2.3 µs of the ~33 µs the gateway spends on a small request,
// so the last header each model was sent is kept with what it decoded to, and
// a request whose header is byte for byte the same takes that decoding, with
// its own inputs as views of its own body at the same offsets.
//
// Only headers whose every input is binary are kept: inputs in JSON `data`
// decode to bytes of their own, and inputs or outputs in shared memory name
// regions that must be looked up per request. Everything reused is read-only
// (InferRequest's fields are readonly throughout).
import { type Tensor } from '../../core/tensor.js';
import { type InferRequest } from '../inference/infer-request.js';
import { decodeInferRequest, type HttpInferRequest } from './json-tensors.js';

/** Distinct models remembered at once; past it the memo starts over (a flood of made-up names costs nothing kept). */
const MAX_MODELS = 256;
/** Longest header kept: a usual one is a few hundred bytes; a huge one would be held for as long as its model is called. */
export const MAX_KEPT_HEADER_BYTES = 4096;

/** An input the header describes: its bytes are `bytes` long at `offset` into the binary part. */
interface InputPlan {
  readonly name: string;
  readonly datatype: Tensor['datatype'];
  readonly shape: readonly number[];
  readonly offset: number;
  readonly bytes: number;
}

interface Entry {
  readonly version: string;
  /** A copy of the header's bytes (a view would keep the whole first body alive). */
  readonly header: Buffer;
  readonly inputs: readonly InputPlan[];
  /** What the header decoded to, less its inputs (which held the first body's bytes). */
  readonly request: Omit<InferRequest, 'inputs'>;
  readonly binaryDefault: boolean;
  readonly binaryOutputs: ReadonlyMap<string, boolean>;
  /** The binary part's length that the header accounts for. */
  readonly binaryBytes: number;
}

export class InferHeaderMemo {
  readonly #byModel = new Map<string, Entry>();

  /** decodeInferRequest, from the remembered decoding when this model's last kept header is the same bytes. */
  decode(body: Buffer, headerLength: number | undefined, modelName: string, modelVersion: string): HttpInferRequest {
    if (headerLength === undefined) return decodeInferRequest(body, headerLength, modelName, modelVersion);
    const entry = this.#byModel.get(modelName);
    if (
      entry !== undefined &&
      entry.version === modelVersion &&
      entry.header.byteLength === headerLength &&
      body.byteLength - headerLength === entry.binaryBytes &&
      body.compare(entry.header, 0, headerLength, 0, headerLength) === 0
    ) {
      return reuse(entry, body, headerLength);
    }
    const decoded = decodeInferRequest(body, headerLength, modelName, modelVersion);
    const inputs = headerLength <= MAX_KEPT_HEADER_BYTES ? inputPlans(decoded, body, headerLength) : undefined;
    if (inputs !== undefined) {
      if (entry === undefined && this.#byModel.size >= MAX_MODELS) this.#byModel.clear();
      const { inputs: _, ...request } = decoded.request;
      this.#byModel.set(modelName, {
        version: modelVersion,
        header: Buffer.from(body.subarray(0, headerLength)),
        inputs,
        request,
        binaryDefault: decoded.binaryDefault,
        binaryOutputs: decoded.binaryOutputs,
        binaryBytes: body.byteLength - headerLength,
      });
    }
    return decoded;
  }

  /** Models with a header kept (for tests). */
  get size(): number {
    return this.#byModel.size;
  }
}

/** Where each input's bytes lie in the binary part, when every input is a view of it in order; else undefined. */
function inputPlans(decoded: HttpInferRequest, body: Buffer, headerLength: number): InputPlan[] | undefined {
  if (decoded.sharedInputs !== undefined || decoded.sharedOutputs !== undefined) return undefined;
  const plans: InputPlan[] = [];
  const start = body.byteOffset + headerLength;
  let at = start;
  for (const t of decoded.request.inputs) {
    if (t.data.buffer !== body.buffer || t.data.byteOffset !== at) return undefined;
    plans.push({ name: t.name, datatype: t.datatype, shape: t.shape, offset: at - start, bytes: t.data.byteLength });
    at += t.data.byteLength;
  }
  return plans;
}

/** The kept decoding with this body's bytes: new tensors and request, the rest shared. */
function reuse(entry: Entry, body: Buffer, headerLength: number): HttpInferRequest {
  const plans = entry.inputs;
  const inputs: Tensor[] = new Array<Tensor>(plans.length);
  const start = body.byteOffset + headerLength;
  for (let i = 0; i < plans.length; i++) {
    const p = plans[i] as InputPlan;
    inputs[i] = { name: p.name, datatype: p.datatype, shape: p.shape, data: new Uint8Array(body.buffer, start + p.offset, p.bytes) };
  }
  const kept = entry.request;
  // Literals, not spreads: this is every request's path.
  const request: InferRequest = {
    modelName: kept.modelName,
    modelVersion: kept.modelVersion,
    id: kept.id,
    inputs,
    outputs: kept.outputs,
    parameters: kept.parameters,
    classifications: kept.classifications,
  };
  return { request, binaryDefault: entry.binaryDefault, binaryOutputs: entry.binaryOutputs, sharedInputs: undefined, sharedOutputs: undefined };
}
