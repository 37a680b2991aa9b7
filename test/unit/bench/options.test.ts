import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../bench/bench-errors.js';
import { parsePerfArgs, parseRange } from '../../../bench/options.js';
import { type PerfOptions } from '../../../bench/perf.js';

function parse(...argv: string[]): PerfOptions {
  const o = parsePerfArgs(argv);
  if ('help' in o) throw new Error('unexpected help');
  return o;
}

describe('perf_analyzer-style flags', () => {
  it('expands start:end:step ranges', () => {
    expect(parseRange('concurrency-range', '1:8:2', true)).toEqual([1, 3, 5, 7]);
    expect(parseRange('concurrency-range', '4', true)).toEqual([4]);
    expect(parseRange('concurrency-range', '2:4', true)).toEqual([2, 3, 4]);
    expect(parseRange('request-rate-range', '0.5:1.5:0.5', false)).toEqual([0.5, 1, 1.5]);
    expect(() => parseRange('concurrency-range', '0', true)).toThrow(UsageError);
    expect(() => parseRange('concurrency-range', '8:4', true)).toThrow(/≥ 8/);
    expect(() => parseRange('concurrency-range', '1:1000', true)).toThrow(/more than 100 levels/);
    expect(() => parseRange('concurrency-range', '1:2:3:4', true)).toThrow(/start\[:end\[:step\]\]/);
    expect(() => parseRange('concurrency-range', '1.5', true)).toThrow(/integer/);
  });

  it("uses perf_analyzer's defaults", () => {
    const o = parse('-m', 'add_sub');
    expect(o.levels).toEqual([{ mode: 'concurrency', value: 1 }]);
    expect(o.protocol).toBe('grpc');
    expect(o.intervalMs).toBe(5000);
    expect(o.maxTrials).toBe(10);
    expect(o.rounds).toBe(1);
    expect(o.stability).toEqual({ stabilityPercent: 10, windows: 3 });
    expect(o.batchSize).toBe(1);
    expect(o.inputData).toEqual({ kind: 'random', seed: 1 });
    expect(o.baselines.size).toBe(0);
    expect(o.save).toBe(true);
    expect(o.headers).toEqual({});
    expect(o.loadClient).toBe('h2');
  });

  it('reads every flag', () => {
    const o = parse(
      ...['-m', 'mlp', '-x', '2', '-u', '127.0.0.1:9000', '-i', 'http', '--request-rate-range', '100:300:100', '--request-distribution', 'poisson'],
      ...['-b', '4', '--shape', 'IN:3,5', '--shape', 'OTHER:7', '--input-data', 'zero', '-p', '250', '--measurement-mode', 'count_windows', '--measurement-request-count', '20'],
      ...['-s', '5', '-r', '4', '--percentile', '95', '--slo-ms', '20', '--baseline', 'raw-ort,grpc-echo', '--baseline', 'batching-off', '-f', 'out.csv', '--json', 'o.json', '--no-save'],
    );
    expect(o.model).toBe('mlp');
    expect(o.version).toBe('2');
    expect(o.url).toBe('http://127.0.0.1:9000');
    expect(o.levels).toEqual([100, 200, 300].map((value) => ({ mode: 'request-rate', value, distribution: 'poisson' })));
    expect(o.batchSize).toBe(4);
    expect([...o.shapes]).toEqual([
      ['IN', [3, 5]],
      ['OTHER', [7]],
    ]);
    expect(o.inputData).toEqual({ kind: 'zero' });
    expect(o.intervalMs).toBe(250);
    expect(o.requestCount).toBe(20);
    expect(o.stability.stabilityPercent).toBe(5);
    expect(o.maxTrials).toBe(4);
    expect(o.percentile).toBe(95);
    expect(o.sloMs).toBe(20);
    expect([...o.baselines].sort()).toEqual(['batching-off', 'grpc-echo', 'raw-ort']);
    expect(o.rawOrtProvider).toBe('cpu');
    expect(o.csvFile).toBe('out.csv');
    expect(o.jsonFile).toBe('o.json');
    expect(o.save).toBe(false);
    expect(parse('-m', 'x', '--load-client', 'grpc-js').loadClient).toBe('grpc-js');
    expect(parse('-m', 'x', '--input-data', 'data.json').inputData).toEqual({ kind: 'file', path: 'data.json' });
    expect(parse('-m', 'x', '-H', 'Authorization: Bearer k:1', '--header', 'x-trace:7', '-H', 'x-empty:').headers).toEqual({
      authorization: 'Bearer k:1',
      'x-trace': '7',
      'x-empty': '',
    });
  });

  it('reads --cache-hit-ratio and the cache-off baseline', () => {
    const o = parsePerfArgs(['-m', 'x', '--cache-hit-ratio', '0.5', '--baseline', 'cache-off']);
    expect(o).toMatchObject({ cacheHitRatio: 0.5 });
    expect('baselines' in o && [...o.baselines]).toEqual(['cache-off']);
    expect(() => parsePerfArgs(['-m', 'x', '--cache-hit-ratio', '2'])).toThrow(/--cache-hit-ratio: expected a number ≥ 0 ≤ 1, got '2'/);
  });

  it('reads --sequence-length for a stateful model (none by default)', () => {
    expect(parse('-m', 'x').sequenceLength).toBeUndefined();
    expect(parse('-m', 'x', '--sequence-length', '0').sequenceLength).toBeUndefined();
    expect(parse('-m', 'x', '--sequence-length', '20', '--concurrency-range', '4').sequenceLength).toBe(20);
  });

  it('refuses what makes no sense, saying why', () => {
    expect(() => parsePerfArgs([])).toThrow(/-m MODEL is required/);
    expect(() => parsePerfArgs(['-m', 'x', '--concurrency-range', '1', '--request-rate-range', '5'])).toThrow(/not both/);
    expect(() => parsePerfArgs(['-m', 'x', '-i', 'udp'])).toThrow(/grpc or http/);
    expect(() => parsePerfArgs(['-m', 'x', '--baseline', 'triton'])).toThrow(/raw-ort, grpc-echo, batching-off/);
    expect(() => parsePerfArgs(['-m', 'x', '--shape', 'IN'])).toThrow(/NAME:d1,d2/);
    expect(() => parsePerfArgs(['-m', 'x', '-b', '0'])).toThrow(/--batch-size: expected an integer ≥ 1, got '0'/);
    expect(() => parsePerfArgs(['-m', 'x', '--rounds', '0'])).toThrow(/--rounds: expected an integer ≥ 1 ≤ 100, got '0'/);
    expect(() => parsePerfArgs(['-m', 'x', '--rounds', '2.5'])).toThrow(/--rounds: expected an integer/);
    expect(() => parsePerfArgs(['-m', 'x', '--load-client', 'curl'])).toThrow(/--load-client: expected h2 or grpc-js, got 'curl'/);
    expect(() => parsePerfArgs(['-m', 'x', '--raw-ort-provider', 'cuda'])).toThrow(/--raw-ort-provider: expected cpu or webgpu, got 'cuda'/);
    expect(() => parsePerfArgs(['-m', 'x', '-u', 'http://h:1'])).toThrow(/add -i http/);
    expect(() => parsePerfArgs(['-m', 'x', '--bogus'])).toThrow(UsageError);
    expect(() => parsePerfArgs(['-m', 'x', '--sequence-length', '4', '--request-rate-range', '10'])).toThrow(/--sequence-length needs --concurrency-range/);
    expect(() => parsePerfArgs(['-m', 'x', '--sequence-length', '2.5'])).toThrow(/--sequence-length: expected an integer/);
    // A header without a colon is refused without echoing it (it is often a key).
    expect(() => parsePerfArgs(['-m', 'x', '-H', 'authorization Bearer secret-key'])).toThrow(/^-H\/--header: expected 'NAME: VALUE' \(a header name, a colon, the value\)$/);
    expect(parsePerfArgs(['-h'])).toEqual({ help: true });
  });

  it('passes --trace-config to the server it starts, and only to one it starts', () => {
    const o = parse('-m', 'add_sub', '--model-repository', 'models/examples', '--trace-config', 'mode=opentelemetry', '--trace-config', 'rate=100');
    expect(o.serveArgs).toEqual(['--trace-config', 'mode=opentelemetry', '--trace-config', 'rate=100']);
    expect(() => parse('-m', 'add_sub', '-u', '127.0.0.1:8001', '--trace-config', 'rate=100')).toThrow(/configures the server the bench starts/);
  });
});
