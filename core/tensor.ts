import { type Datatype } from './datatypes.js';

/**
 * The one tensor type shared by every layer (gateway, worker RPC, worker
 * thread). `data` holds the raw little-endian bytes, exactly as in KServe's
 * raw form: for BYTES, each element is a 4-byte little-endian length followed
 * by that many bytes. `data` may be a view into a larger buffer.
 */
export interface Tensor {
  readonly name: string;
  readonly datatype: Datatype;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

/** Number of elements of a shape; 1 for a scalar (empty shape). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * A batch's input on its way to a worker: its members' tensors joined along
 * dimension 0, their bytes kept as the parts they are, in order. They are
 * never joined in memory: the frame to the worker gathers them in one
 * vectored write (core/execute-frame.ts), so a batch of large inputs costs
 * no allocation and no copy of its size in the gateway.
 */
export interface JoinedTensor {
  readonly name: string;
  readonly datatype: Datatype;
  readonly shape: readonly number[];
  readonly parts: readonly Uint8Array[];
}

/** An input of a batch on its way to a worker: a single request's tensor as it came, or several joined. */
export type BatchInput = Tensor | JoinedTensor;
