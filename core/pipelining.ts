/**
 * Executions a worker accepts per model instance beyond the one running:
 * the next batch is already in the worker when the current run ends, so an
 * instance does not sit idle for a gateway round trip between runs. The
 * gateway's slots count `instances × (1 + EXECUTIONS_AHEAD_PER_INSTANCE)`;
 * the worker runs at most `instances` at once and queues the rest.
 */
export const EXECUTIONS_AHEAD_PER_INSTANCE = 1;

export function executionSlots(instanceCount: number): number {
  return instanceCount * (1 + EXECUTIONS_AHEAD_PER_INSTANCE);
}
