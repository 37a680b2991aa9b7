import { type BatchInput, type Tensor } from '../../core/tensor.js';

/** A batch's input as one tensor (a joined one's parts copied into one buffer): what the worker reads from the frame. */
export function tensorOf(input: BatchInput): Tensor {
  if (!('parts' in input)) return input;
  return { name: input.name, datatype: input.datatype, shape: input.shape, data: new Uint8Array(Buffer.concat(input.parts)) };
}
