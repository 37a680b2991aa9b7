// Hostile HTTP/REST requests, written byte for byte on a raw socket so that
// headers no client library would send (negative lengths, both framing
// headers, broken request lines) reach the server as they are.
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { type Random } from './fuzz-random.js';

export interface HttpAnswer {
  /** 0 when the server closed the connection without an answer. */
  readonly status: number;
  readonly headers: string;
  readonly body: Buffer;
}

export interface HttpCase {
  readonly kind: string;
  /** The request as written; chunks are written one after another. */
  readonly chunks: readonly Buffer[];
  /** Statuses allowed; 0 = the server closed without an answer. */
  readonly statuses: readonly number[];
  /** What an error's `error` must match. */
  readonly message?: RegExp;
  /** Half-close the socket after writing (the client sends nothing more). */
  readonly halfClose?: boolean;
  /** Drop the connection as soon as the request is written (the client goes away). */
  readonly hangUp?: boolean;
  /** For a valid JSON infer: the `data` its first output must carry. */
  readonly echo?: readonly number[];
}

/** Writes the chunks, reads until the server closes; rejects only when nothing came back in time. */
export function sendRaw(port: number, c: Pick<HttpCase, 'chunks' | 'halfClose' | 'hangUp'>, timeoutMs = 60_000): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (d: Buffer) => received.push(d));
    // A reset after the server answered (it closes early on a body it refused) is fine.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(received);
      const headEnd = all.indexOf('\r\n\r\n');
      const head = headEnd < 0 ? all.toString('latin1') : all.subarray(0, headEnd).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      resolve({ status, headers: head, body: headEnd < 0 ? Buffer.alloc(0) : all.subarray(headEnd + 4) });
    });
    socket.on('connect', () => {
      const write = (i: number): void => {
        const chunk = c.chunks[i];
        if (chunk === undefined) {
          if (c.halfClose) socket.end();
          if (c.hangUp) socket.destroy();
          return;
        }
        if (socket.destroyed) return;
        socket.write(chunk, () => write(i + 1));
      };
      write(0);
    });
  });
}

type Headers = ReadonlyArray<readonly [string, string]>;

/** A request with `Connection: close`, and Content-Length unless the headers frame the body themselves. */
export function httpRequest(method: string, path: string, headers: Headers, body?: Buffer): Buffer {
  const lines = [`${method} ${path} HTTP/1.1`, 'host: 127.0.0.1', 'connection: close'];
  const framed = headers.some(([k]) => /^(content-length|transfer-encoding)$/i.test(k));
  for (const [k, v] of headers) lines.push(`${k}: ${v}`);
  if (!framed && body !== undefined) lines.push(`content-length: ${body.byteLength}`);
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body ?? Buffer.alloc(0)]);
}

const INFER = '/v2/models/identity_fp32/infer';
const JSON_TYPE = [['content-type', 'application/json']] as const;
const post = (path: string, body: Buffer, headers: Headers = JSON_TYPE): Buffer[] => [httpRequest('POST', path, headers, body)];
const text = (s: string): Buffer => Buffer.from(s, 'utf8');
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

function values(r: Random, n: number): number[] {
  // Float32-exact values, so the echo compares equal.
  return Array.from({ length: n }, () => r.int(-1000, 1000) / 4);
}

function inferJson(r: Random): { body: Buffer; data: number[] } {
  const rows = r.int(1, 4);
  const data = values(r, rows * 16);
  return { body: json({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [rows, 16], data }] }), data };
}

const nested = (depth: number, open: string, inner: string, close: string): string => open.repeat(depth) + inner + close.repeat(depth);
const deep = (r: Random): number => r.pick([200, 1000, 10_000, r.int(101, 100_000)]);
const DEEP = /nests deeper than \d+ levels/;

function binaryInfer(head: unknown, binary: Buffer, headerLength?: string): Buffer[] {
  const h = json(head);
  return post(INFER, Buffer.concat([h, binary]), [
    ['content-type', 'application/octet-stream'],
    ['inference-header-content-length', headerLength ?? String(h.byteLength)],
  ]);
}

export const HTTP_CASES: ReadonlyArray<(r: Random) => HttpCase> = [
  (r) => {
    const { body, data } = inferJson(r);
    return { kind: 'valid JSON', chunks: post(INFER, body), statuses: [200], echo: data };
  },
  (r) => {
    const rows = r.int(1, 4);
    const raw = Buffer.from(Float32Array.from(values(r, rows * 16)).buffer);
    return { kind: 'valid binary', chunks: binaryInfer({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [rows, 16], parameters: { binary_data_size: raw.byteLength } }] }, raw), statuses: [200] };
  },
  (r) => ({ kind: 'unbalanced [ nesting', chunks: post(INFER, text('['.repeat(deep(r)))), statuses: [400], message: /failed to parse the request JSON/ }),
  (r) => ({
    kind: 'deeply nested data',
    chunks: post(INFER, text(`{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,16],"data":${nested(deep(r), '[', '1', ']')}}]}`)),
    statuses: [400],
    message: DEEP,
  }),
  (r) => ({
    kind: 'deeply nested shape',
    chunks: post(INFER, text(`{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":${nested(deep(r), '[', '1', ']')},"data":[1]}]}`)),
    statuses: [400],
    message: DEEP,
  }),
  (r) => ({
    kind: 'deeply nested object in data',
    chunks: post(INFER, text(`{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,1],"data":[${nested(deep(r), '{"a":', '1', '}')}]}]}`)),
    statuses: [400],
    message: DEEP,
  }),
  (r) => ({
    kind: 'deeply nested parameters',
    chunks: post(INFER, text(`{"parameters":{"priority":${nested(deep(r), '[', '1', ']')}},"inputs":[]}`)),
    statuses: [400],
    message: DEEP,
  }),
  (r) => ({ kind: 'deeply nested object', chunks: post(INFER, text(nested(deep(r), '{"a":', '1', '}'))), statuses: [400], message: DEEP }),
  (r) => ({ kind: 'deeply nested inputs', chunks: post(INFER, text(`{"inputs":${nested(deep(r), '[', '', ']')}}`)), statuses: [400], message: DEEP }),
  (r) => ({
    kind: 'deeply nested load parameters',
    chunks: post('/v2/repository/models/nope/load', json({ parameters: { config: nested(deep(r), '{"max_batch_size":', '1', '}') } })),
    // Past ~55,000 levels the body is over the 1 MiB limit.
    statuses: [400, 413],
    message: /nests deeper than \d+ levels|larger than the server's limit/,
  }),
  (r) => ({ kind: 'deeply nested index request', chunks: post('/v2/repository/index', text(nested(deep(r), '{"ready":', 'true', '}'))), statuses: [400], message: DEEP }),
  (r) => ({
    kind: 'declared body over the limit',
    chunks: [httpRequest('POST', INFER, [...JSON_TYPE, ['content-length', String((1 << 20) + r.int(1, 1 << 30))]])],
    statuses: [413],
    message: /larger than the server's limit of 1048576 bytes/,
  }),
  (r) => {
    const chunk = Buffer.alloc(r.int(64, 512) * 1024, 0x20);
    const framed = Buffer.concat([Buffer.from(`${chunk.byteLength.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
    return {
      kind: 'chunked body over the limit',
      chunks: [httpRequest('POST', INFER, [...JSON_TYPE, ['transfer-encoding', 'chunked']]), ...new Array<Buffer>(Math.ceil((1 << 21) / chunk.byteLength)).fill(framed), Buffer.from('0\r\n\r\n')],
      statuses: [413],
      message: /larger than the server's limit/,
    };
  },
  (r) => ({
    kind: 'gzip bomb',
    chunks: post(INFER, gzipSync(Buffer.alloc(r.int(2, 16) << 20, 0x20)), [...JSON_TYPE, ['content-encoding', 'gzip']]),
    statuses: [413],
    message: /larger than the server's limit/,
  }),
  (r) => {
    const type = r.pick(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'image/png', '', '\u00ff', 'application/json; charset=latin1']);
    const valid = r.chance(0.3);
    // No content-type check: `curl -d` sends form-urlencoded, and Triton reads the body whatever it is labelled.
    return {
      kind: 'wrong content type',
      chunks: post(INFER, valid ? inferJson(r).body : r.bytes(r.int(0, 2000)), [['content-type', type]]),
      statuses: valid ? [200] : [400],
    };
  },
  (r) => {
    const bad = r.pick([[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xc0, 0xaf]]);
    const body = Buffer.concat([text('{"inputs":[{"name":"INPUT0","datatype":"BYTES","shape":[1,1],"data":["a'), Buffer.from(bad), text('"]}]}')]);
    return { kind: 'invalid UTF-8', chunks: post('/v2/models/identity_string/infer', body), statuses: [400], message: /not valid UTF-8/ };
  },
  (r) => {
    const value = r.pick(['-1', '-100', 'abc', '1e3', '0x10', '', ' ', '99999999999999999999', '1.5', '+5', '5 5']);
    return { kind: 'bad Inference-Header-Content-Length', chunks: binaryInfer({ inputs: [] }, r.bytes(8), value), statuses: [400], message: /inference-header-content-length/i };
  },
  (r) => {
    const head = json({ inputs: [] });
    return {
      kind: 'Inference-Header-Content-Length past the body',
      chunks: binaryInfer({ inputs: [] }, Buffer.alloc(0), String(head.byteLength + r.int(1, 1 << 20))),
      statuses: [400],
      message: /inference-header-content-length is \d+ but the body has only \d+ bytes/,
    };
  },
  (r) => ({ kind: 'Inference-Header-Content-Length short', chunks: binaryInfer({ inputs: [] }, r.bytes(4), String(r.int(0, 8))), statuses: [400], message: /failed to parse the request JSON/ }),
  (r) => {
    const { body } = inferJson(r);
    return { kind: 'truncated JSON', chunks: post(INFER, body.subarray(0, r.int(0, body.byteLength - 1))), statuses: [400] };
  },
  (r) => {
    const size = r.pick([64, 128, 256]);
    const sent = r.chance(0.5) ? size - r.int(1, 63) : size + r.int(1, 63);
    return {
      kind: 'binary part of the wrong size',
      chunks: binaryInfer({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [size / 64, 16], parameters: { binary_data_size: size } }] }, r.bytes(sent)),
      statuses: [400],
      message: /runs past the end of the request body|binary_data_size add up to/,
    };
  },
  (r) => {
    const { body } = inferJson(r);
    const cut = r.int(0, body.byteLength - 1);
    return {
      kind: 'body cut short, then the client half-closes',
      chunks: [httpRequest('POST', INFER, [...JSON_TYPE, ['content-length', String(body.byteLength)]]), body.subarray(0, cut)],
      halfClose: true,
      statuses: [400, 0],
      message: /closed the connection before sending the whole body|before the end of the body/,
    };
  },
  (r) => {
    const shape = r.pick<unknown>([[2 ** 60], [-1], [1.5], ['1'], [1e308], [null], {}, '1,16', [1, -16], new Array(1000).fill(1), [2 ** 27, 2 ** 27], [Number.MAX_SAFE_INTEGER + 2]]);
    return { kind: 'absurd shape', chunks: post(INFER, json({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape, data: [1] }] })), statuses: [400], message: /shape/ };
  },
  (r) => {
    const size = r.pick<unknown>([-1, 1.5, 2 ** 60, '64', 1e308, null, [64]]);
    return {
      kind: 'absurd binary_data_size',
      chunks: binaryInfer({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], parameters: { binary_data_size: size } }] }, r.bytes(64)),
      statuses: [400],
      message: /binary_data_size|has no data|the body has \d+ bytes of binary data/,
    };
  },
  (r) => ({ kind: 'random body', chunks: post(INFER, r.bytes(r.int(0, 4096))), statuses: [400] }),
  (r) => ({ kind: 'mutated valid JSON', chunks: post(INFER, r.mutate(inferJson(r).body)), statuses: [200, 400] }),
  (r) => {
    const method = r.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'BREW']);
    const path = r.pick(['/', '/v2', '/v2/models', '/v2/models/identity_fp32/infer/extra', '/v2/models/%zz/infer', `/v2/${r.ascii(r.int(1, 40)).replace(/[\s?#%]/g, '_')}`, '/v2/models/identity_fp32/versions/x/infer', '/v2/models/nope/infer']);
    return { kind: 'odd method or path', chunks: [httpRequest(method, path, JSON_TYPE, json({}))], statuses: [200, 400, 404, 405] };
  },
  (r) => {
    const encoding = r.pick(['br', 'compress', 'gzip, br', 'zstd', 'gzip', 'deflate']);
    return {
      kind: 'bad Content-Encoding',
      chunks: post(INFER, r.bytes(r.int(0, 512)), [...JSON_TYPE, ['content-encoding', encoding]]),
      statuses: [400],
      message: /unsupported Content-Encoding|cannot decode the/,
    };
  },
  (r) => {
    const inputs = Array.from({ length: r.int(100, 10_000) }, (_, i) => ({ name: `INPUT${i}`, datatype: 'FP32', shape: [1, 16], data: new Array(16).fill(0) }));
    return { kind: 'too many inputs', chunks: post(INFER, json({ inputs })), statuses: [400], message: /is not an input of the model/ };
  },
  (r) => {
    const bad = r.pick<unknown>(['1', true, null, {}, [], 'x'.repeat(r.int(1000, 500_000))]);
    const data = [...values(r, 15), bad];
    return { kind: 'data of the wrong type', chunks: post(INFER, json({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data }] })), statuses: [400], message: /data\[\d+\] is .*expected a number for FP32|needs 16 elements/ };
  },
  (r) => {
    const raw = r.pick([
      'GARBAGE\r\n\r\n',
      'POST /v2/models/identity_fp32/infer HTTP/1.1\r\ncontent-length: -5\r\n\r\n',
      'POST /v2/models/identity_fp32/infer HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n',
      'POST /v2/models/identity_fp32/infer HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab',
      'POST /v2/models/identity_fp32/infer HTTP/1.1\r\nbad header\r\n\r\n',
      'POST /v2/models/identity_fp32/infer HTTP/9.9\r\n\r\n',
      'POST /v2/models/identity_fp32/infer HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n',
    ]);
    return { kind: 'malformed HTTP', chunks: [Buffer.from(raw, 'latin1')], statuses: [400], message: /malformed HTTP request|needs a Host header/ };
  },
  (r) => ({
    kind: 'headers over 16 KiB',
    chunks: [httpRequest('GET', '/v2/health/live', [['x-filler', 'x'.repeat(r.int(17, 64) * 1024)]])],
    statuses: [431],
    message: /request headers are larger than/,
  }),
  (r) => {
    const body = `{"__proto__":{"inputs":[]},"constructor":{"prototype":{"x":1}},"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,16],"data":${JSON.stringify(values(r, 16))},"parameters":{"__proto__":{"binary_data_size":4}}}],"parameters":{"__proto__":1}}`;
    return { kind: '__proto__ keys', chunks: post(INFER, text(body)), statuses: [200, 400] };
  },
  (r) => {
    const { body } = inferJson(r);
    const path = r.pick([INFER, '/v2/models/add_sub/infer', '/v2/models/batched_fp32/infer']);
    return { kind: 'client gone before the answer', chunks: post(path, body), hangUp: true, statuses: [0, 200, 400] };
  },
  (r) => {
    const name = 'n'.repeat(r.int(1000, 15_000));
    const path = r.pick([`/v2/models/${name}`, `/v2/models/${name}/config`, `/v2/models/${name}/stats`, `/v2/models/identity_fp32/versions/${name}`]);
    return { kind: 'huge name in the URL', chunks: [httpRequest('GET', path, [])], statuses: [400, 404, 431], message: /not in the repository|has no version|headers are larger/ };
  },
];
