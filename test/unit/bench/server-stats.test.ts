import { describe, expect, it } from 'vitest';
import { busyShare, statsDelta } from '../../../bench/load/server-stats.js';
import { type ModelStatistics } from '../../../proto/gen/inference.js';

const d = (count: number, ns: number) => ({ count: BigInt(count), ns: BigInt(ns) });

/** One version's statistics: `requests` answered, and batches of 1 and 8 rows with their compute. */
function stats(requests: number, executions: readonly [size: number, count: number, inferNs: number][]): ModelStatistics[] {
  const rows = executions.reduce((n, [size, count]) => n + size * count, 0);
  return [
    {
      name: 'm',
      version: '1',
      lastInference: 0n,
      inferenceCount: BigInt(rows),
      executionCount: BigInt(executions.reduce((n, [, count]) => n + count, 0)),
      inferenceStats: { success: d(requests, 0), fail: d(0, 0), queue: d(requests, 0), computeInput: d(requests, 0), computeInfer: d(requests, 0), computeOutput: d(requests, 0), cacheHit: d(0, 0), cacheMiss: d(0, 0) },
      batchStats: executions.map(([size, count, inferNs]) => ({ batchSize: BigInt(size), computeInput: d(count, 1_000 * count), computeInfer: d(count, inferNs), computeOutput: d(count, 2_000 * count) })),
      memoryUsage: [],
      responseStats: {},
    },
  ];
}

describe('statsDelta', () => {
  it('sums the executions\' compute once each (batch_stats), not once per request', () => {
    const before = stats(10, [[1, 2, 4_000_000], [8, 1, 9_000_000]]);
    const after = stats(50, [[1, 6, 12_000_000], [8, 6, 54_000_000]]);
    const delta = statsDelta(before, after);
    // 4 more of 1 row (8 ms of infer) and 5 more of 8 (45 ms), each with 1 µs of input and 2 of output.
    expect(delta?.executionComputeUs).toBe(8_000 + 45_000 + 9 * 3);
    expect(delta?.executionCount).toBe(9);
    expect(delta?.avgBatchSize).toBeCloseTo(44 / 9);
  });

  it('turns the executions\' compute into the share of a window the instances computed', () => {
    expect(busyShare({ executionComputeUs: 750_000 }, 1)).toBe(0.75);
    expect(busyShare({ executionComputeUs: 750_000 }, 1, 2)).toBe(0.375);
    expect(busyShare(undefined, 1)).toBeNaN();
    expect(busyShare({ executionComputeUs: 1 }, 0)).toBeNaN();
  });
});
