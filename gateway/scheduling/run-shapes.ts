import { type Tensor } from '../../core/tensor.js';
import { runShapeKey } from '../batching/batch-rows.js';

// The shape keys of the requests a model without dynamic batching runs, one
// per execution, for its per-shape cost models (core/kind-costs.ts). A
// detection model fed 256-pixel and 2,048-pixel images, or an encoder fed 16
// and 4,096 tokens, costs what no one curve by rows says: by the median of
// the mix, a small request with a tight deadline was shed at its turn though
// it would have run in time. Asked once per request, so the usual case (every
// request of the shape before) builds no string: a request whose names,
// datatypes and dims equal the last new shape's gets that key back.

export class RunShapes {
  readonly #fromDim: 0 | 1;
  #names: string[] = [];
  #datatypes: string[] = [];
  #dims: number[][] = [];
  #key: string | undefined;

  /** `batched`: the model's first dim is rows (max_batch_size > 0), which do not make a shape. */
  constructor(batched: boolean) {
    this.#fromDim = batched ? 1 : 0;
  }

  keyOf(inputs: readonly Tensor[]): string {
    if (this.#key !== undefined && this.#same(inputs)) return this.#key;
    this.#names = inputs.map((t) => t.name);
    this.#datatypes = inputs.map((t) => t.datatype);
    this.#dims = inputs.map((t) => [...t.shape]);
    this.#key = runShapeKey(inputs, this.#fromDim);
    return this.#key;
  }

  #same(inputs: readonly Tensor[]): boolean {
    if (inputs.length !== this.#names.length) return false;
    for (let i = 0; i < inputs.length; i++) {
      const t = inputs[i] as Tensor;
      const dims = this.#dims[i] as number[];
      if (t.name !== this.#names[i] || t.datatype !== this.#datatypes[i] || t.shape.length !== dims.length) return false;
      for (let d = this.#fromDim; d < dims.length; d++) if (t.shape[d] !== dims[d]) return false;
    }
    return true;
  }
}
