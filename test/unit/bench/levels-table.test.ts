import { describe, expect, it } from 'vitest';
import { ECHO_SERIES, levelTable, roundMedians } from '../../../bench/report/levels-table.js';
import { type RawOrtLevel } from '../../../bench/baselines/raw-ort.js';
import { level } from '../../helpers/bench-fixtures.js';

describe('levels table', () => {
  it('shows server CPU per request and its multiple of grpc-echo at the same load', () => {
    const echo = level({ series: ECHO_SERIES, serverCpuUsPerRequest: 100 });
    const served = level({ serverCpuUsPerRequest: 250 });
    const { headers, rows } = levelTable([echo, served]);
    const col = (name: string): number => headers.indexOf(name);
    expect(rows[1]?.[col('server CPU µs/req')]).toBe('250');
    expect(rows[1]?.[col('CPU/req × grpc-echo')]).toBe('2.50×');
    // The baseline's own row has no ratio to itself.
    expect(rows[0]?.[col('server CPU µs/req')]).toBe('100');
    expect(rows[0]?.[col('CPU/req × grpc-echo')]).toBe('');
  });

  it('compares each round with the baseline of its own round, and gives the medians over rounds', () => {
    const latency = (p50Us: number): ReturnType<typeof level>['latency'] => ({ ...level().latency, p50Us });
    const levels = [
      level({ series: ECHO_SERIES, round: 1, serverCpuUsPerRequest: 100, inferPerSecond: 2000, latency: latency(300) }),
      level({ round: 1, serverCpuUsPerRequest: 150, inferPerSecond: 1800, latency: latency(500) }),
      level({ series: ECHO_SERIES, round: 2, serverCpuUsPerRequest: 60, inferPerSecond: 3000, latency: latency(200) }),
      level({ round: 2, serverCpuUsPerRequest: 180, inferPerSecond: 1500, latency: latency(600) }),
      level({ series: ECHO_SERIES, round: 3, serverCpuUsPerRequest: 80, inferPerSecond: 2500, latency: latency(250) }),
      level({ round: 3, serverCpuUsPerRequest: 160, inferPerSecond: 2000, latency: latency(400) }),
    ];
    const { headers, rows } = levelTable(levels);
    const col = (name: string): number => headers.indexOf(name);
    expect(rows.map((r) => r[col('series')])).toEqual(['grpc-echo (1)', 'fabriek (1)', 'grpc-echo (2)', 'fabriek (2)', 'grpc-echo (3)', 'fabriek (3)']);
    expect([rows[1], rows[3], rows[5]].map((r) => r?.[col('CPU/req × grpc-echo')])).toEqual(['1.50×', '3.00×', '2.00×']);
    expect(rows[3]?.[col('p50 added µs')]).toBe('400');
    expect(roundMedians(levels)).toEqual([
      'm c=4, 3 rounds against grpc-echo: CPU/req × 1.50×, 3.00×, 2.00× (median 2.00×); p50 added µs 200, 400, 150 (median 200); infer/s 90 %, 50 %, 80 % (median 80 %)',
    ]);
    // One round (no --rounds): no such lines, and the rows keep their plain series.
    expect(roundMedians([level({ series: ECHO_SERIES }), level()])).toEqual([]);
  });

  it('says – where the CPU was not measured', () => {
    const { headers, rows } = levelTable([level({ series: ECHO_SERIES }), level({ serverCpuUsPerRequest: 250 })]);
    expect(rows[1]?.[headers.indexOf('CPU/req × grpc-echo')]).toBe('–');
    expect(rows[0]?.[headers.indexOf('server CPU µs/req')]).toBe('–');
  });

  it("compares only the raw ONNX Runtime model's rows with raw ONNX Runtime when it is named", () => {
    const raw: RawOrtLevel = { batchSize: 4, runs: 100, seconds: 1, runsPerSecond: 250, rowsPerSecond: 1000, latency: level().latency, cpu: { client: 1, server: 0, other: 0 }, windows: 1, stable: true };
    const levels = [level({ model: 'mlp', inferPerSecond: 500 }), level({ model: 'identity', inferPerSecond: 800 })];
    const col = (headers: string[], name: string): number => headers.indexOf(name);
    const named = levelTable(levels, { rawOrt: [raw], maxBatchSize: 4, rawOrtModel: 'mlp' });
    expect(named.rows.map((r) => r[col(named.headers, 'vs raw ORT best')])).toEqual(['50 %', '']);
    // Unnamed (fabriek bench -m: one model), every server row is compared.
    const all = levelTable(levels, { rawOrt: [raw], maxBatchSize: 4 });
    expect(all.rows.map((r) => r[col(all.headers, 'vs raw ORT best')])).toEqual(['50 %', '80 %']);
  });
});
