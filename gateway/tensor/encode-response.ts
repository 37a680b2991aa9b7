// Step 7 of a request, the encoding half: output Tensors → the output side of
// a ModelInferResponse. Raw by default, as Triton answers.
import { internal } from '../../core/errors.js';
import { type Tensor } from '../../core/tensor.js';
import { type ModelInferResponse_InferOutputTensor } from '../../proto/gen/inference.js';
import { rawToTypedContents, typedFieldOf } from './typed-contents.js';

export interface EncodeOptions {
  /**
   * Answer with typed `contents` instead of `raw_output_contents`. KServe
   * forbids mixing the two in one response, so when any selected output is
   * FP16 or BF16 (no typed field) every output is sent raw instead.
   */
  readonly typed?: boolean;
}

export interface EncodedOutputs {
  readonly outputs: ModelInferResponse_InferOutputTensor[];
  /** One per output, in order, each a view of the tensor's bytes (no copy); empty when typed. */
  readonly rawOutputContents: Buffer[];
}

/**
 * Selects the requested outputs (all, in the tensors' order, when `requested`
 * is empty; otherwise in the requested order) and encodes them. A requested
 * name with no tensor is INTERNAL: validation admits only names the model
 * has, so the worker failed to produce it.
 */
export function encodeOutputs(
  tensors: readonly Tensor[],
  requested: readonly string[],
  options: EncodeOptions = {},
): EncodedOutputs {
  const selected = requested.length === 0 ? tensors : requested.map((name) => pick(tensors, name));
  const typed = options.typed === true && selected.every((t) => typedFieldOf(t.datatype) !== undefined);
  const outputs: ModelInferResponse_InferOutputTensor[] = [];
  const rawOutputContents: Buffer[] = [];
  for (const tensor of selected) {
    const output: ModelInferResponse_InferOutputTensor = {
      name: tensor.name,
      datatype: tensor.datatype,
      shape: tensor.shape.map((d) => BigInt(d)),
      parameters: {},
    };
    if (typed) {
      output.contents = rawToTypedContents(tensor.data, tensor.datatype, `output '${tensor.name}'`);
    } else {
      rawOutputContents.push(asBuffer(tensor.data));
    }
    outputs.push(output);
  }
  return { outputs, rawOutputContents };
}

function pick(tensors: readonly Tensor[], name: string): Tensor {
  const tensor = tensors.find((t) => t.name === name);
  if (tensor === undefined) throw internal(`output '${name}' was requested but the model did not produce it`);
  return tensor;
}

/** The response message types bytes fields as Buffer; wrap without copying. */
function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
