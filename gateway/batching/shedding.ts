// Early shedding: a queued request that cannot finish before its deadline,
// by the cost model, fails at once with Triton's timeout status and words
// (UNAVAILABLE "Request timeout expired"), and is never computed. Pure
// decisions here; the batcher applies them. With a cold cost model nothing
// is shed.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { ServingError } from '../../core/errors.js';

/** A request shed before it ran: counted apart from other failures (metrics reason "SHED"). */
export class ShedError extends ServingError {
  override name = 'ShedError';
}

export function isShed(error: unknown): boolean {
  return error instanceof ShedError;
}

const msText = (ms: number): string => (ms < 10 ? ms.toFixed(1) : String(Math.round(ms)));

export function shedError(modelKey: string, expectedMs: number, deadlineMs: number): ShedError {
  return new ShedError(
    GrpcStatus.UNAVAILABLE,
    `Request timeout expired: model '${modelKey}' shed the request before it ran: it would finish in ${msText(expectedMs)} ms, its deadline is in ${msText(deadlineMs)} ms`,
  );
}

/**
 * How much faster per row a backlog drains, cut in batches of `backlogRows`,
 * than the batches of `measuredRows` a drain rate was measured at, by the
 * cost model's compute time per row at each; at most 1, and 1 while either
 * size is unknown to it. A backlog is cut up to max_batch_size and time per
 * row falls as batches grow: at half load the rate comes from small batches,
 * and after a stall it counted a backlog that large batches clear in a few
 * ms as three times as long (mlp_large: SLO mode shed 60–170 requests a
 * second at 50 % load that fixed delays answered in time).
 */
export function backlogDrainScale(measuredRows: number, backlogRows: number, computeNs: (rows: number) => number | undefined): number {
  if (!(measuredRows > 0) || backlogRows <= measuredRows) return 1;
  const atMeasured = computeNs(measuredRows);
  const atBacklog = computeNs(backlogRows);
  if (atMeasured === undefined || atBacklog === undefined || !(atMeasured > 0)) return 1;
  return Math.min(1, atBacklog / backlogRows / (atMeasured / measuredRows));
}

/** A drain rate and what it is applied to. */
export interface DrainEstimate {
  /** Busy ns per row answered lately (drain-rate.ts). */
  readonly nsPerRow: number;
  /** Rows per completion the rate was measured at. */
  readonly measuredRows: number;
  /** Rows served before a request or with it, in the queue. */
  readonly rowsAhead: number;
  /** Rows a backlog in the queue is cut in (the batcher's full batch). */
  readonly backlogRows: number;
  /** Rows in batches sent and not yet answered, and how many batches. */
  readonly runningRows: number;
  readonly runningBatches: number;
}

/**
 * When a request would be answered, ns from now, at the drain rate: the rows
 * ahead of it, in the batches a backlog is cut in, and half the rows out
 * (about half done on average), in the batches they were cut in; each at the
 * measured time per row scaled to its batch size (backlogDrainScale). After
 * a stall at half load (MLP, batches of 10 lately) two batches of 30 were
 * out: counted at the rate of the small batches they came to 20 ms where
 * they run in a few, and the SLO mode shed requests that fixed delays
 * answered in time.
 */
export function drainedNs(d: DrainEstimate, computeNs: (rows: number) => number | undefined): number {
  const ahead = d.rowsAhead * backlogDrainScale(d.measuredRows, Math.min(d.backlogRows, d.rowsAhead), computeNs);
  const perBatchOut = d.runningBatches > 0 ? Math.round(d.runningRows / d.runningBatches) : 0;
  const out = (d.runningRows / 2) * backlogDrainScale(d.measuredRows, perBatchOut, computeNs);
  return (ahead + out) * d.nsPerRow;
}

export interface BacklogEstimate {
  /** Rows served before or with this request (its own included). */
  readonly rowsAhead: number;
  /** Rows an execution takes at most. */
  readonly maxBatch: number;
  /** Executions that run at once (instances across workers); at least 1. */
  readonly parallel: number;
}

/**
 * When a request would finish, ns from now, if the rows ahead of it ran in
 * full batches spread over the instances; undefined while the cost model is
 * cold. Work already running is not counted, so this errs early: a request
 * shed by it would have missed its deadline by this estimate even so.
 * `lastCost`: the cost of the last batch, the request's own (its shape's
 * model where shapes vary); `cost` by default.
 */
export function expectedFinishNs(b: BacklogEstimate, cost: (rows: number) => number | undefined, lastCost = cost): number | undefined {
  if (b.rowsAhead <= 0) return 0;
  const full = Math.floor(b.rowsAhead / b.maxBatch);
  const rest = b.rowsAhead - full * b.maxBatch;
  // The last batch runs on one instance; those before it share them all.
  const before = rest === 0 ? full - 1 : full;
  const beforeNs = before > 0 ? cost(b.maxBatch) : 0;
  const last = lastCost(rest > 0 ? rest : b.maxBatch);
  if (beforeNs === undefined || last === undefined) return undefined;
  return (before * beforeNs) / Math.max(1, b.parallel) + last;
}

/**
 * An expected finish may pass the deadline by this share of the time left
 * before the request is shed on arrival. The estimate is a median and a
 * mean: a request expected just past its deadline makes it about as often
 * as not, and shedding it loses that chance for sure. At half load (MLP,
 * 25 ms SLO) 518 of 609 arrival sheds were expected less than 1 ms late;
 * with the margin the SLO mode matched the best fixed delay at capacity in
 * 14 of 20 runs, 2 of 5 without (docs/performance.md). Far past the
 * deadlines, as under heavy overload, the margin changes nothing.
 */
export const MISS_MARGIN = 0.05;

/** Shed now: `finishNs` from now passes the deadline `untilDeadlineNs` from now by more than MISS_MARGIN of it. */
export function wouldMiss(finishNs: number | undefined, untilDeadlineNs: number): boolean {
  return finishNs !== undefined && finishNs > untilDeadlineNs * (1 + MISS_MARGIN);
}

/** Batches per instance a queue may hold ahead of a request before it counts as standing (standsTooLong). */
export const STANDING_BATCHES = 2;
/** A request behind a standing queue is shed when its expected finish passes this share of its deadline's time left. */
export const STANDING_SHARE = 0.5;

/** What standsTooLong weighs: the queue ahead of a request with a deadline of its own, and its expected finish. */
export interface StandingQueue {
  /** Rows served before or with this request, in the queue. */
  readonly rowsAhead: number;
  /** Rows a backlog is cut in. */
  readonly batchRows: number;
  /** Executions that run at once (instances across workers). */
  readonly parallel: number;
  /** Expected finish, ns from now (as for wouldMiss). */
  readonly finishNs: number;
  /** ns from now to the request's own deadline. */
  readonly untilDeadlineNs: number;
}

/**
 * Shed on arrival, though the deadline may still be made: more than
 * STANDING_BATCHES batches per instance wait ahead, and waiting for them
 * would take more than STANDING_SHARE of the time left. Under a sustained
 * overload the queue otherwise grows until its requests end at their
 * deadlines: the answers' p99 sat at the deadline, and the requests that
 * then ended late had their bodies received for nothing (resnet_small at
 * 1,300 images/s, 300 ms deadlines: with this rule the answers' p99 went
 * from 290–298 to 222–262 ms and none admitted ended late, at the same
 * goodput; a fixed bound of two batches, 154–214 ms, refuses callers with
 * room to spare too; docs/performance.md). A shorter queue is never cut, so a
 * request that rides in the next batches always waits, and a caller whose
 * deadline leaves room (a closed loop with seconds to spare) is never
 * refused by this. Only for deadlines the caller set: an SLO-mode request
 * due at the SLO is that mode's own goal, met as late as it may be.
 */
export function standsTooLong(q: StandingQueue): boolean {
  return q.rowsAhead > STANDING_BATCHES * q.batchRows * Math.max(1, q.parallel) && q.finishNs > q.untilDeadlineNs * STANDING_SHARE;
}

/** The answer to a request shed by standsTooLong, `ahead` of it in the queue (its own rows not counted); ms with one decimal, since rounded 10.3 read as "10 ms, past half of the 20 ms". */
export function standingShedError(modelKey: string, ahead: number, expectedMs: number, deadlineMs: number, unit: 'rows' | 'requests' = 'rows'): ShedError {
  // A model without dynamic batching runs each request alone: requests and runs, not rows and batches.
  const runs = unit === 'rows' ? 'batches' : 'runs';
  return new ShedError(
    GrpcStatus.UNAVAILABLE,
    `Request timeout expired: model '${modelKey}' shed the request before it ran: ${ahead} ${unit} wait ahead of it, so it would not run in the next ${STANDING_BATCHES} ${runs} per instance, ` +
      `and it would finish in ${expectedMs.toFixed(1)} ms, past half of the ${deadlineMs.toFixed(1)} ms to its deadline`,
  );
}
