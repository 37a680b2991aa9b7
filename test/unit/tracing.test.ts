import { trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activeTracer, modelAttributes, remoteParent, startTracing, stopTracing, frameTraceOf } from '../../core/tracing.js';

describe('core/tracing', () => {
  beforeAll(async () => {
    expect(activeTracer()).toBeUndefined();
    // Nothing listens there; these tests export nothing (no span is ended sampled).
    await startTracing({ url: 'http://127.0.0.1:9/v1/traces', ratio: 0 }, 'test', 'gateway');
  });
  afterAll(() => stopTracing());

  it('takes a valid W3C traceparent (and tracestate) as the remote parent', () => {
    const parent = remoteParent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'a=1,b=2');
    const context = parent && trace.getSpanContext(parent);
    expect(context).toMatchObject({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1, isRemote: true });
    expect(context?.traceState?.get('b')).toBe('2');
  });

  it.each([
    ['garbage'],
    ['00-00000000000000000000000000000000-00f067aa0ba902b7-01'],
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'],
    ['ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01'],
  ])('starts a new trace on a malformed traceparent %s', (value) => {
    expect(remoteParent(value, undefined)).toBeUndefined();
  });

  it('writes a span’s traceparent and splits model keys', () => {
    const span = activeTracer()?.startSpan('x', {}, remoteParent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', undefined));
    expect(span && frameTraceOf(span).traceparent).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[\da-f]{16}-00$/);
    expect(modelAttributes('add_sub/1')).toEqual({ 'fabriek.model': 'add_sub', 'fabriek.version': '1' });
  });

  it('carries the caller’s tracestate to the worker frame, and none when it sent none', () => {
    const parent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const span = activeTracer()?.startSpan('x', {}, remoteParent(parent, 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE'));
    expect(span && frameTraceOf(span).tracestate).toBe('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE');
    const bare = activeTracer()?.startSpan('y', {}, remoteParent(parent, undefined));
    expect(bare && frameTraceOf(bare)).not.toHaveProperty('tracestate');
  });
});
