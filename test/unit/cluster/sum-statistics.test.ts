import { describe, expect, it } from 'vitest';
import { sumStatistics } from '../../../gateway/cluster/sum-statistics.js';
import { type ModelStatistics } from '../../../proto/gen/inference.js';

const d = (count: number, ns: number) => ({ count: BigInt(count), ns: BigInt(ns) });

function stats(name: string, n: number, last: number, batches: Array<[number, number]>): ModelStatistics {
  return {
    name,
    version: '1',
    lastInference: BigInt(last),
    inferenceCount: BigInt(n),
    executionCount: BigInt(batches.reduce((a, [, c]) => a + c, 0)),
    inferenceStats: { success: d(n, n * 10), fail: d(1, 5), queue: d(n, n), computeInput: d(n, 1), computeInfer: d(n, 2), computeOutput: d(n, 3), cacheHit: d(0, 0), cacheMiss: d(0, 0) },
    batchStats: batches.map(([size, count]) => ({ batchSize: BigInt(size), computeInput: d(count, 1), computeInfer: d(count, 2), computeOutput: d(count, 3) })),
    memoryUsage: [],
    responseStats: {},
  };
}

describe('sumStatistics', () => {
  it('adds counts and durations, batch statistics per batch size, and keeps the latest last_inference', () => {
    const own = [stats('a', 3, 100, [[1, 1], [2, 1]])];
    const [sum] = sumStatistics(own, [[stats('a', 5, 300, [[2, 2], [4, 1]]), stats('b', 7, 1, [])], [stats('a', 1, 200, [])]]);
    expect(sum?.inferenceCount).toBe(9n);
    expect(sum?.executionCount).toBe(5n);
    expect(sum?.lastInference).toBe(300n);
    expect(sum?.inferenceStats?.success).toEqual(d(9, 90));
    expect(sum?.inferenceStats?.fail).toEqual(d(3, 15));
    expect(sum?.batchStats.map((b) => [Number(b.batchSize), Number(b.computeInfer?.count)])).toEqual([
      [1, 1],
      [2, 3],
      [4, 1],
    ]);
  });

  it('answers the versions the answering process knows, as one gateway would', () => {
    expect(sumStatistics([], [[stats('a', 1, 1, [])]])).toEqual([]);
    expect(sumStatistics([stats('a', 2, 1, [])], [])[0]?.inferenceCount).toBe(2n);
  });
});
