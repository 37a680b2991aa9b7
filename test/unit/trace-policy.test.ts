import { describe, expect, it } from 'vitest';
import { ServingError } from '../../core/errors.js';
import { policyAfter, type TracePolicy, traceSettingsOf } from '../../core/trace-policy.js';

const ON: TracePolicy = { on: true, ratio: 1, remaining: -1 };
const changes = (o: Record<string, unknown>): Map<string, unknown> => new Map(Object.entries(o));

/** The error policyAfter throws: its gRPC code and message. */
function refusal(o: Record<string, unknown>, configured = true, from: TracePolicy = ON): [number, string] {
  try {
    policyAfter(from, changes(o), configured);
  } catch (error) {
    expect(error).toBeInstanceOf(ServingError);
    return [(error as ServingError).code, (error as ServingError).message];
  }
  throw new Error('not refused');
}

describe('traceSettingsOf', () => {
  it('says a policy in Triton\'s names and string values', () => {
    expect(traceSettingsOf(ON)).toEqual({ trace_level: ['TIMESTAMPS'], trace_rate: '1', trace_count: '-1', log_frequency: '0', trace_file: '', trace_mode: 'opentelemetry' });
    expect(traceSettingsOf({ on: false, ratio: 0.01, remaining: 5 })).toMatchObject({ trace_level: ['OFF'], trace_rate: '100', trace_count: '5' });
    // --trace-config fraction=0.3 shows as its nearest rate; rate=0 as 0.
    expect(traceSettingsOf({ on: true, ratio: 0.3, remaining: -1 }).trace_rate).toBe('3');
    expect(traceSettingsOf({ on: true, ratio: 0, remaining: -1 }).trace_rate).toBe('0');
  });
});

describe('policyAfter', () => {
  it('applies the settings given, as strings, lists or numbers, and keeps the others', () => {
    expect(policyAfter(ON, changes({ trace_rate: '100' }), true)).toEqual({ on: true, ratio: 0.01, remaining: -1 });
    expect(policyAfter(ON, changes({ trace_rate: 0 }), true)).toEqual({ on: true, ratio: 0, remaining: -1 });
    expect(policyAfter(ON, changes({ trace_count: ['10'] }), true)).toEqual({ on: true, ratio: 1, remaining: 10 });
    expect(policyAfter(ON, changes({ trace_level: ['OFF'] }), true)).toEqual({ on: false, ratio: 1, remaining: -1 });
    expect(policyAfter({ ...ON, on: false }, changes({ trace_level: 'timestamps' }), true)).toEqual(ON);
    // Fabriek's own values of Triton's file settings are accepted and change nothing.
    expect(policyAfter(ON, changes({ trace_file: '', log_frequency: '0', trace_mode: 'opentelemetry' }), true)).toEqual(ON);
  });

  it('refuses what Fabriek does not trace by, naming the setting', () => {
    expect(refusal({ trace_level: ['TENSORS'] })).toEqual([3, "trace setting 'trace_level': Fabriek traces spans with their times (TIMESTAMPS), never tensor contents (TENSORS)"]);
    expect(refusal({ trace_level: ['OFF', 'TIMESTAMPS'] })[1]).toBe("trace setting 'trace_level': OFF and TIMESTAMPS at once");
    expect(refusal({ trace_level: [] })[1]).toBe("trace setting 'trace_level': expected OFF or TIMESTAMPS, got []");
    expect(refusal({ trace_rate: 'often' })[1]).toBe('trace setting \'trace_rate\': expected an integer ≥ 0, got "often"');
    expect(refusal({ trace_rate: '-3' })[1]).toBe('trace setting \'trace_rate\': expected an integer ≥ 0, got "-3"');
    expect(refusal({ trace_count: '-2' })[1]).toBe('trace setting \'trace_count\': expected an integer ≥ -1, got "-2"');
    expect(refusal({ trace_rate: ['1', '2'] })[1]).toBe("trace setting 'trace_rate': expected one value, got 2");
    expect(refusal({ trace_rate: { n: 1 } })[1]).toBe('trace setting \'trace_rate\': expected a string or a list of strings, got {"n":1}');
    expect(refusal({ trace_rate: null })[1]).toMatch(/^trace setting 'trace_rate': null clears a model's own setting/);
    expect(refusal({ trace_file: '/tmp/t.json' })[1]).toMatch(/^trace setting 'trace_file': Fabriek sends spans to the OTLP endpoint/);
    expect(refusal({ log_frequency: '100' })[1]).toMatch(/^trace setting 'log_frequency': /);
    expect(refusal({ trace_mode: 'triton' })[1]).toBe('trace setting \'trace_mode\': Fabriek traces in opentelemetry mode only, got "triton"');
    expect(refusal({ trace_sampling: '1' })[1]).toBe(
      "unknown trace setting 'trace_sampling': expected one of trace_level, trace_rate, trace_count, log_frequency, trace_file, trace_mode",
    );
  });

  it('cannot turn tracing on where it was not configured (FAILED_PRECONDITION), but may leave it off or change the rest', () => {
    const off: TracePolicy = { on: false, ratio: 0, remaining: -1 };
    expect(refusal({ trace_level: ['TIMESTAMPS'] }, false, off)).toEqual([
      9,
      'tracing is not configured: start the gateway with --trace-config mode=opentelemetry (and opentelemetry,url=URL for the OTLP endpoint) to trace',
    ]);
    expect(policyAfter(off, changes({ trace_level: ['OFF'], trace_rate: '10' }), false)).toEqual({ on: false, ratio: 0.1, remaining: -1 });
  });
});
