// An OTLP/HTTP protobuf trace receiver: a real node:http server that decodes
// each ExportTraceServiceRequest (opentelemetry/proto/collector/trace/v1)
// with @bufbuild/protobuf's wire reader, keeping only the fields the tests check.
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { createServer, type Server } from 'node:http';
import { type AddressInfo } from 'node:net';

export type AttributeValue = string | number | boolean;

export interface ReceivedSpan {
  readonly service: string;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  /** W3C tracestate ('' when none). */
  readonly traceState: string;
  readonly name: string;
  readonly kind: number;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
  readonly links: readonly { traceId: string; spanId: string }[];
  readonly statusCode: number;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Calls `field` for each field of the message in `bytes`; skips what it does not read. */
function fields(bytes: Uint8Array, field: (no: number, r: BinaryReader, wire: WireType) => boolean): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wire] = r.tag();
    if (!field(no, r, wire)) r.skip(wire, no);
  }
}

function anyValue(bytes: Uint8Array): AttributeValue {
  let value: AttributeValue = '';
  fields(bytes, (no, r) => {
    if (no === 1) value = r.string();
    else if (no === 2) value = r.bool();
    else if (no === 3) value = Number(r.int64());
    else if (no === 4) value = r.double();
    else return false;
    return true;
  });
  return value;
}

function keyValue(bytes: Uint8Array, into: Record<string, AttributeValue>): void {
  let key = '';
  let value: AttributeValue = '';
  fields(bytes, (no, r) => {
    if (no === 1) key = r.string();
    else if (no === 2) value = anyValue(r.bytes());
    else return false;
    return true;
  });
  into[key] = value;
}

function span(bytes: Uint8Array, service: string): ReceivedSpan {
  let traceId = '';
  let spanId = '';
  let parentSpanId = '';
  let traceState = '';
  let name = '';
  let kind = 0;
  let statusCode = 0;
  const attributes: Record<string, AttributeValue> = {};
  const links: { traceId: string; spanId: string }[] = [];
  fields(bytes, (no, r) => {
    if (no === 1) traceId = hex(r.bytes());
    else if (no === 2) spanId = hex(r.bytes());
    else if (no === 3) traceState = r.string();
    else if (no === 4) parentSpanId = hex(r.bytes());
    else if (no === 5) name = r.string();
    else if (no === 6) kind = r.int32();
    else if (no === 9) keyValue(r.bytes(), attributes);
    else if (no === 13) {
      const link = { traceId: '', spanId: '' };
      fields(r.bytes(), (n, lr) => {
        if (n === 1) link.traceId = hex(lr.bytes());
        else if (n === 2) link.spanId = hex(lr.bytes());
        else return false;
        return true;
      });
      links.push(link);
    } else if (no === 15) {
      fields(r.bytes(), (n, sr) => {
        if (n !== 3) return false;
        statusCode = sr.int32();
        return true;
      });
    } else return false;
    return true;
  });
  return { service, traceId, spanId, parentSpanId, traceState, name, kind, attributes, links, statusCode };
}

/** The spans of one ExportTraceServiceRequest body. */
export function decodeExportTraceRequest(body: Uint8Array): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  fields(body, (no, r) => {
    if (no !== 1) return false;
    // ResourceSpans: resource = 1 (attributes = 1), scope_spans = 2 (spans = 2).
    const resourceAttributes: Record<string, AttributeValue> = {};
    const scoped: Uint8Array[] = [];
    fields(r.bytes(), (n, rr) => {
      if (n === 1) fields(rr.bytes(), (a, ar) => (a === 1 ? (keyValue(ar.bytes(), resourceAttributes), true) : false));
      else if (n === 2) scoped.push(rr.bytes());
      else return false;
      return true;
    });
    const service = String(resourceAttributes['service.name'] ?? '');
    for (const s of scoped) fields(s, (n, sr) => (n === 2 ? (spans.push(span(sr.bytes(), service)), true) : false));
    return true;
  });
  return spans;
}

export interface OtlpReceiver {
  readonly url: string;
  readonly spans: ReceivedSpan[];
  /** Request bodies that were not application/x-protobuf POSTs to /v1/traces. */
  readonly rejected: number;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  let rejected = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces' || req.headers['content-type'] !== 'application/x-protobuf') {
        rejected++;
        res.writeHead(400).end();
        return;
      }
      spans.push(...decodeExportTraceRequest(Buffer.concat(chunks)));
      // An empty ExportTraceServiceResponse.
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    spans,
    get rejected() {
      return rejected;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
