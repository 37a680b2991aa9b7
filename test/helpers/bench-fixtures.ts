import { type LevelResult } from '../../bench/load/level.js';

/** A load level's result with plausible figures; override what a test is about. */
export function level(p: Partial<LevelResult> = {}): LevelResult {
  return {
    series: 'fabriek',
    model: 'm',
    protocol: 'grpc',
    mode: 'concurrency',
    value: 4,
    batchSize: 1,
    stable: true,
    trials: 3,
    seconds: 3,
    requests: 3000,
    requestsPerSecond: 1000,
    inferPerSecond: 1000,
    goodputPerSecond: NaN,
    latency: { count: 3000, avgUs: 4000.4, p50Us: 3900, p90Us: 5000, p95Us: 5500, p99Us: 7000, maxUs: 9000 },
    errors: {},
    errorCount: 0,
    windows: [],
    ...p,
  };
}
