import { status as GrpcStatus } from '@grpc/grpc-js';
import { Agent as HttpAgent, type IncomingHttpHeaders, type OutgoingHttpHeaders, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { gunzip, inflate } from 'node:zlib';
import { ModelStatistics } from '../proto/gen/inference.js';
import { InferenceError, grpcCodeOfHttpStatus } from './errors.js';
import { type InferBody, decodeInferResponse, encodeInferRequest } from './http-codec.js';
import {
  type InferenceClient,
  type InferOptions,
  type InferResult,
  type LoadModelOptions,
  type UnloadModelOptions,
  type SharedMemoryRegionStatus,
  type ModelConfigSummary,
  type ModelMetadata,
  type PreparedInfer,
  type PrepareOptions,
  type RequestOptions,
  type ServerMetadata,
  configText,
  deadlineOf,
} from './inference-client.js';
import { type InferInput } from './typed-tensors.js';

export interface HttpClientOptions {
  /** Largest request or response body (default 1 GiB). */
  readonly maxMessageBytes?: number;
  /** Reuse connections between requests (default true). Ignored when `agent` is given. */
  readonly keepAlive?: boolean;
  /** Connections per host at most (default: unlimited, one per request in flight). Ignored when `agent` is given. */
  readonly maxSockets?: number;
  /** Your own agent (its options win); the client does not destroy it on close. */
  readonly agent?: HttpAgent;
  /**
   * true (default): inputs and outputs as Triton's binary tensor extension
   * (raw bytes after the JSON header; every datatype, no number formatting).
   * false: JSON `data` arrays both ways (FP16/BF16 cannot go that way).
   */
  readonly binary?: boolean;
  /** Headers sent with every request. */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * Ask for compressed answers (`Accept-Encoding: gzip, deflate`; a server
   * compresses those long enough to gain from it): fewer bytes on a slow
   * link, more CPU at both ends (default false). Compressed answers are
   * read either way.
   */
  readonly compressAnswers?: boolean;
}

interface HttpAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

type Json = Record<string, unknown>;

const seg = encodeURIComponent;
const modelPath = (model: string, version: string): string => `/v2/models/${seg(model)}${version ? `/versions/${seg(version)}` : ''}`;

/**
 * A client for the KServe v2 REST API (Fabriek, Triton, KServe) on node:http
 * with a keep-alive agent. Every failure is an InferenceError whose code is
 * the gRPC equivalent of the HTTP status (and `httpStatus` the status itself).
 */
/** An infer request's path and body, encoded once (InferenceHttpClient.prepareInfer). */
class PreparedHttpInfer implements PreparedInfer {
  readonly protocol = 'http';
  readonly model: string;
  readonly path: string;
  readonly body: InferBody;
  readonly byteLength: number;

  constructor(model: string, path: string, body: InferBody) {
    this.model = model;
    this.path = path;
    this.body = body;
    this.byteLength = body.parts.reduce((n, p) => n + p.byteLength, 0);
  }
}

export class InferenceHttpClient implements InferenceClient {
  readonly protocol = 'http';
  /** The base URL, e.g. http://127.0.0.1:8000. */
  readonly address: string;
  readonly agent: HttpAgent;
  readonly #ownAgent: boolean;
  readonly #url: URL;
  readonly #max: number;
  readonly #binary: boolean;
  readonly #headers: Readonly<Record<string, string>>;

  /** `url`: http(s)://host:port, or host:port for plain HTTP. */
  constructor(url: string, options: HttpClientOptions = {}) {
    this.#url = new URL(/^https?:\/\//.test(url) ? url : `http://${url}`);
    this.address = this.#url.origin;
    const Agent = this.#url.protocol === 'https:' ? HttpsAgent : HttpAgent;
    this.#ownAgent = options.agent === undefined;
    this.agent = options.agent ?? new Agent({ keepAlive: options.keepAlive ?? true, ...(options.maxSockets !== undefined ? { maxSockets: options.maxSockets } : {}) });
    this.#max = options.maxMessageBytes ?? 1 << 30;
    this.#binary = options.binary ?? true;
    this.#headers = options.compressAnswers === true ? { 'accept-encoding': 'gzip, deflate', ...options.headers } : (options.headers ?? {});
  }

  async isServerLive(o?: RequestOptions): Promise<boolean> {
    return (await this.#send('GET', '/v2/health/live', o)).status === 200;
  }

  async isServerReady(o?: RequestOptions): Promise<boolean> {
    return (await this.#send('GET', '/v2/health/ready', o)).status === 200;
  }

  async isModelReady(model: string, version = '', o?: RequestOptions): Promise<boolean> {
    const path = `${modelPath(model, version)}/ready`;
    const answer = await this.#send('GET', path, o);
    // A refused caller learns nothing about readiness: it gets the error, as over gRPC.
    if (answer.status === 401 || answer.status === 403 || answer.status === 429) throw errorOf('GET', path, answer);
    return answer.status === 200;
  }

  async getServerMetadata(o?: RequestOptions): Promise<ServerMetadata> {
    const j = await this.#json('GET', '/v2', o);
    return { name: String(j['name'] ?? ''), version: String(j['version'] ?? ''), extensions: Array.isArray(j['extensions']) ? j['extensions'].map(String) : [] };
  }

  async getModelMetadata(model: string, version = '', o?: RequestOptions): Promise<ModelMetadata> {
    const j = await this.#json('GET', modelPath(model, version), o);
    const tensors = (v: unknown): ModelMetadata['inputs'] =>
      (Array.isArray(v) ? (v as Json[]) : []).map((t) => ({ name: String(t['name']), datatype: String(t['datatype']), shape: Array.isArray(t['shape']) ? t['shape'].map(Number) : [] }));
    return {
      name: String(j['name'] ?? model),
      versions: Array.isArray(j['versions']) ? j['versions'].map(String) : [],
      platform: String(j['platform'] ?? ''),
      inputs: tensors(j['inputs']),
      outputs: tensors(j['outputs']),
    };
  }

  async getModelConfig(model: string, version = '', o?: RequestOptions): Promise<ModelConfigSummary> {
    const j = await this.#json('GET', `${modelPath(model, version)}/config`, o);
    return { name: String(j['name'] ?? model), maxBatchSize: Number(j['max_batch_size'] ?? 0), dynamicBatching: j['dynamic_batching'] !== undefined && j['dynamic_batching'] !== null, config: j };
  }

  async getInferenceStatistics(model = '', version = '', o?: RequestOptions): Promise<ModelStatistics[]> {
    const j = await this.#json('GET', model ? `${modelPath(model, version)}/stats` : '/v2/models/stats', o);
    const list = Array.isArray(j['model_stats']) ? (j['model_stats'] as unknown[]) : [];
    return list.map((s) => ModelStatistics.fromJSON(s));
  }

  async loadModel(model: string, o: LoadModelOptions = {}): Promise<void> {
    const body = o.config === undefined ? {} : { parameters: { config: configText(o.config) } };
    await this.#ok('POST', `/v2/repository/models/${seg(model)}/load`, o, Buffer.from(JSON.stringify(body)));
  }

  async unloadModel(model: string, o: UnloadModelOptions = {}): Promise<void> {
    const body = o.unloadDependents === undefined ? {} : { parameters: { unload_dependents: o.unloadDependents } };
    await this.#ok('POST', `/v2/repository/models/${seg(model)}/unload`, o, Buffer.from(JSON.stringify(body)));
  }

  async registerSystemSharedMemory(name: string, key: string, byteSize: number, offset = 0, o?: RequestOptions): Promise<void> {
    const body = Buffer.from(JSON.stringify({ key, offset, byte_size: byteSize }));
    await this.#ok('POST', `/v2/systemsharedmemory/region/${seg(name)}/register`, o, body);
  }

  async unregisterSystemSharedMemory(name = '', o?: RequestOptions): Promise<void> {
    await this.#ok('POST', name === '' ? '/v2/systemsharedmemory/unregister' : `/v2/systemsharedmemory/region/${seg(name)}/unregister`, o, Buffer.from('{}'));
  }

  async getSystemSharedMemoryStatus(name = '', o?: RequestOptions): Promise<SharedMemoryRegionStatus[]> {
    const answer = await this.#ok('GET', name === '' ? '/v2/systemsharedmemory/status' : `/v2/systemsharedmemory/region/${seg(name)}/status`, o);
    const list = JSON.parse(answer.body.toString('utf8')) as { name: string; key: string; offset: number; byte_size: number }[];
    return list.map((r) => ({ name: r.name, key: r.key, offset: r.offset, byteSize: r.byte_size }));
  }

  async infer(model: string, inputs: readonly InferInput[], o: InferOptions = {}): Promise<InferResult> {
    return this.#infer(`${modelPath(model, o.version ?? '')}/infer`, encodeInferRequest(inputs, o, this.#binary), o);
  }

  prepareInfer(model: string, inputs: readonly InferInput[], o: PrepareOptions = {}): PreparedInfer {
    return new PreparedHttpInfer(model, `${modelPath(model, o.version ?? '')}/infer`, encodeInferRequest(inputs, o, this.#binary));
  }

  inferPrepared(prepared: PreparedInfer, o?: RequestOptions): Promise<InferResult> {
    if (!(prepared instanceof PreparedHttpInfer)) {
      return Promise.reject(new InferenceError(GrpcStatus.INVALID_ARGUMENT, `a request prepared by a ${prepared.protocol} client cannot be sent over HTTP`));
    }
    return this.#infer(prepared.path, prepared.body, o);
  }

  async #infer(path: string, body: InferBody, o: RequestOptions | undefined): Promise<InferResult> {
    const answer = await this.#ok('POST', path, o, body);
    const headerLength = answer.headers['inference-header-content-length'];
    return decodeInferResponse(answer.body, headerLength === undefined ? undefined : Number(headerLength));
  }

  close(): void {
    if (this.#ownAgent) this.agent.destroy();
  }

  async #json(method: 'GET' | 'POST', path: string, o: RequestOptions | undefined): Promise<Json> {
    const answer = await this.#ok(method, path, o);
    try {
      const v: unknown = JSON.parse(answer.body.toString('utf8'));
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Json;
    } catch {
      // reported below
    }
    throw new InferenceError(GrpcStatus.INTERNAL, `${method} ${path}: the answer is not a JSON object`, { httpStatus: answer.status });
  }

  /** Sends and throws the server's error for any non-2xx answer. */
  async #ok(method: 'GET' | 'POST', path: string, o: RequestOptions | undefined, body?: InferBody | Buffer): Promise<HttpAnswer> {
    const answer = await this.#send(method, path, o, body);
    if (answer.status >= 200 && answer.status < 300) return answer;
    throw errorOf(method, path, answer);
  }

  #send(method: 'GET' | 'POST', path: string, o: RequestOptions = {}, body?: InferBody | Buffer): Promise<HttpAnswer> {
    const parts = body === undefined ? [] : Buffer.isBuffer(body) ? [body] : body.parts;
    const length = parts.reduce((n, p) => n + p.byteLength, 0);
    if (length > this.#max) {
      return Promise.reject(new InferenceError(GrpcStatus.RESOURCE_EXHAUSTED, `${method} ${path}: request body of ${length} bytes is over the client's limit of ${this.#max}`));
    }
    const headers: OutgoingHttpHeaders = { ...this.#headers, ...o.metadata };
    if (body !== undefined) {
      headers['content-length'] = length;
      headers['content-type'] = Buffer.isBuffer(body) ? 'application/json' : body.contentType;
      if (!Buffer.isBuffer(body) && body.headerLength !== undefined) headers['inference-header-content-length'] = body.headerLength;
    }
    const deadline = deadlineOf(o);
    const request = this.#url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<HttpAnswer>((resolve, reject) => {
      let settled = false;
      const fail = (error: InferenceError): void => {
        if (settled) return;
        settled = true;
        cleanup();
        req.destroy();
        reject(error);
      };
      const req = request(
        { protocol: this.#url.protocol, hostname: this.#url.hostname, port: this.#url.port, method, path, headers, agent: this.agent },
        (res) => {
          const declared = Number(res.headers['content-length'] ?? 0);
          if (declared > this.#max) return fail(new InferenceError(GrpcStatus.RESOURCE_EXHAUSTED, `${method} ${path}: answer of ${declared} bytes is over the client's limit of ${this.#max}`));
          const chunks: Buffer[] = [];
          let received = 0;
          res.on('data', (c: Buffer) => {
            received += c.length;
            if (received > this.#max) fail(new InferenceError(GrpcStatus.RESOURCE_EXHAUSTED, `${method} ${path}: answer over the client's limit of ${this.#max} bytes`));
            else chunks.push(c);
          });
          res.once('end', () => {
            if (settled) return;
            const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
            const encoding = res.headers['content-encoding'];
            const done = (plain: Buffer): void => {
              if (settled) return;
              settled = true;
              cleanup();
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: plain });
            };
            if (encoding !== 'gzip' && encoding !== 'deflate') return done(body);
            // Decompressed within the same limit as a plain answer.
            (encoding === 'gzip' ? gunzip : inflate)(body, { maxOutputLength: this.#max }, (error, plain) => {
              if (!error) return done(plain);
              // Too large, or not the encoding it says: two different faults, told apart.
              const tooLarge = (error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
              fail(
                tooLarge
                  ? new InferenceError(GrpcStatus.RESOURCE_EXHAUSTED, `${method} ${path}: the ${encoding} answer decompresses to more than the client's limit of ${this.#max} bytes`)
                  : new InferenceError(GrpcStatus.INTERNAL, `${method} ${path}: the answer says Content-Encoding ${encoding} but does not decompress: ${error.message}`, { cause: error }),
              );
            });
          });
          res.once('error', (e) => fail(new InferenceError(GrpcStatus.UNAVAILABLE, `${method} ${path}: ${e.message}`, { cause: e })));
        },
      );
      req.once('error', (e: NodeJS.ErrnoException) => fail(new InferenceError(GrpcStatus.UNAVAILABLE, `${method} ${this.address}${path}: ${e.code ?? e.message}`, { cause: e })));
      const onAbort = (): void => fail(new InferenceError(GrpcStatus.CANCELLED, `${method} ${path}: cancelled by the caller`));
      const timer =
        deadline === undefined
          ? undefined
          : setTimeout(() => fail(new InferenceError(GrpcStatus.DEADLINE_EXCEEDED, `${method} ${path}: deadline exceeded`)), Math.max(0, deadline - Date.now()));
      const cleanup = (): void => {
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
      };
      if (o.signal?.aborted) return onAbort();
      // Like gRPC: a deadline already past fails without sending anything.
      if (deadline !== undefined && deadline <= Date.now()) return fail(new InferenceError(GrpcStatus.DEADLINE_EXCEEDED, `${method} ${path}: deadline exceeded before sending`));
      o.signal?.addEventListener('abort', onAbort, { once: true });
      for (const p of parts) req.write(p);
      req.end();
    });
  }
}

/** The server's error answer as an InferenceError: its message, gRPC code, HTTP status and Retry-After. */
function errorOf(method: 'GET' | 'POST', path: string, answer: HttpAnswer): InferenceError {
  let message = answer.body.toString('utf8');
  try {
    const j = JSON.parse(message) as { error?: unknown };
    if (typeof j.error === 'string') message = j.error;
  } catch {
    // not JSON: keep the text
  }
  const retryAfter = Number(answer.headers['retry-after']);
  return new InferenceError(grpcCodeOfHttpStatus(answer.status), message || `${method} ${path}: HTTP ${answer.status}`, {
    httpStatus: answer.status,
    ...(answer.headers['retry-after'] !== undefined && Number.isFinite(retryAfter) ? { retryAfterMs: retryAfter * 1000 } : {}),
  });
}
