// `fabriek bench scaling`'s flags and its table, without a server.
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../bench/bench-errors.js';
import { parseScalingArgs, type ScalingLevel, scalingMarkdown } from '../../../bench/scenarios/scaling.js';

describe('fabriek bench scaling: flags', () => {
  it('defaults to the process counts the cores hold, 1 and 2 at least, and clients for a quarter of the cores', () => {
    expect(parseScalingArgs([], 2)).toMatchObject({ processes: [1, 2], clientProcesses: 2, connections: 4, concurrency: 8, workers: 1, durationMs: 8000, warmupMs: 2000, serveArgs: [], save: true });
    expect(parseScalingArgs([], 16)).toMatchObject({ processes: [1, 2, 4, 8], clientProcesses: 4 });
    expect(parseScalingArgs([], 6)?.processes).toEqual([1, 2, 4]);
  });

  it('takes its own flags before -- and passes the rest to fabriek serve', () => {
    const o = parseScalingArgs(['--processes', '2,8', '--client-processes', '6', '--workers', '4', '--duration', '1.5', '--no-save', '--', '--max-batch-size', '4'], 16);
    expect(o).toMatchObject({ processes: [2, 8], clientProcesses: 6, workers: 4, durationMs: 1500, save: false, serveArgs: ['--max-batch-size', '4'] });
    expect(parseScalingArgs(['--help'], 2)).toBeUndefined();
  });

  it('refuses what makes no sense, saying why', () => {
    expect(() => parseScalingArgs(['--processes', '0,2'], 2)).toThrow(/--processes: expected integers from 1 to 64, got '0,2'/);
    expect(() => parseScalingArgs(['--processes', '1,,2'], 2)).toThrow(UsageError);
    expect(() => parseScalingArgs(['--workers', '1.5'], 2)).toThrow(/--workers: expected an integer ≥ 1 ≤ 64, got '1.5'/);
    expect(() => parseScalingArgs(['--duration', '0'], 2)).toThrow(/--duration: expected a number ≥ 0.001 ≤ 600, got '0'/);
    expect(() => parseScalingArgs(['--bogus'], 2)).toThrow(UsageError);
  });
});

describe('fabriek bench scaling: the table', () => {
  const level = (n: number, perSecond: number, extra: Partial<ScalingLevel> = {}): ScalingLevel => ({
    gatewayProcesses: n,
    answered: perSecond * 5,
    failed: 0,
    wrong: 0,
    firstError: '',
    perSecond,
    latency: { count: perSecond * 5, avgUs: 1000, p50Us: 900, p90Us: 1500, p95Us: 1800, p99Us: 2500, maxUs: 4000 },
    serverCpuUsPerRequest: 310,
    serverCores: 2,
    clientCores: 1,
    otherCores: 0,
    rowsPerExecution: 1,
    rowsPerRun: n === 1 ? NaN : 1.5,
    ...extra,
  });
  const o = { processes: [1, 2], clientProcesses: 2, connections: 4, concurrency: 8, workers: 1, durationMs: 5000, warmupMs: 2000, serveArgs: [] };

  it('gives each N its ratio to N = 1 and per process, and n/a where the worker reports no runs', () => {
    const md = scalingMarkdown([level(1, 1000), level(2, 1700)], o, 16);
    expect(md).toContain('| 1 | 1000 | 1.00× | 1.00 | 310 | 0.90 / 2.50 |');
    expect(md).toContain('| 2 | 1700 | 1.70× | 0.85 | 310 |');
    expect(md).toMatch(/\| 1\.0 \/ n\/a \| 0 \|/);
    expect(md).toContain('2 load processes × 4 connections × 8 calls in flight (64 in all)');
  });

  it('shows no ratios when N = 1 was not measured', () => {
    expect(scalingMarkdown([level(4, 3000)], { ...o, processes: [4] }, 16)).toContain('| 4 | 3000 | – | – | 310 |');
  });

  it('lists the levels with failures or wrong answers under the table', () => {
    const md = scalingMarkdown([level(1, 1000), level(2, 900, { failed: 3, wrong: 1, firstError: 'UNAVAILABLE' })], o, 16);
    expect(md).toContain('- N = 2: 3 failed, 1 wrong; first error: UNAVAILABLE');
  });
});
