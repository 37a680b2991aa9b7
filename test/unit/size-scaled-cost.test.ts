import { describe, expect, it } from 'vitest';
import { CostModel } from '../../core/cost-model.js';
import { KindCosts } from '../../core/kind-costs.js';
import { SizeScaledCost } from '../../core/size-scaled-cost.js';
import { batchShape, elementsPerRowOf, runShapeKey } from '../../gateway/batching/batch-rows.js';
import { DynamicBatcher } from '../../gateway/batching/dynamic-batcher.js';
import { batchingPolicy } from '../helpers/batching-policy.js';
import { cutRecorder, oneSlot, stoppedClock } from '../helpers/batcher-fakes.js';

// Where a version's shapes vary, each kind keeps a curve of an execution's
// time by the elements of its inputs, and a shape without a trusted model of
// its own (not seen yet, or one of many that rarely repeat) is read from it
// at its elements per row (issue #15: the cost model "of the shape key when
// shapes vary").

const MS = 1e6;
const row = (width: number) => ({ name: 'x', datatype: 'FP32' as const, shape: [1, width], data: new Uint8Array(4 * width) });
const keyOf = (width: number): string => batchShape([row(width)]).key;
/** 1 ms a run and 0.01 ms an element: what a compute-bound model's runs look like by size. */
const linearNs = (elements: number): number => (1 + 0.01 * elements) * MS;

describe('elementsPerRowOf', () => {
  it('sums the elements of a row over the inputs of a batch key', () => {
    expect(elementsPerRowOf(keyOf(16))).toBe(16);
    const two = batchShape([
      { name: 'a', datatype: 'FP32', shape: [4, 3, 5], data: new Uint8Array(240) },
      { name: 'b', datatype: 'INT64', shape: [4, 2], data: new Uint8Array(64) },
    ]).key;
    expect(elementsPerRowOf(two)).toBe(17);
    // A rank-1 input: one element a row.
    expect(elementsPerRowOf(batchShape([{ name: 'a', datatype: 'FP32', shape: [8], data: new Uint8Array(32) }]).key)).toBe(1);
  });

  it('counts every dim of a request run alone, none past the rows of one that batches', () => {
    const image = { name: 'IMAGE', datatype: 'UINT8' as const, shape: [3, 480, 640], data: new Uint8Array(0) };
    expect(elementsPerRowOf(runShapeKey([image], 0))).toBe(3 * 480 * 640);
    expect(elementsPerRowOf(runShapeKey([image], 1))).toBe(480 * 640);
    expect(elementsPerRowOf(runShapeKey([{ ...image, shape: [] }], 0))).toBe(1);
  });

  it('is 0 where no count holds for every row: a ragged input', () => {
    const key = batchShape([{ name: 'x', datatype: 'FP32', shape: [1, 7], data: new Uint8Array(28) }], new Set(['x'])).key;
    expect(elementsPerRowOf(key)).toBe(0);
  });
});

describe('KindCosts by size', () => {
  /** Runs of widths 16 and 512 at 1, 8 and 64 rows, each timed by linearNs, `times` times. */
  function taught(costs: KindCosts, times = 2): void {
    for (let i = 0; i < times; i++) {
      for (const width of [16, 512]) {
        for (const rows of [1, 8, 64]) {
          costs.noteShape('cpu', keyOf(width))?.observe(rows, linearNs(rows * width));
          costs.noteSize('cpu', keyOf(width), rows, linearNs(rows * width));
        }
      }
    }
  }

  it('keeps no size curve while the version runs one shape', () => {
    const costs = new KindCosts(elementsPerRowOf);
    for (let i = 0; i < 8; i++) costs.noteSize('cpu', keyOf(16), 8, MS);
    expect(costs.sizeEntries()).toEqual([]);
    expect(costs.shapeCost('cpu', keyOf(16))).toBeUndefined();
  });

  it('reads a shape not run yet from the curve at its elements per row', () => {
    const costs = new KindCosts(elementsPerRowOf);
    taught(costs);
    const unseen = costs.shapeCost('cpu', keyOf(1024));
    expect(unseen).toBeInstanceOf(SizeScaledCost);
    // 1,024 and 8,192 elements lie between measured sizes (512 and 32,768): on the line they were timed on.
    expect(unseen?.computeNs(1)).toBeCloseTo(linearNs(1024), -2);
    expect(unseen?.computeNs(8)).toBeCloseTo(linearNs(8 * 1024), -2);
    // Its quickest is the same here: every timing of a size was equal.
    expect(unseen?.computeFloorNs(8)).toBeCloseTo(linearNs(8 * 1024), -2);
    // The version's mix by rows would have said 64 rows take what 64 of 16 or 512 did, whatever the width.
    const [[kind, curve] = ['', new CostModel()]] = costs.sizeEntries();
    expect(kind).toBe('cpu');
    expect(curve.points().map((p) => p.rows)).toEqual([16, 128, 512, 1024, 4096, 32768]);
  });

  it('says nothing until the curve has timed enough executions to be trusted', () => {
    const costs = new KindCosts(elementsPerRowOf);
    costs.noteShape('cpu', keyOf(16));
    costs.noteShape('cpu', keyOf(512));
    for (const rows of [1, 8, 64]) costs.noteSize('cpu', keyOf(512), rows, linearNs(rows * 512));
    expect(costs.shapeCost('cpu', keyOf(1024))).toBeUndefined();
    costs.noteSize('cpu', keyOf(16), 1, linearNs(16));
    expect(costs.shapeCost('cpu', keyOf(1024))?.trusted).toBe(true);
  });

  it('gives way to the shape’s own model once that is trusted', () => {
    const costs = new KindCosts(elementsPerRowOf);
    taught(costs);
    expect(costs.shapeCost('cpu', keyOf(256))).toBeInstanceOf(SizeScaledCost);
    // Rows of 256 that cost twice what their size says (a model not proportional to its elements).
    for (let i = 0; i < 4; i++) costs.noteShape('cpu', keyOf(256))?.observe(8, 2 * linearNs(8 * 256));
    const own = costs.shapeCost('cpu', keyOf(256));
    expect(own).toBeInstanceOf(CostModel);
    expect(own?.computeNs(8)).toBe(2 * linearNs(8 * 256));
  });

  it('has no reading for a ragged shape, whose rows differ in length', () => {
    const costs = new KindCosts(elementsPerRowOf);
    taught(costs);
    const ragged = batchShape([row(7)], new Set(['x'])).key;
    expect(costs.shapeCost('cpu', ragged)).toBeUndefined();
    // Nor does a ragged batch teach the curve anything.
    const before = costs.sizeEntries()[0]?.[1].samples;
    costs.noteSize('cpu', ragged, 4, MS);
    expect(costs.sizeEntries()[0]?.[1].samples).toBe(before);
  });

  it('keeps no curve without a way to count a key’s elements', () => {
    const costs = new KindCosts();
    taught(costs);
    expect(costs.sizeEntries()).toEqual([]);
    expect(costs.shapeCost('cpu', keyOf(1024))).toBeUndefined();
  });
});

describe('SizeScaledCost', () => {
  it('reads the overhead from the kind’s model and sizes the efficient batch in the shape’s rows', () => {
    const size = new CostModel();
    // A curve that stops paying past 4,096 elements: 1 ms up to there, then proportional.
    for (let i = 0; i < 2; i++) for (const elements of [1024, 2048, 4096, 8192, 16384]) size.observe(elements, Math.max(1, elements / 4096) * MS);
    const kind = new CostModel();
    for (let i = 0; i < 8; i++) kind.observe(1, MS);
    for (let i = 0; i < 16; i++) kind.observeOverhead(1.3 * MS, MS);
    const scaled = new SizeScaledCost(size, kind, 1024);
    expect(scaled.overheadNs).toBeCloseTo(0.3 * MS, -1);
    expect(scaled.estimateNs(4)).toBeCloseTo(1.3 * MS, -1);
    // 4 rows of 1,024 are the 4,096 elements past which the curve is flat in throughput.
    expect(scaled.efficientRows(64)).toBe(4);
    expect(new SizeScaledCost(size, kind, 512).efficientRows(64)).toBe(8);
  });
});

describe('SLO batching by size', () => {
  it('sizes a batch of a shape not run yet by the size curve, not by the version’s mix of short rows', () => {
    const clock = stoppedClock();
    const slots = oneSlot(true);
    const cut: number[] = [];
    const runner = cutRecorder(cut);
    const batcher = new DynamicBatcher({ modelKey: 'm/1', slots, dispatcher: runner, policy: batchingPolicy(64), clock, shedding: false, sloNs: 25_000_000n });
    // The version's model, taught by short rows: 64 of them in 7.4 ms. The size curve by rows of 16 and 128 values:
    // 1 ms a run and 0.01 ms an element, so a row of 1,024 values costs 11 ms alone and two of them 21.5.
    for (let i = 0; i < 4; i++) {
      for (const rows of [1, 8, 64]) {
        batcher.costs.of('cpu').observe(rows, (1 + 0.1 * rows) * MS);
        for (const width of [16, 128]) {
          batcher.costs.noteShape('cpu', keyOf(width))?.observe(rows, linearNs(rows * width));
          batcher.costs.noteSize('cpu', keyOf(width), rows, linearNs(rows * width));
        }
      }
    }
    for (let i = 0; i < 100; i++) {
      void batcher.enqueue({ inputs: [row(1024)], outputs: [], signal: new AbortController().signal, deadline: Infinity, batchSize: 1 }).catch(() => {});
    }
    slots.release(1);
    // By the version's model 64 rows of any width take 7.4 ms, so the backlog was cut whole (64 rows: 656 ms). By the
    // size curve, timed up to 8 rows' worth of this shape's elements and still rising there, the batch is twice that
    // (CostModel's efficientRows), and not cut larger: 16 rows of it already end past the SLO.
    expect(cut).toEqual([16]);
  });
});
