import { describe, expect, it } from 'vitest';
import { parseTraceConfig, TraceConfigError } from '../../core/trace-config.js';

describe('parseTraceConfig (tritonserver --trace-config)', () => {
  it('is off without flags, even with an OTLP environment variable', () => {
    expect(parseTraceConfig([], {})).toBeUndefined();
    expect(parseTraceConfig([], { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://col:4318' })).toBeUndefined();
  });

  it('takes the mode, the url and a rate of 1 in N', () => {
    expect(parseTraceConfig(['mode=opentelemetry', 'opentelemetry,url=http://c:4318/v1/traces', 'rate=100'], {})).toEqual({ url: 'http://c:4318/v1/traces', ratio: 0.01 });
    expect(parseTraceConfig(['mode=opentelemetry', 'rate=0'], {})).toEqual({ url: 'http://localhost:4318/v1/traces', ratio: 0 });
    expect(parseTraceConfig(['opentelemetry,url=https://c/v1/traces', 'fraction=0.25'], {})).toEqual({ url: 'https://c/v1/traces', ratio: 0.25 });
  });

  it('honours OTEL_EXPORTER_OTLP_ENDPOINT (base URL) and the traces endpoint, the flag first', () => {
    expect(parseTraceConfig(['mode=opentelemetry'], { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://col:4318/' })).toEqual({ url: 'http://col:4318/v1/traces', ratio: 1 });
    expect(parseTraceConfig(['mode=opentelemetry', 'rate=10'], { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://col:4318/traces' })).toEqual({ url: 'http://col:4318/traces', ratio: 0.1 });
    expect(parseTraceConfig(['opentelemetry,url=http://flag/v1/traces'], { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://env' })?.url).toBe('http://flag/v1/traces');
  });

  it.each([
    ['rate=-1', /rate/],
    ['rate=1.5', /rate/],
    ['rate=', /rate/],
    ['fraction=1.1', /fraction/],
    ['mode=triton', /mode 'triton'/],
    ['opentelemetry,url=ftp://x', /not http/],
    ['jaeger,url=http://x', /only the opentelemetry mode/],
    ['verbose', /key=value/],
    ['level=TIMESTAMPS', /unknown setting 'level'/],
  ])('refuses %s', (flag, message) => {
    expect(() => parseTraceConfig(['mode=opentelemetry', flag], {})).toThrow(TraceConfigError);
    expect(() => parseTraceConfig(['mode=opentelemetry', flag], {})).toThrow(message);
  });

  it('refuses settings that turn nothing on', () => {
    expect(() => parseTraceConfig(['rate=10'], {})).toThrow(/without mode=opentelemetry/);
  });
});
