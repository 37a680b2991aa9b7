import { type InferenceClient } from '../../client/inference-client.js';
import { type ModelStatistics, type StatisticDuration } from '../../proto/gen/inference.js';

/** What the server says happened between two ModelStatistics readings. */
export interface ServerStatsDelta {
  /** Requests answered successfully / failed. */
  readonly success: number;
  readonly fail: number;
  /** Rows (batch elements) inferred, and model executions that ran them. */
  readonly inferenceCount: number;
  readonly executionCount: number;
  /** inference_count / execution_count: how many rows an execution carried. */
  readonly avgBatchSize: number;
  /** Average per request, in µs (Triton counts a batch's compute time for every request in it). */
  readonly queueUs: number;
  readonly computeInputUs: number;
  readonly computeInferUs: number;
  readonly computeOutputUs: number;
  /** Executions by batch size. */
  readonly executionsByBatchSize: Readonly<Record<string, number>>;
  /**
   * The executions' compute summed, each counted once (batch_stats: input,
   * infer and output), in µs: how long the instances were busy. Over the
   * window and the instances, the share of the time they computed.
   */
  readonly executionComputeUs: number;
  /** Requests answered from the response cache, and requests that missed it (0 and 0 for an uncached model). */
  readonly cacheHits: number;
  readonly cacheMisses: number;
}

/** The share of `seconds` that `instances` instances computed (executionComputeUs over the window), NaN without statistics. */
export function busyShare(d: Pick<ServerStatsDelta, 'executionComputeUs'> | undefined, seconds: number, instances = 1): number {
  return d === undefined || !(seconds > 0) ? NaN : d.executionComputeUs / (seconds * 1e6 * instances);
}

/** Hits ÷ (hits + misses), NaN when the model did not use the cache. */
export function cacheHitRate(d: Pick<ServerStatsDelta, 'cacheHits' | 'cacheMisses'>): number {
  const n = d.cacheHits + d.cacheMisses;
  return n > 0 ? d.cacheHits / n : NaN;
}

/**
 * The model's statistics (all versions summed), or undefined when the server
 * cannot say: UNIMPLEMENTED, unknown model, or any other error. The bench
 * must run against servers without the statistics extension.
 */
export async function readModelStats(client: InferenceClient, model: string, timeoutMs = 5_000): Promise<ModelStatistics[] | undefined> {
  try {
    const mine = (await client.getInferenceStatistics(model, '', { timeoutMs })).filter((s) => s.name === model);
    return mine.length > 0 ? mine : undefined;
  } catch {
    return undefined;
  }
}

type Field = (s: ModelStatistics) => StatisticDuration | undefined;

const sumCount = (stats: readonly ModelStatistics[], f: Field): number => stats.reduce((n, s) => n + Number(f(s)?.count ?? 0n), 0);
const sumNs = (stats: readonly ModelStatistics[], f: Field): number => stats.reduce((n, s) => n + Number(f(s)?.ns ?? 0n), 0);
const sumBig = (stats: readonly ModelStatistics[], f: (s: ModelStatistics) => bigint): number => stats.reduce((n, s) => n + Number(f(s)), 0);

/** The compute of every execution, summed once per execution (batch_stats), in ns. */
function executionComputeNs(stats: readonly ModelStatistics[]): number {
  let ns = 0;
  for (const s of stats) for (const b of s.batchStats) ns += Number(b.computeInput?.ns ?? 0n) + Number(b.computeInfer?.ns ?? 0n) + Number(b.computeOutput?.ns ?? 0n);
  return ns;
}

function executionsBySize(stats: readonly ModelStatistics[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of stats) {
    for (const b of s.batchStats) {
      const key = b.batchSize.toString();
      out.set(key, (out.get(key) ?? 0) + Number(b.computeInfer?.count ?? 0n));
    }
  }
  return out;
}

/** after − before; undefined when either reading is missing. */
export function statsDelta(before: readonly ModelStatistics[] | undefined, after: readonly ModelStatistics[] | undefined): ServerStatsDelta | undefined {
  if (!before || !after) return undefined;
  const count = (f: Field): number => sumCount(after, f) - sumCount(before, f);
  const perRequestUs = (f: Field): number => {
    const n = count(f);
    return n > 0 ? (sumNs(after, f) - sumNs(before, f)) / n / 1000 : NaN;
  };
  const inferenceCount = sumBig(after, (s) => s.inferenceCount) - sumBig(before, (s) => s.inferenceCount);
  const executionCount = sumBig(after, (s) => s.executionCount) - sumBig(before, (s) => s.executionCount);
  const was = executionsBySize(before);
  const executionsByBatchSize: Record<string, number> = {};
  for (const [size, n] of executionsBySize(after)) {
    const d = n - (was.get(size) ?? 0);
    if (d > 0) executionsByBatchSize[size] = d;
  }
  return {
    success: count((s) => s.inferenceStats?.success),
    fail: count((s) => s.inferenceStats?.fail),
    inferenceCount,
    executionCount,
    avgBatchSize: executionCount > 0 ? inferenceCount / executionCount : NaN,
    queueUs: perRequestUs((s) => s.inferenceStats?.queue),
    computeInputUs: perRequestUs((s) => s.inferenceStats?.computeInput),
    computeInferUs: perRequestUs((s) => s.inferenceStats?.computeInfer),
    computeOutputUs: perRequestUs((s) => s.inferenceStats?.computeOutput),
    executionsByBatchSize,
    executionComputeUs: (executionComputeNs(after) - executionComputeNs(before)) / 1000,
    cacheHits: count((s) => s.inferenceStats?.cacheHit),
    cacheMisses: count((s) => s.inferenceStats?.cacheMiss),
  };
}
