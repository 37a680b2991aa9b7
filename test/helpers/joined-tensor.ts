import { type JoinedTensor, type Tensor } from '../../core/tensor.js';

/** A batch's joined input as one tensor, its parts copied into one buffer: what the worker reads from the frame. */
export function tensorOf(joined: JoinedTensor): Tensor {
  return { name: joined.name, datatype: joined.datatype, shape: joined.shape, data: new Uint8Array(Buffer.concat(joined.parts)) };
}
