import { type Datatype } from './datatypes.js';

/**
 * What the gateway checks a request against: the completed model config,
 * reduced to what validation needs. Derived from config.pbtxt plus the
 * model's own ONNX inputs and outputs.
 */
export interface TensorSignature {
  readonly name: string;
  readonly datatype: Datatype;
  /** Shape without the batch dimension when the model batches; -1 = any size. */
  readonly dims: readonly number[];
  /**
   * Symbolic name of each entry of `dims` as the ONNX model declares it ("" when
   * fixed or unnamed). Dimensions with the same name must agree across inputs.
   */
  readonly dimNames: readonly string[];
  readonly optional: boolean;
  /**
   * The shape the model itself takes (per batch item when the model batches),
   * when it differs from `dims`: Triton's `reshape`. Requests are checked
   * against `dims`, then handed to the model in this shape; outputs come back
   * in `dims`.
   */
  readonly reshape?: readonly number[];
}

export interface ModelSignature {
  readonly name: string;
  readonly version: string;
  /** 0: the model does not batch and `dims` are full shapes. */
  readonly maxBatchSize: number;
  readonly inputs: readonly TensorSignature[];
  readonly outputs: readonly TensorSignature[];
}
