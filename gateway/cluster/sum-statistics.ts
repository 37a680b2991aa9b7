import {
  type InferBatchStatistics,
  type InferResponseStatistics,
  type InferStatistics,
  type ModelStatistics,
  type StatisticDuration,
} from '../../proto/gen/inference.js';

// ModelStatistics of one model version from several gateway processes
// (fabriek serve --gateway-processes N), summed into what one gateway would
// report: counts and durations added, batch statistics added per batch
// size, the latest last_inference. Pure.

function addDuration(a: StatisticDuration | undefined, b: StatisticDuration | undefined): StatisticDuration | undefined {
  if (a === undefined) return b === undefined ? undefined : { ...b };
  if (b === undefined) return { ...a };
  return { count: a.count + b.count, ns: a.ns + b.ns };
}

const INFER_FIELDS = ['success', 'fail', 'queue', 'computeInput', 'computeInfer', 'computeOutput', 'cacheHit', 'cacheMiss'] as const;
const RESPONSE_FIELDS = ['computeInfer', 'computeOutput', 'success', 'fail', 'emptyResponse', 'cancel'] as const;

function addInfer(a: InferStatistics | undefined, b: InferStatistics | undefined): InferStatistics | undefined {
  if (a === undefined && b === undefined) return undefined;
  const out: InferStatistics = {};
  for (const f of INFER_FIELDS) out[f] = addDuration(a?.[f], b?.[f]);
  return out;
}

function addResponse(a: InferResponseStatistics | undefined, b: InferResponseStatistics | undefined): InferResponseStatistics {
  const out: InferResponseStatistics = {};
  for (const f of RESPONSE_FIELDS) out[f] = addDuration(a?.[f], b?.[f]);
  return out;
}

function addBatches(a: readonly InferBatchStatistics[], b: readonly InferBatchStatistics[]): InferBatchStatistics[] {
  const bySize = new Map<bigint, InferBatchStatistics>();
  for (const s of [...a, ...b]) {
    const seen = bySize.get(s.batchSize);
    bySize.set(
      s.batchSize,
      seen === undefined
        ? { ...s }
        : {
            batchSize: s.batchSize,
            computeInput: addDuration(seen.computeInput, s.computeInput),
            computeInfer: addDuration(seen.computeInfer, s.computeInfer),
            computeOutput: addDuration(seen.computeOutput, s.computeOutput),
          },
    );
  }
  return [...bySize.values()].sort((x, y) => (x.batchSize < y.batchSize ? -1 : x.batchSize > y.batchSize ? 1 : 0));
}

function addOne(a: ModelStatistics, b: ModelStatistics): ModelStatistics {
  const responseStats: Record<string, InferResponseStatistics> = { ...a.responseStats };
  for (const [k, v] of Object.entries(b.responseStats)) responseStats[k] = addResponse(responseStats[k], v);
  return {
    name: a.name,
    version: a.version,
    lastInference: a.lastInference > b.lastInference ? a.lastInference : b.lastInference,
    inferenceCount: a.inferenceCount + b.inferenceCount,
    executionCount: a.executionCount + b.executionCount,
    inferenceStats: addInfer(a.inferenceStats, b.inferenceStats),
    batchStats: addBatches(a.batchStats, b.batchStats),
    memoryUsage: a.memoryUsage,
    responseStats,
  };
}

/**
 * The first list's entries (the answering process decides which versions
 * there are, as one gateway would), each summed with the same (name, version)
 * from the other lists.
 */
export function sumStatistics(own: readonly ModelStatistics[], others: ReadonlyArray<readonly ModelStatistics[]>): ModelStatistics[] {
  return own.map((s) => {
    let sum = s;
    for (const list of others) {
      const same = list.find((o) => o.name === s.name && o.version === s.version);
      if (same !== undefined) sum = addOne(sum, same);
    }
    return sum;
  });
}
