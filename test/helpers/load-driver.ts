import { type ServiceError, status } from '@grpc/grpc-js';
import { type InferenceGrpcClient } from '../../client/grpc-client.js';
import { addSubRequest, isExpectedSum } from '../../bench/fault/add-sub.js';

// Closed-loop load for failover tests: `concurrency` loops each send one
// add_sub request at a time, through whichever target `pick` returns, and
// check every answer against the expected sums. Every request is recorded
// with the one outcome its call settled with.

export interface Outcome {
  readonly ok: boolean;
  /** gRPC status name of a failure. */
  readonly code?: string;
  readonly message?: string;
}

export interface LoadRun {
  /** Stops sending and resolves once every request sent has its answer. */
  stop(): Promise<Outcome[]>;
  /** Requests answered so far. */
  readonly answered: number;
}

export function startLoad(pick: () => InferenceGrpcClient, concurrency: number, timeoutMs = 20_000): LoadRun {
  const outcomes: Outcome[] = [];
  let running = true;
  let seed = 0;
  const loop = async (): Promise<void> => {
    while (running) {
      const { request, expected } = addSubRequest(seed++ % 1000);
      try {
        const response = await pick().modelInfer(request, { timeoutMs });
        const right = isExpectedSum(response.rawOutputContents[0], expected);
        outcomes.push(right ? { ok: true } : { ok: false, code: 'WRONG_ANSWER', message: `id ${request.id}` });
      } catch (error) {
        const e = error as ServiceError;
        outcomes.push({ ok: false, code: status[e.code] ?? String(e.code), message: e.details ?? e.message });
      }
    }
  };
  const loops = Array.from({ length: concurrency }, () => loop());
  return {
    get answered() {
      return outcomes.length;
    },
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return outcomes;
    },
  };
}

/** Failures grouped as "CODE: message" → count, for assertion messages. */
export function failureSummary(outcomes: readonly Outcome[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const o of outcomes) {
    if (o.ok) continue;
    const k = `${o.code}: ${o.message}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}
