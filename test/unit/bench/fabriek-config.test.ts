import { describe, expect, it } from 'vitest';
import { parseFabriekConfig } from '../../../bench/peers/fabriek-config.js';

describe('the Ray Serve bench reads --fabriek', () => {
  it('takes fixed and SLO batching, with or without a thread count', () => {
    expect(parseFabriekConfig('fixed:2000')).toEqual({ kind: 'fixed', value: 2000, threads: undefined });
    expect(parseFabriekConfig('slo:25')).toEqual({ kind: 'slo', value: 25, threads: undefined });
    expect(parseFabriekConfig('slo:12.5')).toEqual({ kind: 'slo', value: 12.5, threads: undefined });
    expect(parseFabriekConfig('slo:25,threads=1')).toEqual({ kind: 'slo', value: 25, threads: 1 });
    expect(parseFabriekConfig('fixed:0,threads=2')).toEqual({ kind: 'fixed', value: 0, threads: 2 });
  });

  it.each(['', 'fixed', 'fixed:', 'fixed:abc', 'fixed:-1', 'fixed:2.5', 'slo:0', 'slo:-5', 'slo:Infinity', 'batch:5', 'slo:25,threads=0', 'slo:25,threads=x', 'slo:25,threads=1,threads=2', 'slo:25,cores=1'])(
    "refuses '%s' and says what it expects",
    (text) => {
      expect(() => parseFabriekConfig(text)).toThrow(/expected fixed:<max_queue_delay µs> or slo:<batching_slo_ms>/);
    },
  );
});
