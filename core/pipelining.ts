/**
 * Executions a worker accepts per model instance beyond the one running:
 * the next batch is already in the worker when the current run ends, so an
 * instance does not sit idle for a gateway round trip between runs. The
 * gateway's slots count `instances × (1 + ahead)`; the worker runs at most
 * `instances` at once and queues the rest.
 *
 * A batching model sends one ahead: its batches grow in the gateway while
 * the instance is busy. A model without dynamic batching whose runs are
 * short sends more ahead to the workers the gateway started (whose queues are
 * sized for it), up to AHEAD_BUDGET_NS of queued compute: each execution sent
 * alone cost a socket write and a wake-up of the worker, and its answer the
 * same back, which was most of the hop's cost for a small model. The budget
 * bounds what waits in the worker's FIFO, out of reach of the gateway's
 * priorities, fair shares and cancellation.
 */
export const EXECUTIONS_AHEAD_PER_INSTANCE = 1;

/** The most executions a gateway sends ahead per instance, to a worker whose queue is sized for it. */
export const MAX_EXECUTIONS_AHEAD_PER_INSTANCE = 7;

/** Compute queued ahead per instance that short runs may fill (1 ms). */
export const AHEAD_BUDGET_NS = 1_000_000;

export function executionSlots(instanceCount: number, ahead = EXECUTIONS_AHEAD_PER_INSTANCE): number {
  return instanceCount * (1 + ahead);
}

/**
 * Executions to send ahead per instance for runs of `runNs` (compute): from
 * EXECUTIONS_AHEAD_PER_INSTANCE to MAX_EXECUTIONS_AHEAD_PER_INSTANCE (each
 * worker's own limit is applied by the slots).
 */
export function executionsAhead(runNs: number): number {
  if (!(runNs > 0)) return EXECUTIONS_AHEAD_PER_INSTANCE;
  return Math.max(EXECUTIONS_AHEAD_PER_INSTANCE, Math.min(MAX_EXECUTIONS_AHEAD_PER_INSTANCE, Math.floor(AHEAD_BUDGET_NS / runNs)));
}
