// A model version's cost models, one per instance kind: the execution
// provider its instances run on where they ran ('cpu', 'cuda', 'webgpu'),
// as the worker reported it when it loaded them (a GPU instance that fell
// back to the CPU is a CPU instance here). A GPU's time hardly grows with
// rows where a CPU's grows nearly in proportion: timings of both in one
// model drew a curve of neither, and the batch sizes, the sheds and the
// worker choice read from it were wrong on both (issue #15: "a cost model
// per model version and instance kind").
//
// The schedulers decide with the lead kind's model (the kind holding the
// most instances: InstanceSlots.leadKind); each execution teaches its own
// kind's model; the worker choice weighs each worker by its own kind's.

import { CostModel } from './cost-model.js';

/** The kind of a version whose placements said none (a test's fake slots, a worker from before kinds). */
export const DEFAULT_KIND = 'cpu';

/** The kind of instances loaded with this execution provider (the worker's LoadModelResponse, a registry record). */
export function instanceKindOf(executionProvider: string | undefined): string {
  const p = executionProvider?.trim().toLowerCase();
  return p === undefined || p === '' ? DEFAULT_KIND : p;
}

export class KindCosts {
  readonly #models = new Map<string, CostModel>();
  #leadKind = DEFAULT_KIND;
  #lead: CostModel;

  constructor() {
    this.#lead = this.of(DEFAULT_KIND);
  }

  /** The model of `kind`, made on first use. */
  of(kind: string): CostModel {
    let model = this.#models.get(kind);
    if (model === undefined) {
      model = new CostModel();
      this.#models.set(kind, model);
    }
    return model;
  }

  /**
   * The model the scheduler decides with: that of `kind` (the lead kind now).
   * Asked at every decision: a kind unchanged costs one comparison.
   */
  lead(kind: string): CostModel {
    if (kind !== this.#leadKind) {
      this.#leadKind = kind;
      this.#lead = this.of(kind);
    }
    return this.#lead;
  }

  get leadKind(): string {
    return this.#leadKind;
  }

  /**
   * The instances of every kind (`byKind`) counted at the lead kind's speed
   * at `rows` rows: how many of the lead's they drain a queue like. A kind
   * either model cannot say for yet counts one for one. With one kind, the
   * instance count.
   */
  equivalentInstances(byKind: ReadonlyMap<string, number>, rows: number): number {
    let n = 0;
    if (byKind.size < 2) {
      for (const instances of byKind.values()) n += instances;
      return n;
    }
    const leadNs = this.#lead.computeNs(rows);
    for (const [kind, instances] of byKind) {
      const ns = kind === this.#leadKind ? leadNs : this.#models.get(kind)?.computeNs(rows);
      n += leadNs === undefined || ns === undefined || !(ns > 0) ? instances : (instances * leadNs) / ns;
    }
    return n;
  }

  /** Every kind that has a model, the lead's first; a kind without a timing only while it leads. */
  entries(): [string, CostModel][] {
    const out: [string, CostModel][] = [[this.#leadKind, this.#lead]];
    for (const [kind, model] of this.#models) if (kind !== this.#leadKind && !model.cold) out.push([kind, model]);
    return out;
  }
}
