import { describe, expect, it } from 'vitest';
import { compareRuns, comparisonText } from '../../../bench/compare.js';
import { type Metric, type RunRecord } from '../../../bench/history.js';
import { type LevelResult } from '../../../bench/load/level.js';
import { level } from '../../helpers/bench-fixtures.js';

function run(levels: LevelResult[], metrics: Metric[] = []): RunRecord {
  return {
    format: 'fabriek-bench/1',
    kind: 'suite',
    info: { date: '2026-11-28T00:00:00Z', commit: 'abc1234', dirty: false, machine: { os: 'linux', arch: 'x64', cpu: 'Xeon', cores: 2, memoryGiB: 24, node: 'v20' } },
    options: {},
    levels,
    metrics,
  };
}

const p1 = (value: number): Metric => ({ id: 'P1', label: 'identity vs echo', value, unit: '%', better: 'higher' });
const p3 = (value: number): Metric => ({ id: 'P3', label: 'p50 added', value, unit: 'µs', better: 'lower' });
const lat = (p99Us: number): LevelResult['latency'] => ({ count: 1, avgUs: 1, p50Us: 1, p90Us: 1, p95Us: 1, p99Us, maxUs: 1 });

describe('bench compare', () => {
  it('finds nothing between a run and itself', () => {
    const a = run([level(), level({ value: 64 })], [p1(50), p3(300)]);
    const c = compareRuns(a, a, 10);
    expect(c.regressions).toEqual([]);
    expect(c.unmatched).toEqual([]);
    expect(c.changes).toHaveLength(2 * 3 + 2);
  });

  it('compares runs of several rounds round by round', () => {
    const a = run([level({ round: 1, inferPerSecond: 1000 }), level({ round: 2, inferPerSecond: 1000 })]);
    const b = run([level({ round: 1, inferPerSecond: 1000 }), level({ round: 2, inferPerSecond: 500 })]);
    const c = compareRuns(a, b, 10);
    expect(c.unmatched).toEqual([]);
    expect(c.regressions.map((r) => `${r.subject}: ${r.measure}`)).toEqual(['fabriek m grpc c=4 b=1 round 2: infer/s']);
  });

  it('flags lower throughput and higher p99 beyond the threshold, and nothing within it', () => {
    const a = run([level({ inferPerSecond: 1000, latency: lat(10_000) })]);
    expect(compareRuns(a, run([level({ inferPerSecond: 950, latency: lat(10_500) })]), 10).regressions).toEqual([]);
    const worse = compareRuns(a, run([level({ inferPerSecond: 850, latency: lat(12_000) })]), 10);
    expect(worse.regressions.map((r) => r.measure)).toEqual(['infer/s', 'p99 µs']);
    expect(worse.regressions[0]?.changePercent).toBeCloseTo(-15);
    expect(worse.regressions[0]?.subject).toBe('fabriek m grpc c=4 b=1');
    // Better is never a regression, however large.
    expect(compareRuns(a, run([level({ inferPerSecond: 5000, latency: lat(1) })]), 10).regressions).toEqual([]);
  });

  it('flags failures that were not there before', () => {
    const c = compareRuns(run([level()]), run([level({ errors: { UNAVAILABLE: 1 }, errorCount: 1 })]), 10);
    expect(c.regressions.map((r) => r.measure)).toEqual(['errors']);
  });

  it('flags a higher server CPU per request, and compares it only where both runs measured it', () => {
    const a = run([level({ serverCpuUsPerRequest: 200 })]);
    expect(compareRuns(a, run([level({ serverCpuUsPerRequest: 210 })]), 10).regressions).toEqual([]);
    const worse = compareRuns(a, run([level({ serverCpuUsPerRequest: 260 })]), 10);
    expect(worse.regressions.map((r) => [r.measure, r.before, r.after])).toEqual([['server CPU µs/req', 200, 260]]);
    expect(compareRuns(a, run([level({ serverCpuUsPerRequest: 100 })]), 10).regressions).toEqual([]);
    expect(compareRuns(a, run([level()]), 10).changes.map((c) => c.measure)).not.toContain('server CPU µs/req');
  });

  it('compares metrics in the direction that is better for each', () => {
    const c = compareRuns(run([], [p1(50), p3(300)]), run([], [p1(70), p3(400)]), 10);
    expect(c.regressions.map((r) => r.subject)).toEqual(['P3: p50 added']);
    expect(compareRuns(run([], [p1(50)]), run([], [p1(40)]), 10).regressions).toHaveLength(1);
    expect(compareRuns(run([], [p1(50)]), run([], [p1(40)]), 25).regressions).toHaveLength(0);
  });

  it('lists what only one run has, and says so in the text', () => {
    const a = run([level(), level({ value: 8 })], [p1(50)]);
    const b = run([level(), level({ value: 16 })]);
    const c = compareRuns(a, b, 10);
    expect(c.unmatched).toEqual(['fabriek m grpc c=8 b=1 (only in A)', 'fabriek m grpc c=16 b=1 (only in B)', 'P1 (only in A)']);
    const text = comparisonText(a, b, c, 10);
    expect(text).toMatch(/Not compared: fabriek m grpc c=8 b=1 \(only in A\)/);
    expect(text).toMatch(/No regressions beyond 10 %/);
  });
});
