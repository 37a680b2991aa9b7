// W3C trace context from a request's gRPC metadata or HTTP headers; called
// only when tracing is on (the caller checks activeTracer() first).
import { type Metadata } from '@grpc/grpc-js';
import { type IncomingHttpHeaders } from 'node:http';

export interface TraceHeaders {
  readonly traceparent?: string;
  readonly tracestate?: string;
}

function first(value: unknown): string | undefined {
  const v = Array.isArray(value) ? (value as unknown[])[0] : value;
  return typeof v === 'string' ? v : undefined;
}

function headers(traceparent: string | undefined, tracestate: string | undefined): TraceHeaders {
  return { ...(traceparent !== undefined ? { traceparent } : {}), ...(tracestate !== undefined ? { tracestate } : {}) };
}

export function grpcTraceHeaders(metadata: Metadata): TraceHeaders {
  return headers(first(metadata.get('traceparent')), first(metadata.get('tracestate')));
}

export function httpTraceHeaders(h: IncomingHttpHeaders): TraceHeaders {
  return headers(first(h.traceparent), first(h.tracestate));
}
