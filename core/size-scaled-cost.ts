// A shape's cost read from its kind's size curve: where a version's shapes
// vary, every execution also teaches a curve of time by the elements its
// inputs held (rows × a row's elements), across shapes (core/kind-costs.ts).
// A shape that has not run often enough for a model of its own (a sequence
// length not seen yet, one of hundreds that rarely repeat) is read from it
// at its own elements per row. Without it, such a shape was sized and shed
// by the kind's curve, the mix of every shape's batches: capped by the short
// rows' cheap large batches, that said 32 rows of 1,024 values take 2.5 ms
// where they take 55.
//
// Elements, not bytes: what a row computes grows with its values whatever
// their width. A model whose cost is not near proportional to them (attention
// over a sequence) is read less exactly, until the shape's own model has run
// (TRUSTED_EXECUTIONS) and takes over.

import { type BatchCost, type CostModel, type CostPoint, efficientRows } from './cost-model.js';

export class SizeScaledCost implements BatchCost {
  readonly #size: CostModel;
  readonly #kind: CostModel;
  readonly #perRow: number;

  /** `size`: the kind's curve by elements; `kind`: its model by rows, for the overhead (the way to the worker and back); `perRow`: the shape's elements per row (> 0). */
  constructor(size: CostModel, kind: CostModel, perRow: number) {
    this.#size = size;
    this.#kind = kind;
    this.#perRow = perRow;
  }

  readonly computeNs = (rows: number): number | undefined => this.#size.computeNs(rows * this.#perRow);

  readonly estimateNs = (rows: number): number | undefined => {
    const ns = this.#size.computeNs(rows * this.#perRow);
    return ns === undefined ? undefined : ns + this.#kind.overheadNs;
  };

  computeFloorNs(rows: number): number | undefined {
    return this.#size.computeFloorNs(rows * this.#perRow);
  }

  /** The size curve's points as this shape's rows, then CostModel's rule; recomputed only when a timing came in. */
  efficientRows(maxBatch: number): number {
    const samples = this.#size.samples;
    if (this.#efficient === undefined || this.#efficient.samples !== samples || this.#efficient.maxBatch !== maxBatch) {
      const points: CostPoint[] = this.#size.points().map((p) => ({ rows: p.rows / this.#perRow, ns: p.ns, samples: p.samples }));
      this.#efficient = { samples, maxBatch, rows: efficientRows(points, maxBatch) };
    }
    return this.#efficient.rows;
  }

  #efficient: { samples: number; maxBatch: number; rows: number } | undefined;

  get overheadNs(): number {
    return this.#kind.overheadNs;
  }

  get overheadFloorNs(): number {
    return this.#kind.overheadFloorNs;
  }

  get samples(): number {
    return this.#size.samples;
  }

  get trusted(): boolean {
    return this.#size.trusted;
  }
}
