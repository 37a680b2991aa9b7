import { type ServiceError } from '@grpc/grpc-js';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { type InferenceGrpcClient } from '../../client/grpc-client.js';
import { type ModelInferRequest, type ModelInferResponse } from '../../proto/gen/inference.js';
import { LatencyRecorder, type LatencySummary } from './stats.js';

export interface ClosedLoopOptions {
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** Builds request `i` (distinct inputs make mixed-up answers visible). */
  readonly request: (i: number) => ModelInferRequest;
  /** Sees every answer of the measurement window with its request index. */
  readonly onAnswer?: (i: number, response: ModelInferResponse) => void;
  readonly timeoutMs?: number;
}

export interface ClosedLoopResult {
  readonly concurrency: number;
  readonly requests: number;
  readonly seconds: number;
  readonly requestsPerSecond: number;
  readonly latency: LatencySummary;
  readonly errors: Readonly<Record<string, number>>;
}

/**
 * perf_analyzer's closed loop: `concurrency` clients, each sending its next
 * request when the last one is answered. Bounded by time; it stops itself.
 */
export async function closedLoop(client: InferenceGrpcClient, o: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const latency = new LatencyRecorder();
  const errors: Record<string, number> = {};
  let next = 0;
  let measuring = false;
  let stop = false;
  let measuredStart = 0;
  let measuredEnd = 0;
  const worker = async (): Promise<void> => {
    while (!stop) {
      const i = next++;
      const t0 = performance.now();
      try {
        const response = await client.modelInfer(o.request(i), { timeoutMs: o.timeoutMs ?? 30_000 });
        if (measuring && !stop) {
          latency.record((performance.now() - t0) * 1000);
          o.onAnswer?.(i, response);
        }
      } catch (error) {
        if (measuring && !stop) {
          const code = GrpcStatus[(error as ServiceError).code] ?? 'UNKNOWN';
          errors[code] = (errors[code] ?? 0) + 1;
        }
      }
    }
  };
  const running = Array.from({ length: o.concurrency }, worker);
  await new Promise((r) => setTimeout(r, o.warmupMs));
  measuring = true;
  measuredStart = performance.now();
  await new Promise((r) => setTimeout(r, o.durationMs));
  measuredEnd = performance.now();
  stop = true;
  await Promise.all(running);
  const seconds = (measuredEnd - measuredStart) / 1000;
  const done = latency.count;
  return { concurrency: o.concurrency, requests: done, seconds, requestsPerSecond: done / seconds, latency: latency.summary(), errors };
}
