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
//
// And per shape, where a version's shapes vary ("and of the shape key when
// shapes vary"): requests batch together only when every dimension but the
// first is equal (batch-rows.ts, batchShape), and a batch of 8 rows of 4,096
// tokens costs what no curve of 8 rows of 16 says. Once a second shape key is
// seen, each (kind, shape) also keeps a model of its own, the SHAPES most
// recently run, shown in the batching endpoint; the SLO mode sizes a batch by
// its shape's model once trusted, against that shape's arrivals alone (the
// batcher keeps those). A version of one shape (most) keeps none.
//
// And by size, for the shapes without a trusted model of their own (many
// that rarely repeat, more than SHAPES): once shapes vary, each kind also
// keeps a curve of an execution's time by the elements of its inputs, which
// every shape's runs teach, and such a shape is read from it at its own
// elements per row (core/size-scaled-cost.ts).

import { type BatchCost, CostModel } from './cost-model.js';
import { RecentMap } from './recent-map.js';
import { SizeScaledCost } from './size-scaled-cost.js';

/** Models kept per (kind, shape) for a version whose shapes vary: the most recently run. */
export const SHAPES = 32;

/** The kind of a version whose placements said none (a test's fake slots, a worker from before kinds). */
export const DEFAULT_KIND = 'cpu';

/**
 * The kind of instances loaded with this execution provider, as a worker
 * reports it (its LoadModelResponse, a registry record): `cuda:1` → `cuda`
 * (every GPU of a kind learns one curve), `cpu (GPU unavailable: …)` →
 * `cpu`; a worker whose instances landed on several providers, e.g.
 * `cuda:0,cpu` → `cuda+cpu`.
 */
export function instanceKindOf(executionProvider: string | undefined): string {
  const described = executionProvider ?? '';
  const bare = described.includes(' (') ? described.slice(0, described.indexOf(' (')) : described;
  const names = new Set<string>();
  for (const part of bare.split(',')) {
    const name = part.trim().split(':')[0]?.trim().toLowerCase() ?? '';
    if (name !== '') names.add(name);
  }
  return names.size === 0 ? DEFAULT_KIND : [...names].join('+');
}

export class KindCosts {
  readonly #models = new Map<string, CostModel>();
  #leadKind = DEFAULT_KIND;
  #lead: CostModel;
  /** The first shape key run; per-shape models start once another is. */
  #firstShape: string | undefined;
  #variable = false;
  /** By kind and shape key, the SHAPES last run. */
  readonly #shapes = new RecentMap<{ readonly kind: string; readonly shape: string; readonly model: CostModel }>(SHAPES, (key) => {
    const at = key.indexOf('\u0002');
    return { kind: key.slice(0, at), shape: key.slice(at + 1), model: new CostModel() };
  });

  /** By kind, once shapes vary: an execution's time by the elements of its inputs, across shapes. */
  readonly #sizes = new Map<string, CostModel>();
  /** By kind and shape key: its elements per row (0: none holds, e.g. ragged) and its reading of the size curve. */
  readonly #scaled = new RecentMap<{ readonly perRow: number; readonly cost: SizeScaledCost | undefined }>(SHAPES, (key) => {
    const at = key.indexOf('\u0002');
    const kind = key.slice(0, at);
    const perRow = this.#rowElements(key.slice(at + 1));
    return { perRow, cost: perRow > 0 ? new SizeScaledCost(this.#sizeOf(kind), this.of(kind), perRow) : undefined };
  });
  readonly #rowElements: (shape: string) => number;

  /**
   * `rowElements`: the elements one row of a shape key holds (0 where none
   * holds for every row), which the keys' maker knows
   * (batch-rows.ts, elementsPerRowOf); without it, no size curve is kept.
   */
  constructor(rowElements: (shape: string) => number = () => 0) {
    this.#rowElements = rowElements;
    this.#lead = this.of(DEFAULT_KIND);
  }

  /** Expected compute of `rows` rows on instances of `kind`: what the worker choice weighs each worker by (InstanceSlots.expectBy). */
  readonly computeNs = (rows: number, kind: string): number | undefined => this.of(kind).computeNs(rows);

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

  /** Whether the version has run batches of more than one shape (per-shape models are kept). */
  get variableShapes(): boolean {
    return this.#variable;
  }

  /**
   * The model of a batch of `shape` (its batch key) run on `kind`, to learn
   * its timing; undefined while the version has run one shape only. Made on
   * first use; the least recently run of SHAPES is dropped for a new one.
   */
  noteShape(kind: string, shape: string): CostModel | undefined {
    if (!this.#variable) {
      if (this.#firstShape === undefined) this.#firstShape = shape;
      if (shape === this.#firstShape) return undefined;
      this.#variable = true;
    }
    return this.#shapes.touch(`${kind}\u0002${shape}`).model;
  }

  /**
   * An execution of `rows` rows of `shape` on `kind` took `ns`: its kind's
   * size curve learns it at rows × the shape's elements per row. Nothing
   * while the version has run one shape (one comparison).
   */
  noteSize(kind: string, shape: string, rows: number, ns: number): void {
    if (!this.#variable) return;
    const perRow = this.#scaled.touch(`${kind}\u0002${shape}`).perRow;
    if (perRow > 0) this.#sizeOf(kind).observe(rows * perRow, ns);
  }

  /**
   * What `shape` costs on `kind`, where the version's shapes vary: its own
   * model once trusted, else its reading of the kind's size curve once that
   * is trusted; undefined otherwise (the caller falls back on the kind's).
   */
  shapeCost(kind: string, shape: string): BatchCost | undefined {
    if (!this.#variable) return undefined;
    const key = `${kind}\u0002${shape}`;
    const own = this.#shapes.get(key)?.model;
    if (own?.trusted === true) return own;
    // Read per request where shapes vary: a shape already known is not moved up (its runs do that, noteSize).
    const scaled = (this.#scaled.get(key) ?? this.#scaled.touch(key)).cost;
    return scaled?.trusted === true ? scaled : undefined;
  }

  #sizeOf(kind: string): CostModel {
    let model = this.#sizes.get(kind);
    if (model === undefined) {
      model = new CostModel();
      this.#sizes.set(kind, model);
    }
    return model;
  }

  /** Each kind's size curve that has a timing: its points' rows are elements. */
  sizeEntries(): [string, CostModel][] {
    return [...this.#sizes].filter(([, model]) => !model.cold);
  }

  /** The per-shape models, the most recently run first. */
  shapeEntries(): { readonly kind: string; readonly shape: string; readonly model: CostModel }[] {
    return [...this.#shapes.values()].reverse();
  }

  /** Every kind that has a model, the lead's first; a kind without a timing only while it leads. */
  entries(): [string, CostModel][] {
    const out: [string, CostModel][] = [[this.#leadKind, this.#lead]];
    for (const [kind, model] of this.#models) if (kind !== this.#leadKind && !model.cold) out.push([kind, model]);
    return out;
  }
}
