import { describe, expect, it } from 'vitest';
import { level } from '../../helpers/bench-fixtures.js';
import { toCsv } from '../../../bench/report/csv.js';

describe('CSV with perf_analyzer columns', () => {
  it("has perf_analyzer's header, in its order, then ours", () => {
    const header = toCsv([level()], 'concurrency').split('\n')[0];
    expect(header).toBe(
      'Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,' +
        'p50 latency,p90 latency,p95 latency,p99 latency,Avg latency,Series,Model,Protocol,Batch Size,Stable,Errors,Goodput,Server Avg Batch Size',
    );
    expect(toCsv([level({ mode: 'request-rate', value: 250 })], 'request-rate').startsWith('Request Rate,Inferences/Second,')).toBe(true);
  });

  it('writes µs, with network+server = average latency − the server’s queue and compute', () => {
    const server = {
      success: 3000,
      fail: 0,
      inferenceCount: 3000,
      executionCount: 1500,
      avgBatchSize: 2,
      queueUs: 1000,
      computeInputUs: 100,
      computeInferUs: 500,
      computeOutputUs: 50,
      executionsByBatchSize: {},
      executionComputeUs: 0,
      cacheHits: 0,
      cacheMisses: 0,
    };
    const rows = toCsv([level({ server, goodputPerSecond: 990.5 }), level({ value: 8, series: 'a, "b"' }), level({ mode: 'request-rate' })], 'concurrency').trim().split('\n');
    expect(rows).toHaveLength(3);
    expect(rows[1]).toBe('4,1000.00,0,2350,1000,100,500,50,0,3900,5000,5500,7000,4000,fabriek,m,grpc,1,yes,0,990.50,2.00');
    // No server statistics: server columns 0, all latency is network+server; fields with commas or quotes are quoted.
    expect(rows[2]).toBe('8,1000.00,0,4000,0,0,0,0,0,3900,5000,5500,7000,4000,"a, ""b""",m,grpc,1,yes,0,,');
  });
});
