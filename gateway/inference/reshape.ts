// Triton's `reshape`: a tensor the config describes with `dims` (what clients
// send and receive, e.g. [1]) while the model takes another shape (e.g. the
// rank-0 scalar []). Requests are validated against `dims`; these functions
// turn their shapes into the model's before scheduling, and the model's
// outputs back into `dims`. Only shapes change: the bytes are the same.
import { type ModelSignature, type TensorSignature } from '../../core/signature.js';
import { elementCount, type Tensor } from '../../core/tensor.js';

const hasReshape = (tensors: readonly TensorSignature[]): boolean => {
  for (const t of tensors) if (t.reshape !== undefined) return true;
  return false;
};

/** `inputs` in the shapes the model takes (the same array when no input is reshaped). */
export function toModelShapes(signature: ModelSignature, inputs: readonly Tensor[]): readonly Tensor[] {
  return reshapeAll(signature.inputs, inputs, signature.maxBatchSize > 0, (sig) => sig.reshape);
}

/** The model's `outputs` in the shapes the config declares (the same array when no output is reshaped). */
export function toClientShapes(signature: ModelSignature, outputs: readonly Tensor[]): readonly Tensor[] {
  return reshapeAll(signature.outputs, outputs, signature.maxBatchSize > 0, (sig) => (sig.reshape === undefined ? undefined : sig.dims));
}

function reshapeAll(
  sigs: readonly TensorSignature[],
  tensors: readonly Tensor[],
  batching: boolean,
  target: (sig: TensorSignature) => readonly number[] | undefined,
): readonly Tensor[] {
  if (!hasReshape(sigs)) return tensors;
  return tensors.map((t) => {
    const sig = sigs.find((s) => s.name === t.name);
    const to = sig === undefined ? undefined : target(sig);
    return to === undefined ? t : { ...t, shape: itemShape(t.shape, batching, to) };
  });
}

/**
 * `shape` with its per-item part replaced by `to`; a -1 in `to` (Triton
 * allows one where the dims vary) takes what the element count leaves.
 */
export function itemShape(shape: readonly number[], batching: boolean, to: readonly number[]): number[] {
  const lead = batching ? shape.slice(0, 1) : [];
  const free = to.indexOf(-1);
  if (free < 0) return [...lead, ...to];
  const items = elementCount(shape.slice(lead.length));
  const known = elementCount(to.filter((d) => d !== -1));
  const filled = [...to];
  filled[free] = known === 0 ? 0 : items / known;
  return [...lead, ...filled];
}
