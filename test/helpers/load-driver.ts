import { type ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'vitest';
import { type InferenceGrpcClient } from '../../client/grpc-client.js';
import { addSubRequest, isExpectedSum } from '../../bench/fault/add-sub.js';
import { type GatewayProcess } from './gateway-process.js';

// Closed-loop load for failover tests: `concurrency` loops each send one
// add_sub request at a time, through whichever target `pick` returns, and
// check every answer against the expected sums. Every request is recorded
// with the one outcome its call settled with.

export interface Outcome {
  readonly ok: boolean;
  /** gRPC status name of a failure. */
  readonly code?: string;
  readonly message?: string;
  /** When the call was made and when it settled (ms since the epoch). */
  readonly start: number;
  readonly end: number;
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
      const start = Date.now();
      try {
        const response = await pick().modelInfer(request, { timeoutMs });
        const right = isExpectedSum(response.rawOutputContents[0], expected);
        outcomes.push(right ? { ok: true, start, end: Date.now() } : { ok: false, code: 'WRONG_ANSWER', message: `id ${request.id}`, start, end: Date.now() });
      } catch (error) {
        const e = error as ServiceError;
        outcomes.push({ ok: false, code: status[e.code] ?? String(e.code), message: e.details ?? e.message, start, end: Date.now() });
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

export interface ServedCounts {
  readonly ok: number;
  readonly failed: number;
}

/** Success and failure counts of add_sub summed over `gateways`: what the servers answered. */
export async function servedCounts(gateways: readonly GatewayProcess[]): Promise<ServedCounts> {
  let ok = 0;
  let failed = 0;
  for (const gw of gateways) {
    const stats = await gw.client.modelStatistics('add_sub');
    for (const s of stats.modelStats) {
      ok += Number(s.inferenceStats?.success?.count ?? 0n);
      failed += Number(s.inferenceStats?.fail?.count ?? 0n);
    }
  }
  return { ok, failed };
}

/** Asserts that every request sent got exactly one answer, as the servers counted too. */
export function expectEachAnsweredOnce(outcomes: readonly Outcome[], before: ServedCounts, after: ServedCounts): void {
  const ok = outcomes.filter((o) => o.ok).length;
  expect(after.ok - before.ok).toBe(ok);
  expect(after.failed - before.failed).toBe(outcomes.length - ok);
}
