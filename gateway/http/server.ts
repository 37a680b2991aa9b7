// KServe v2 REST on node:http. No framework: routing is a handful of fixed
// path shapes, and each layer a framework adds (router, middleware chain,
// body parsers) sits on every infer request's hot path for nothing we need.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import { promisify } from 'node:util';
import { deflate, gzip } from 'node:zlib';
import { type Logger } from 'pino';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { boundedMessage, failedPrecondition, invalidArgument, isServingError, retryAfterSeconds, toHttpStatus, unimplemented } from '../../core/errors.js';
import { Admission, type CallNote, type CallOp } from '../inference/admission.js';
import { type InflightGate, isHold, outcomeOfError } from '../inference/inflight-gate.js';
import { type Tenant } from '../tenants/tenant.js';
import { type ServerInfo } from '../grpc/inference-service.js';
import { type ModelManager } from '../repository/model-manager.js';
import { orcaJson } from '../load/load-report.js';
import { type LoadReporter } from '../load/load-reporter.js';
import { type LogControl } from '../log-settings.js';
import { PER_MODEL_TRACE_SETTINGS, type TraceControl } from '../../core/trace-policy.js';
import { BodyTooLargeError, declaredLength, readBody } from './body.js';
import { lingerOnClose } from './linger.js';
import { answerClientErrors } from './client-errors.js';
import { answerEncoding, MAX_COMPRESSED_BYTES, MIN_COMPRESSED_BYTES } from './answer-encoding.js';
import { SHARED_MEMORY_OFF } from '../shared-memory/shared-memory-tensors.js';
import { type SystemSharedMemory } from '../shared-memory/system-shared-memory.js';
import * as queries from '../inference/model-queries.js';
import { type PipelineOptions } from '../inference/infer-pipeline.js';
import * as h from './handlers.js';
import { HEADER_LENGTH } from './json-tensors.js';
import { InferHeaderMemo } from './infer-header-memo.js';
import { parseClientJson } from '../parse-json.js';
import { httpTraceHeaders } from '../inference/trace-headers.js';
import { activeTracer } from '../../core/tracing.js';
import { Cancellation } from '../../core/cancellation.js';

export interface HttpServerOptions {
  /** Largest request body, before and after decompression (the server's --max-message-bytes). */
  readonly maxBodyBytes?: number;
  /** Serve HTTPS with these options (gateway/tls.ts); plain HTTP when absent. */
  readonly tls?: HttpsServerOptions;
  /** Tenants: who may call what; default open. */
  readonly admission?: Admission;
  /** The gateway's bound on request bytes in flight; an inference past it is refused from its headers. */
  readonly inflight?: InflightGate;
  /** The load reported to balancers, served at GET /v2/health/load. */
  readonly load?: LoadReporter;
  /** Triton's logging extension, GET/POST /v2/logging; 404 without it. */
  readonly logging?: LogControl;
  /** Triton's trace extension, GET/POST /v2/trace/setting; 404 without it. */
  readonly tracing?: TraceControl;
  /** --system-shared-memory: the regions of /v2/systemsharedmemory and of requests that name them. */
  readonly sharedMemory?: SystemSharedMemory;
}

/** Bodies up to this size are read and dropped after an early error; larger ones close the connection. */
const DRAIN_LIMIT = 1 << 20;

type Method = 'GET' | 'POST';

/** A matched route: which methods it takes and what to do. */
interface Route {
  /** The method it takes; a path that reads and changes one thing takes GET and POST. */
  readonly method: Method | readonly Method[];
  /** `cancellation` aborts when the client goes away before the answer; a route may abort it too (its timeout). */
  run(req: IncomingMessage, res: ServerResponse, cancellation: Cancellation): Promise<void>;
}

/** One path, read with GET and changed with POST: each method's route. */
function readAndChange(read: Route, change: Route): Route {
  return { method: ['GET', 'POST'], run: (req, res, cancellation) => (req.method === 'POST' ? change : read).run(req, res, cancellation) };
}

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}) {
    super(message);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'content-length': 0 });
  res.end();
}

function headerLength(req: IncomingMessage): number | undefined {
  const value = req.headers[HEADER_LENGTH];
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== 'string' || !/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) {
    throw invalidArgument(`${HEADER_LENGTH} must be a non-negative integer, got '${String(value)}'`);
  }
  return n;
}

/** The header that gives an HTTP inference its deadline, as gRPC's grpc-timeout does: whole ms from arrival. */
export const TIMEOUT_HEADER = 'timeout-ms';
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

function timeoutHeader(req: IncomingMessage): number | undefined {
  const value = req.headers[TIMEOUT_HEADER];
  if (value === undefined) return undefined;
  const n = Number(value);
  // The upper bound is the longest timer Node keeps: above it, Node would fire at once (or throw).
  if (typeof value !== 'string' || !/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1 || n > MAX_TIMEOUT_MS) {
    throw invalidArgument(`Timeout-Ms must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, got '${String(value)}'`);
  }
  return n;
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, `malformed percent-encoding in URL segment '${s}'`);
  }
}

export function createHttpServer(
  models: ModelManager,
  info: ServerInfo,
  log: Logger,
  options: HttpServerOptions = {},
): Server | HttpsServer {
  const maxBodyBytes = options.maxBodyBytes ?? 1 << 30;
  const admission = options.admission ?? new Admission();
  const headers = new InferHeaderMemo();
  const get = (answer: () => unknown): Route => ({ method: 'GET', run: async (_req, res) => sendJson(res, 200, answer()) });
  type GuardedRun = (tenant: Tenant, note: CallNote, req: IncomingMessage, res: ServerResponse, cancellation: Cancellation) => Promise<void>;
  /** A route about a model: admission first (before the body is read), then `run` as the caller's tenant. */
  const guarded = (method: Method, op: CallOp, model: string, version: string, run: GuardedRun): Route => ({
    method,
    run: (req, res, signal) =>
      admission.call({ protocol: 'http', op, model, version, authorization: req.headers.authorization }, (tenant, note) =>
        run(tenant, note, req, res, signal),
      ),
  });
  const guardedGet = (op: CallOp, model: string, version: string, answer: (tenant: Tenant) => unknown): Route =>
    guarded('GET', op, model, version, async (tenant, _note, _req, res, signal) => {
      // On demand, a model's metadata and config come from its load.
      if (models.onDemand && (op === 'metadata' || op === 'config')) await models.loadForQuery(model, version, { signal, deadline: Infinity });
      sendJson(res, 200, await answer(tenant));
    });
  const probe = (ready: () => boolean): Route => ({
    method: 'GET',
    // KServe v2 and Triton: 200 when ready, a 4xx (Triton: 400) when not.
    run: async (_req, res) => sendEmpty(res, ready() ? 200 : 400),
  });

  /**
   * Triton's logging and trace extensions: GET the settings in force; POST a
   * JSON object of settings to change, answered with them all after it.
   */
  const settingsRoute = (op: 'logging' | 'tracing', control: LogControl | TraceControl): Route => {
    const what = op === 'logging' ? 'log settings' : 'trace settings';
    return readAndChange(
      guardedGet(op, '', '', () => control.settings()),
      guarded('POST', op, '', '', async (_t, _n, req, res) => {
        const parsed = parseClientJson(await readBody(req, maxBodyBytes), `the ${what} JSON`);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
          throw invalidArgument(`${what}: expected a JSON object of settings, e.g. ${op === 'logging' ? '{"log_verbose_level": 1}' : '{"trace_rate": "100"}'}`);
        }
        sendJson(res, 200, await control.update(new Map(Object.entries(parsed))));
      }),
    );
  };

  /** The route for a path; undefined when no endpoint has that shape. */
  const route = (segments: readonly string[]): Route | undefined => {
    const [v2, kind, ...rest] = segments;
    if (v2 !== 'v2') return undefined;
    if (kind === undefined) return get(() => h.serverMetadata(info));
    if (kind === 'logging' && rest.length === 0) return options.logging ? settingsRoute('logging', options.logging) : undefined;
    if (kind === 'trace' && rest.length === 1 && rest[0] === 'setting') return options.tracing ? settingsRoute('tracing', options.tracing) : undefined;
    if (kind === 'health' && rest.length === 1) {
      if (rest[0] === 'live') return probe(() => true);
      if (rest[0] === 'ready') return probe(() => queries.serverReady(models, info));
      if (rest[0] === 'load' && options.load) {
        const load = options.load;
        return { method: 'GET', run: async (_req, res) => sendJson(res, 200, orcaJson(load.current)) };
      }
      return undefined;
    }
    if (kind === 'repository') return repositoryRoute(rest);
    if (kind === 'systemsharedmemory') return sharedMemoryRoute(rest);
    if (kind === 'cudasharedmemory') {
      const refuse = async (): Promise<void> => {
        throw unimplemented('CUDA shared memory is not supported by Fabriek; use system shared memory (/v2/systemsharedmemory)');
      };
      return readAndChange(guarded('GET', 'shared_memory', '', '', refuse), guarded('POST', 'shared_memory', '', '', refuse));
    }
    if (kind !== 'models') return undefined;
    if (rest.length === 1 && rest[0] === 'stats') return guardedGet('statistics', '', '', (t) => h.modelStatistics(models, '', '', t));
    const [name, ...after] = rest;
    if (name === undefined) return undefined;
    let version = '';
    let tail = after;
    if (after[0] === 'versions') {
      if (after[1] === undefined) return undefined;
      version = after[1];
      tail = after.slice(2);
    }
    if (tail.length === 2 && tail[0] === 'trace' && tail[1] === 'setting' && options.tracing) {
      // Triton's per-model trace settings: refused, with why, after the same checks as the server's.
      const refuse = async (): Promise<void> => {
        throw invalidArgument(PER_MODEL_TRACE_SETTINGS);
      };
      return readAndChange(guarded('GET', 'tracing', name, version, refuse), guarded('POST', 'tracing', name, version, refuse));
    }
    if (tail.length > 1) return undefined;
    switch (tail[0]) {
      case undefined:
        return guardedGet('metadata', name, version, () => h.modelMetadata(models, name, version));
      case 'ready':
        return guarded('GET', 'ready', name, version, async (_t, _n, _req, res) =>
          sendEmpty(res, queries.modelReady(models, name, version) ? 200 : 400),
        );
      case 'config':
        return guardedGet('config', name, version, () => h.modelConfig(models, name, version));
      case 'stats':
        return guardedGet('statistics', name, version, (t) => h.modelStatistics(models, name, version, t));
      case 'batching':
        return guardedGet('statistics', name, version, () => queries.batchingState(models, name, version));
      case 'infer':
        return guarded('POST', 'infer', name, version, async (tenant, note, req, res, signal) => {
          const length = headerLength(req);
          const timeoutMs = timeoutHeader(req);
          const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
          const declared = declaredLength(req);
          // A body over the message limit can never be served: readBody answers 413, not a 429 that says try again.
          const hold = declared !== undefined && declared > maxBodyBytes ? undefined : options.inflight?.enter(declared, tenant, timeoutMs ?? Infinity);
          if (hold !== undefined && !isHold(hold)) throw hold;
          // The call gives up at its Timeout-Ms: queued work leaves the queue, as at a gRPC deadline.
          const timer = timeoutMs === undefined ? undefined : setTimeout(signal.abort, timeoutMs);
          try {
            const body = await readBody(req, maxBodyBytes);
            hold?.settle(body.byteLength);
            const pipeline: PipelineOptions = activeTracer()
              ? { log, protocol: 'http', admission, note, ...httpTraceHeaders(req.headers) }
              : { log, protocol: 'http', admission, note };
            const answer = await h.infer(models, { name, version, body, headerLength: length, signal, deadline, tenant, pipeline, sharedMemory: options.sharedMemory, hold, headers });
            const accept = req.headers['accept-encoding'];
            if (accept === undefined || !(await sendCompressed(res, answer.json, answer.binary, accept))) sendInfer(res, answer.json, answer.binary);
            hold?.release('answered');
          } catch (error) {
            hold?.release(outcomeOfError(error, timeoutMs !== undefined));
            throw error;
          } finally {
            if (timer) clearTimeout(timer);
          }
        });
      default:
        return undefined;
    }
  };

  /**
   * Triton's system shared memory extension: GET …/status and
   * …/region/{name}/status, POST …/region/{name}/register with {key, offset,
   * byte_size}, POST …/unregister and …/region/{name}/unregister.
   */
  const sharedMemoryRoute = (rest: readonly string[]): Route | undefined => {
    const regions = (): SystemSharedMemory => {
      if (options.sharedMemory === undefined) throw failedPrecondition(SHARED_MEMORY_OFF);
      return options.sharedMemory;
    };
    const [first, name, action] = rest;
    const whole = rest.length === 1;
    const one = rest.length === 3 && first === 'region' && name !== undefined;
    if ((whole && first === 'status') || (one && action === 'status')) {
      return guardedGet('shared_memory', '', '', () => regions().status(whole ? '' : (name as string)).map((r) => ({ name: r.name, key: r.key, offset: r.offset, byte_size: r.byteSize })));
    }
    if ((whole && first === 'unregister') || (one && action === 'unregister')) {
      return guarded('POST', 'shared_memory', '', '', async (_t, _n, _req, res) => {
        await regions().unregister(whole ? '' : (name as string));
        sendEmpty(res, 200);
      });
    }
    if (one && action === 'register') {
      return guarded('POST', 'shared_memory', '', '', async (_t, _n, req, res) => {
        const shm = regions();
        const body = parseClientJson(await readBody(req, maxBodyBytes), 'the shared memory register request JSON');
        const fields = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : undefined;
        const key = fields?.['key'];
        const offset = fields?.['offset'] ?? 0;
        const byteSize = fields?.['byte_size'];
        if (typeof key !== 'string' || typeof offset !== 'number' || typeof byteSize !== 'number') {
          throw invalidArgument(`shared memory region '${name as string}': expected a JSON object with 'key' (a string), 'byte_size' and optionally 'offset' (integers)`);
        }
        await shm.register(name as string, key, offset, byteSize);
        sendEmpty(res, 200);
      });
    }
    return undefined;
  };

  const repositoryRoute = (rest: readonly string[]): Route | undefined => {
    if (rest.length === 1 && rest[0] === 'index') {
      return guarded('POST', 'index', '', '', async (tenant, _note, req, res) => {
        const body = await readBody(req, maxBodyBytes);
        let ready = false;
        if (body.byteLength > 0) {
          const parsed = parseClientJson(body, 'the repository index request JSON');
          ready = typeof parsed === 'object' && parsed !== null && (parsed as { ready?: unknown }).ready === true;
        }
        sendJson(res, 200, h.repositoryIndex(models, ready, tenant));
      });
    }
    if (rest.length === 3 && rest[0] === 'models' && (rest[2] === 'load' || rest[2] === 'unload')) {
      const [, name, action] = rest as [string, string, 'load' | 'unload'];
      return guarded('POST', action, name, '', async (_t, _n, req, res) => {
        await h.repositoryControl(models, name, action, await readBody(req, maxBodyBytes));
        sendEmpty(res, 200);
      });
    }
    return undefined;
  };

  const fail = (res: ServerResponse, error: unknown): void => {
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    if (error instanceof HttpError) {
      for (const [k, v] of Object.entries(error.headers)) res.setHeader(k, v);
      sendJson(res, error.status, { error: boundedMessage(error.message) });
    } else if (error instanceof BodyTooLargeError) {
      res.setHeader('connection', 'close'); // the rest of the body is not worth reading
      if (res.socket) lingerOnClose(res.socket);
      sendJson(res, 413, { error: error.message });
    } else if (isServingError(error)) {
      if (error.retryAfterMs !== undefined) res.setHeader('retry-after', String(retryAfterSeconds(error.retryAfterMs)));
      if (error.code === GrpcStatus.UNAUTHENTICATED) res.setHeader('www-authenticate', 'Bearer');
      sendJson(res, toHttpStatus(error.code), { error: boundedMessage(error.message) });
    } else {
      log.error({ err: error }, 'unexpected error in HTTP handler');
      sendJson(res, 500, { error: 'internal error' });
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.httpVersion === '1.1' && req.headers.host === undefined) throw new HttpError(400, 'an HTTP/1.1 request needs a Host header');
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const named = path.split('/').filter((s) => s !== '');
    // Percent-decoding only where there is something to decode: most paths have none.
    const segments = path.includes('%') ? named.map(decodeSegment) : named;
    const r = route(segments);
    if (!r) throw new HttpError(404, `no endpoint at ${req.method ?? ''} ${path}`);
    const allowed = r.method;
    if (typeof allowed === 'string' ? req.method !== allowed : !(allowed as readonly string[]).includes(req.method ?? '')) {
      const allow = typeof allowed === 'string' ? allowed : allowed.join(', ');
      throw new HttpError(405, `${path} accepts ${allow}, not ${req.method ?? ''}`, { allow });
    }
    // Cancel the request's queue entry when the client goes away before the answer (infer: or its Timeout-Ms
    // passes). A Cancellation, not an AbortController (nor AbortSignal.any and .timeout): see core/cancellation.ts.
    const cancellation = new Cancellation();
    res.once('close', () => {
      if (!res.writableFinished) cancellation.abort();
    });
    await r.run(req, res, cancellation);
  };

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((error: unknown) => {
      if (!req.complete) {
        // Refused before its body was read (e.g. no API key): a large body is not worth receiving.
        const length = declaredLength(req);
        if (length === undefined || length > DRAIN_LIMIT) res.setHeader('connection', 'close');
        req.resume();
      }
      fail(res, error);
    });
  };
  // Node refuses a missing Host header with a bare 400; handle() says so in the JSON error form instead.
  const server = options.tls
    ? createHttpsServer({ ...options.tls, requireHostHeader: false }, listener)
    : createServer({ requireHostHeader: false }, listener);
  answerClientErrors(server);
  return server;
}

const gzipAsync = promisify(gzip);
const deflateAsync = promisify(deflate);

/**
 * An infer answer compressed, as Triton does when the client's
 * Accept-Encoding takes gzip or deflate, on libuv's threads; false (nothing
 * sent) when it takes neither, or the answer is too short to gain from it or
 * too long to be worth it (MIN_ and MAX_COMPRESSED_BYTES). The size is
 * checked first: most answers are short, and fetch and requests send the
 * header with every request. Inference-Header-Content-Length gives the JSON
 * part's length before compression, as Triton's.
 */
async function sendCompressed(res: ServerResponse, json: string, binary: readonly Uint8Array[], accept: string): Promise<boolean> {
  const jsonLength = Buffer.byteLength(json);
  const total = binary.reduce((n, b) => n + b.byteLength, jsonLength);
  if (total < MIN_COMPRESSED_BYTES || total > MAX_COMPRESSED_BYTES) return false;
  const encoding = answerEncoding(accept);
  if (encoding === undefined) return false;
  const plain = Buffer.concat([Buffer.from(json), ...binary], total);
  const body = await (encoding === 'gzip' ? gzipAsync(plain) : deflateAsync(plain));
  res.writeHead(200, {
    'content-type': binary.length === 0 ? 'application/json' : 'application/octet-stream',
    'content-encoding': encoding,
    'content-length': body.byteLength,
    vary: 'accept-encoding',
    ...(binary.length === 0 ? {} : { [HEADER_LENGTH]: jsonLength }),
  });
  res.end(body);
  return true;
}

/** JSON alone, or JSON then binary parts with Inference-Header-Content-Length, as Triton answers. */
function sendInfer(res: ServerResponse, json: string, binary: readonly Uint8Array[]): void {
  const jsonLength = Buffer.byteLength(json);
  if (binary.length === 0) {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': jsonLength });
    res.end(json);
    return;
  }
  const total = binary.reduce((n, b) => n + b.byteLength, jsonLength);
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': total,
    [HEADER_LENGTH]: jsonLength,
  });
  res.write(json);
  for (const b of binary) res.write(b);
  res.end();
}
