import { describe, expect, it } from 'vitest';
import { BATCHING_SLO_MS, batchingSloMs, withBatchingSlo } from '../../gateway/batching/slo-config.js';
import { parseServeOptions } from '../../gateway/options.js';

const withParam = (value: string) => ({ parameters: { [BATCHING_SLO_MS]: { stringValue: value } } });

describe('batching_slo_ms', () => {
  it('takes the model’s parameter over the server default; 0 turns the mode off', () => {
    expect(batchingSloMs(withParam('25'), 0)).toBe(25);
    expect(batchingSloMs(withParam(' 2.5 '), 40)).toBe(2.5);
    expect(batchingSloMs(withParam('0'), 40)).toBe(0);
    expect(batchingSloMs({ parameters: {} }, 40)).toBe(40);
    expect(batchingSloMs({ parameters: {} }, 0)).toBe(0);
  });

  it('refuses a malformed value, naming the parameter', () => {
    for (const bad of ['', 'fast', '-1', 'NaN', '1e12']) {
      expect(() => batchingSloMs(withParam(bad), 0)).toThrow(/^parameter 'batching_slo_ms': expected milliseconds between 0 and \d+ \(0 = off\), got/);
    }
  });

  it('writes the SLO in force into the served config, so ModelConfig shows the mode', () => {
    expect(withBatchingSlo({ parameters: {} }, 30).parameters).toEqual({ [BATCHING_SLO_MS]: { stringValue: '30' } });
    const own = withParam('25');
    expect(withBatchingSlo(own, 25)).toBe(own);
    const off = { parameters: {} };
    expect(withBatchingSlo(off, 0)).toBe(off);
  });

  it('--batching-slo-ms: default 0, an integer of ms', () => {
    expect(parseServeOptions(['--model-repository', '/m']).batchingSloMs).toBe(0);
    expect(parseServeOptions(['--model-repository', '/m', '--batching-slo-ms', '25']).batchingSloMs).toBe(25);
    expect(() => parseServeOptions(['--model-repository', '/m', '--batching-slo-ms', '2.5'])).toThrow(/--batching-slo-ms: expected an integer/);
  });
});
