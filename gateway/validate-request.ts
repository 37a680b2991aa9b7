// Step 3 of a request, against the model: decoded inputs and requested
// outputs checked with the model's signature before anything is queued.
// ONNX Runtime checks none of this itself (unknown inputs are silently
// ignored, symbolic dims are not compared across inputs).
import { isUtf8 } from 'node:buffer';
import { invalidArgument } from '../core/errors.js';
import { type ModelSignature, type TensorSignature } from '../core/signature.js';
import { type Tensor } from '../core/tensor.js';
import { walkBytesElements } from './tensor/bytes-elements.js';

export interface ValidatedInputs {
  /** Rows of the request: the leading dim for batching models, 1 otherwise. */
  readonly batchSize: number;
}

interface SymbolValue {
  readonly value: number;
  readonly input: string;
}

/**
 * Throws INVALID_ARGUMENT naming the model and the tensor, with what was
 * expected and what came, on the first problem found.
 */
export function validateInputs(
  signature: ModelSignature,
  inputs: readonly Tensor[],
  requestedOutputs: readonly string[],
): ValidatedInputs {
  const model = `model '${signature.name}'`;
  const maxBatch = signature.maxBatchSize;
  const lead = maxBatch > 0 ? 1 : 0;
  let batchSize = 0;
  let batchInput = '';
  // Allocated only for models that declare symbolic dims.
  let symbols: Map<string, SymbolValue> | undefined;

  for (const [i, tensor] of inputs.entries()) {
    const { name, shape } = tensor;
    const sig = signature.inputs.find((s) => s.name === name);
    if (sig === undefined) {
      throw invalidArgument(`${model}: input '${name}' is not an input of the model (inputs: ${names(signature.inputs)})`);
    }
    for (let j = 0; j < i; j++) {
      if (inputs[j]?.name === name) throw invalidArgument(`${model}: input '${name}' is given more than once`);
    }
    const label = `${model}: input '${name}'`;
    if (tensor.datatype !== sig.datatype) {
      throw invalidArgument(`${label}: expected datatype ${sig.datatype}, got ${tensor.datatype}`);
    }
    if (tensor.datatype === 'BYTES') checkOrtStrings(tensor.data, label);
    if (shape.length !== sig.dims.length + lead) throw shapeMismatch(label, sig, lead, shape);
    for (const [k, want] of sig.dims.entries()) {
      const got = shape[k + lead] ?? -1;
      if (want >= 0 && got !== want) throw shapeMismatch(label, sig, lead, shape);
      const symbol = sig.dimNames[k];
      if (symbol === undefined || symbol === '') continue;
      symbols ??= new Map();
      const seen = symbols.get(symbol);
      if (seen === undefined) {
        symbols.set(symbol, { value: got, input: name });
      } else if (seen.value !== got) {
        throw invalidArgument(
          `${label}: dimension '${symbol}' must match input '${seen.input}' (expected ${seen.value}, got ${got})`,
        );
      }
    }
    if (lead === 1) {
      const rows = shape[0] ?? 0;
      if (rows < 1) throw invalidArgument(`${label}: expected batch size at least 1, got ${rows}`);
      if (rows > maxBatch) throw invalidArgument(`${model}: batch size ${rows} exceeds max_batch_size ${maxBatch}`);
      if (batchInput === '') {
        batchSize = rows;
        batchInput = name;
      } else if (rows !== batchSize) {
        throw invalidArgument(
          `${label}: expected batch size ${batchSize} (as input '${batchInput}'), got ${rows}`,
        );
      }
    }
  }

  for (const sig of signature.inputs) {
    if (!sig.optional && !inputs.some((t) => t.name === sig.name)) {
      throw invalidArgument(`${model}: missing required input '${sig.name}' (inputs: ${names(signature.inputs)})`);
    }
  }

  for (const [i, name] of requestedOutputs.entries()) {
    if (!signature.outputs.some((s) => s.name === name)) {
      throw invalidArgument(
        `${model}: output '${name}' is not an output of the model (outputs: ${names(signature.outputs)})`,
      );
    }
    if (requestedOutputs.indexOf(name) !== i) {
      throw invalidArgument(`${model}: output '${name}' is requested more than once`);
    }
  }

  return { batchSize: batchSize === 0 ? 1 : batchSize };
}

/**
 * ONNX Runtime's node binding carries string tensors as JavaScript strings
 * and C strings: non-UTF-8 bytes would be replaced and a NUL would cut the
 * element short. Refuse such elements here, before a batch could mix them
 * with other clients' requests.
 */
function checkOrtStrings(data: Uint8Array, label: string): void {
  walkBytesElements(data, label, (start, end) => {
    const element = data.subarray(start, end);
    if (element.includes(0)) {
      throw invalidArgument(`${label}: BYTES element contains a NUL byte, which ONNX Runtime strings cannot carry`);
    }
    if (!isUtf8(element)) {
      throw invalidArgument(`${label}: BYTES element is not valid UTF-8, which ONNX Runtime strings require`);
    }
  });
}

function names(tensors: readonly TensorSignature[]): string {
  return tensors.map((t) => t.name).join(', ');
}

function shapeMismatch(label: string, sig: TensorSignature, lead: number, got: readonly number[]): Error {
  const expected = lead === 1 ? [-1, ...sig.dims] : sig.dims;
  return invalidArgument(`${label}: expected shape [${expected.join(',')}], got [${got.join(',')}]`);
}
