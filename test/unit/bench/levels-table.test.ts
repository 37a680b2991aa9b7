import { describe, expect, it } from 'vitest';
import { ECHO_SERIES, levelTable } from '../../../bench/report/levels-table.js';
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

  it('says – where the CPU was not measured', () => {
    const { headers, rows } = levelTable([level({ series: ECHO_SERIES }), level({ serverCpuUsPerRequest: 250 })]);
    expect(rows[1]?.[headers.indexOf('CPU/req × grpc-echo')]).toBe('–');
    expect(rows[0]?.[headers.indexOf('server CPU µs/req')]).toBe('–');
  });
});
