import { describe, expect, it } from 'vitest';
import { type BatcherState, batcherJson, costModelJson, directJson, expectedRows } from '../../gateway/batching/batching-state.js';
import { CostModel } from '../../core/cost-model.js';
import { KindCosts } from '../../core/kind-costs.js';

const MS = 1e6;

/** A cost model that timed batches of 1, 8 and 32 rows `times` times each: 1 ms + 0.1 ms a row. */
function learned(times = 3, cost = new CostModel()): CostModel {
  for (let i = 0; i < times; i++) for (const rows of [1, 8, 32]) cost.observe(rows, (1 + 0.1 * rows) * MS);
  return cost;
}

/** A version's models by kind with only the CPU's timed, as learned(). */
function cpuOnly(): KindCosts {
  const costs = new KindCosts();
  learned(3, costs.of('cpu'));
  return costs;
}

const fixed: BatcherState = {
  maxBatchSize: 32,
  preferredBatchSizes: [8, 32],
  maxQueueDelayNs: 2_000_000n,
  sloNs: 0n,
  queued: 5,
  runningBatches: 1,
  fullBatchRows: 32,
  sharedByTenants: false,
  arrivalRowsPerNs: 0.0035,
  drainNsPerRow: undefined,
  computedPastDeadline: 0,
};

describe('expectedRows', () => {
  it('powers of two below the largest batch, then the largest', () => {
    expect(expectedRows(64)).toEqual([1, 2, 4, 8, 16, 32, 64]);
    expect(expectedRows(48)).toEqual([1, 2, 4, 8, 16, 32, 48]);
    expect(expectedRows(1)).toEqual([1]);
    expect(expectedRows(0)).toEqual([1]);
  });
});

describe('costModelJson', () => {
  it('a cold model: nothing measured, nothing expected, not trusted', () => {
    expect(costModelJson('cpu', new CostModel(), 32)).toEqual({
      kind: 'cpu',
      executions: 0,
      cold: true,
      trusted: false,
      overhead_ms: 0,
      overhead_floor_ms: 0,
      measured: [],
      expected: [],
    });
  });

  it('the buckets timed, and the estimate at each size up to the largest batch, in ms', () => {
    const json = costModelJson('cpu', learned(), 32);
    expect(json.executions).toBe(9);
    expect([json.cold, json.trusted]).toEqual([false, true]);
    expect(json.measured).toEqual([
      { rows: 1, timings: 3, compute_ms: 1.1 },
      { rows: 8, timings: 3, compute_ms: 1.8 },
      { rows: 32, timings: 3, compute_ms: 4.2 },
    ]);
    expect(json.expected.map((e) => e.rows)).toEqual([1, 2, 4, 8, 16, 32]);
    // Measured sizes as measured; between them, linear (16 rows: a third of the way from 8 to 32).
    expect(json.expected.find((e) => e.rows === 8)).toEqual({ rows: 8, compute_ms: 1.8, execution_ms: 1.8, least_compute_ms: 1.8 });
    expect(json.expected.find((e) => e.rows === 16)?.compute_ms).toBeCloseTo(2.6, 6);
  });

  it('execution_ms adds the learned overhead to the compute', () => {
    const cost = learned();
    for (let i = 0; i < 4; i++) cost.observeOverhead(4.2 * MS + 0.5 * MS, 4.2 * MS);
    const at32 = costModelJson('cpu', cost, 32).expected.find((e) => e.rows === 32);
    expect(at32).toEqual({ rows: 32, compute_ms: 4.2, execution_ms: 4.7, least_compute_ms: 4.2 });
    expect(costModelJson('cpu', cost, 32).overhead_ms).toBe(0.5);
  });
});

describe('batcherJson', () => {
  it('fixed delays: Triton\'s settings, the queue and the rates', () => {
    const json = batcherJson(fixed, cpuOnly());
    expect(json).toMatchObject({
      scheduler: 'dynamic_batching',
      max_batch_size: 32,
      preferred_batch_size: [8, 32],
      max_queue_delay_microseconds: 2000,
      queued: 5,
      running_batches: 1,
      arrival_rows_per_second: 3_500_000,
      drain_ms_per_row: null,
      computed_past_deadline: 0,
    });
    expect(json).not.toHaveProperty('batching_slo_ms');
    expect(json).not.toHaveProperty('full_batch_rows');
    // One kind: its model, and no others.
    expect(json.cost_model).toMatchObject({ kind: 'cpu', executions: 9 });
    expect(json).not.toHaveProperty('other_cost_models');
  });

  it('instances of two kinds: the lead kind\'s model decides and comes first, the other kind\'s beside it', () => {
    const costs = cpuOnly();
    learned(1, costs.of('cuda'));
    costs.lead('cuda');
    const json = batcherJson(fixed, costs);
    expect(json.cost_model).toMatchObject({ kind: 'cuda', executions: 3 });
    expect(json.other_cost_models).toMatchObject([{ kind: 'cpu', executions: 9 }]);
  });

  it('SLO mode: the SLO, the full batch it cuts now and whether tenants share it, in place of the delays', () => {
    const json = batcherJson({ ...fixed, sloNs: 25_000_000n, fullBatchRows: 24, sharedByTenants: true, drainNsPerRow: 130_000 }, cpuOnly());
    expect(json).toMatchObject({ scheduler: 'slo_batching', batching_slo_ms: 25, full_batch_rows: 24, shared_by_tenants: true, drain_ms_per_row: 0.13 });
    expect(json).not.toHaveProperty('max_queue_delay_microseconds');
  });
});

describe('directJson', () => {
  it('a model without batching: its queue, its executions running, and the cost model up to the rows a request may carry', () => {
    const json = directJson({ queued: 2, runningExecutions: 3 }, cpuOnly(), 8);
    expect(json).toMatchObject({ scheduler: 'direct', queued: 2, running_executions: 3 });
    expect((json.cost_model as { expected: { rows: number }[] }).expected.map((e) => e.rows)).toEqual([1, 2, 4, 8]);
  });
});
