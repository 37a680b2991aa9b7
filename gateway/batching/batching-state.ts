// What a model version's scheduler has learned and decides by, as JSON for
// GET /v2/models/{m}[/versions/{v}]/batching: the cost model (execution time
// by batch size, measured and expected), the overhead on top of it, and for a
// batcher its mode, the SLO and the full batch it cuts now, the arrival and
// drain rates, the queue. Built on request, off the request path. The same
// cost model is in /metrics (fabriek_batch_cost_seconds), by bucket only.
import { type CostModel } from '../../core/cost-model.js';
import { type KindCosts } from '../../core/kind-costs.js';
import { type PlacementView } from '../scheduling/instance-slots.js';
import { shapeLabel } from './batch-rows.js';

/** What a dynamic batcher knows now (DynamicBatcher.state). */
export interface BatcherState {
  readonly maxBatchSize: number;
  readonly preferredBatchSizes: readonly number[];
  readonly maxQueueDelayNs: bigint;
  /** 0n: fixed delays (Triton's rules). */
  readonly sloNs: bigint;
  readonly queued: number;
  readonly runningBatches: number;
  /** SLO mode: rows of a full batch now. */
  readonly fullBatchRows: number;
  /** SLO mode: tenants share the model (see SHARED_NS). */
  readonly sharedByTenants: boolean;
  readonly arrivalRowsPerNs: number;
  /** Busy ns per row answered while the queue had a backlog; undefined without one. */
  readonly drainNsPerRow: number | undefined;
  readonly computedPastDeadline: number;
}

/** What a scheduler without batching knows now (DirectScheduler). */
export interface DirectState {
  readonly queued: number;
  readonly runningExecutions: number;
}

export interface CostPointJson {
  readonly rows: number;
  readonly timings: number;
  readonly compute_ms: number;
}

export interface ExpectedCostJson {
  readonly rows: number;
  /** The instance's compute: how long the execution occupies it. */
  readonly compute_ms: number;
  /** Compute plus the learned overhead (the way to the worker and back): from cut to answer. */
  readonly execution_ms: number;
  /** The quickest recent compute: what shedding counts on. */
  readonly least_compute_ms: number;
}

export interface CostModelJson {
  /** The instance kind whose executions it learned (core/kind-costs.ts). */
  readonly kind: string;
  readonly executions: number;
  /** No execution timed yet: nothing is estimated, nothing is shed. */
  readonly cold: boolean;
  /** Enough executions timed to shed on. */
  readonly trusted: boolean;
  readonly overhead_ms: number;
  readonly overhead_floor_ms: number;
  /** Each power-of-two bucket timed lately: its mean rows, how many timings, their median compute (never above a larger bucket's). */
  readonly measured: readonly CostPointJson[];
  /** The estimate at 1, 2, 4, … rows and at the largest batch; empty while cold. */
  readonly expected: readonly ExpectedCostJson[];
}

const ms = (ns: number): number => Math.round(ns / 1e3) / 1e3;

/** Row counts the estimate is shown at: powers of two below `maxRows`, and `maxRows`. */
export function expectedRows(maxRows: number): number[] {
  const rows: number[] = [];
  for (let n = 1; n < maxRows; n *= 2) rows.push(n);
  rows.push(Math.max(1, maxRows));
  return rows;
}

export function costModelJson(kind: string, cost: CostModel, maxRows: number): CostModelJson {
  const expected: ExpectedCostJson[] = [];
  if (!cost.cold) {
    for (const rows of expectedRows(maxRows)) {
      const compute = cost.computeNs(rows);
      const execution = cost.estimateNs(rows);
      const least = cost.computeFloorNs(rows);
      if (compute === undefined || execution === undefined) continue;
      expected.push({ rows, compute_ms: ms(compute), execution_ms: ms(execution), least_compute_ms: ms(least ?? compute) });
    }
  }
  return {
    kind,
    executions: cost.samples,
    cold: cost.cold,
    trusted: cost.trusted,
    overhead_ms: ms(cost.overheadNs),
    overhead_floor_ms: ms(cost.overheadFloorNs),
    measured: cost.points().map((p) => ({ rows: Math.round(p.rows * 10) / 10, timings: p.samples, compute_ms: ms(p.ns) })),
    expected,
  };
}

export interface SizeCurveJson {
  readonly kind: string;
  readonly executions: number;
  /** Enough executions timed for a shape without a trusted model of its own to be read from it. */
  readonly trusted: boolean;
  /** Each power-of-two bucket of elements timed lately: their mean, how many timings, their median compute. */
  readonly measured: readonly { readonly elements: number; readonly timings: number; readonly compute_ms: number }[];
}

/** A kind's curve by elements (core/size-scaled-cost.ts): its points' rows are elements. */
export function sizeCurveJson(kind: string, curve: CostModel): SizeCurveJson {
  return {
    kind,
    executions: curve.samples,
    trusted: curve.trusted,
    measured: curve.points().map((p) => ({ elements: Math.round(p.rows), timings: p.samples, compute_ms: ms(p.ns) })),
  };
}

/**
 * `cost_model`: the model the scheduler decides with (its lead kind's); with
 * instances of several kinds timed, `other_cost_models` holds the others';
 * where the version's batches vary in shape, `shape_cost_models` holds each
 * (kind, shape) lately run, the most recent first, and `size_cost_models`
 * each kind's curve by elements, which shapes without a trusted model of
 * their own are read from (core/kind-costs.ts).
 */
function costModelsJson(costs: KindCosts, maxRows: number): Record<string, unknown> {
  const [lead, ...others] = costs.entries().map(([kind, cost]) => costModelJson(kind, cost, maxRows));
  const shapes = costs.variableShapes ? costs.shapeEntries().map((e) => ({ shape: shapeLabel(e.shape), ...costModelJson(e.kind, e.model, maxRows) })) : [];
  const sizes = costs.variableShapes ? costs.sizeEntries().map(([kind, curve]) => sizeCurveJson(kind, curve)) : [];
  return {
    cost_model: lead,
    ...(others.length > 0 ? { other_cost_models: others } : {}),
    ...(shapes.length > 0 ? { shape_cost_models: shapes } : {}),
    ...(sizes.length > 0 ? { size_cost_models: sizes } : {}),
  };
}

export function batcherJson(state: BatcherState, costs: KindCosts): Record<string, unknown> {
  const slo = state.sloNs > 0n;
  return {
    scheduler: slo ? 'slo_batching' : 'dynamic_batching',
    max_batch_size: state.maxBatchSize,
    ...(slo
      ? { batching_slo_ms: Number(state.sloNs) / 1e6, full_batch_rows: state.fullBatchRows, shared_by_tenants: state.sharedByTenants }
      : { preferred_batch_size: state.preferredBatchSizes, max_queue_delay_microseconds: Number(state.maxQueueDelayNs / 1000n) }),
    queued: state.queued,
    running_batches: state.runningBatches,
    arrival_rows_per_second: Math.round(state.arrivalRowsPerNs * 1e10) / 10,
    drain_ms_per_row: state.drainNsPerRow === undefined ? null : ms(state.drainNsPerRow),
    computed_past_deadline: state.computedPastDeadline,
    ...costModelsJson(costs, state.maxBatchSize),
  };
}

export function directJson(state: DirectState, costs: KindCosts, maxRows: number): Record<string, unknown> {
  return {
    scheduler: 'direct',
    queued: state.queued,
    running_executions: state.runningExecutions,
    ...costModelsJson(costs, maxRows),
  };
}

/**
 * The workers the version's executions go to, as this gateway chooses among
 * them (InstanceSlots.acquire): its executions out on each, the others' that
 * each worker last reported (and their wait, by the worker's estimate), and
 * how long one of ours takes there, raw and over what the version's cost
 * model of that worker's instance kind expected for its rows. Null: not known now.
 */
export function placementsJson(placements: readonly PlacementView[]): Record<string, unknown>[] {
  return placements.map((p) => ({
    worker: p.worker,
    instances: p.instances,
    kind: p.kind,
    slots: p.slots,
    busy: p.busy,
    sent: p.sent,
    others_reported: p.othersReported ?? null,
    others_wait_ms: p.othersNs === undefined ? null : ms(p.othersNs),
    execution_ms: p.execNs === undefined ? null : ms(p.execNs),
    compute_ratio: p.computeRatio ?? null,
  }));
}
