import { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, connect, constants } from 'node:http2';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { InferenceError } from '../../client/errors.js';
import { fromModelInferResponse, toModelInferRequest } from '../../client/grpc-codec.js';
import { type InferResult, type PreparedInfer, type PrepareOptions, type RequestOptions } from '../../client/inference-client.js';
import { type InferInput } from '../../client/typed-tensors.js';
import { ModelInferRequest, ModelInferResponse } from '../../proto/gen/inference.js';

// The bench's own gRPC load client: ModelInfer calls written straight onto
// node:http2 from frames encoded once. The load generator shares this
// machine's cores with the server it measures. grpc-js copies each message
// into a new frame per call: for 600 KB images at 400/s that copy, into
// memory the process has never touched, took 1 ms of the client's CPU per
// request, and with its event loop busy copying it stopped writing what it
// had framed, so the server stood idle while every call missed its deadline.
// Here a call allocates nothing for its request: every stream writes the
// same frame. Answers are decoded as grpc-js decodes them.

const PATH = '/inference.GRPCInferenceService/ModelInfer';
/** As the gateway's: a 600 KB answer in one window, no round trip per 64 KB. */
const WINDOW = 16 << 20;

/** A request message (protobuf bytes) as gRPC sends it: uncompressed flag, 4-byte length, message. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + message.byteLength);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(message.byteLength, 1);
  frame.set(message, 5);
  return frame;
}

/** A ModelInferRequest framed for the wire once. */
class PreparedFrame implements PreparedInfer {
  readonly protocol = 'grpc';
  readonly model: string;
  readonly frame: Buffer;

  constructor(model: string, message: Uint8Array) {
    this.model = model;
    this.frame = grpcFrame(message);
  }

  get byteLength(): number {
    return this.frame.byteLength - 5;
  }
}

/** What inferSender needs of a client to send prepared requests. */
export interface PreparedSender {
  prepareInfer(model: string, inputs: readonly InferInput[], o?: PrepareOptions): PreparedInfer;
  inferPrepared(prepared: PreparedInfer, o?: RequestOptions): Promise<InferResult>;
}

export class H2GrpcInfer implements PreparedSender {
  readonly address: string;
  readonly #metadata: Readonly<Record<string, string>>;
  #session: ClientHttp2Session | undefined;

  /** `address`: host:port (plaintext); `metadata`: sent with every call. */
  constructor(address: string, metadata: Readonly<Record<string, string>> = {}) {
    this.address = address.replace(/^grpc:\/\//, '');
    this.#metadata = metadata;
  }

  prepareInfer(model: string, inputs: readonly InferInput[], o: PrepareOptions = {}): PreparedInfer {
    return new PreparedFrame(model, ModelInferRequest.encode(toModelInferRequest(model, inputs, o)).finish());
  }

  /** A protocol message as it is, encoded and framed once. */
  prepareMessage(request: ModelInferRequest): PreparedInfer {
    return new PreparedFrame(request.modelName, ModelInferRequest.encode(request).finish());
  }

  inferPrepared(prepared: PreparedInfer, o: RequestOptions = {}): Promise<InferResult> {
    if (!(prepared instanceof PreparedFrame)) {
      return Promise.reject(new InferenceError(GrpcStatus.INVALID_ARGUMENT, 'the request was not prepared by this client'));
    }
    return new Promise((resolve, reject) => new Call(this.#live(), prepared.frame, this.#metadata, o, resolve, reject));
  }

  close(): void {
    this.#session?.close();
  }

  /** One connection, as grpc-js keeps one per channel; a new one once it is gone. */
  #live(): ClientHttp2Session {
    const s = this.#session;
    if (s !== undefined && !s.closed && !s.destroyed) return s;
    // No session memory bound, as grpc-js: Node's 10 MB refuses new streams (ENHANCE_YOUR_CALM) once
    // seventeen 600 KB requests wait to be written.
    const session = connect(`http://${this.address}`, { settings: { initialWindowSize: WINDOW }, maxSessionMemory: Number.MAX_SAFE_INTEGER });
    // The connection's window too (the settings set each stream's); it has no handle before it connects.
    session.once('connect', () => session.setLocalWindowSize(WINDOW));
    // A broken connection fails its streams, which report UNAVAILABLE.
    session.on('error', () => undefined);
    this.#session = session;
    return session;
  }
}

/** One unary call: its stream, its deadline, the answer's frames and status. */
class Call {
  readonly #stream: ClientHttp2Stream | undefined;
  readonly #resolve: (r: InferResult) => void;
  readonly #reject: (e: InferenceError) => void;
  readonly #signal: AbortSignal | undefined;
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #chunks: Buffer[] = [];
  #code: number | undefined;
  #message = '';
  #settled = false;

  constructor(
    session: ClientHttp2Session,
    frame: Buffer,
    metadata: Readonly<Record<string, string>>,
    o: RequestOptions,
    resolve: (r: InferResult) => void,
    reject: (e: InferenceError) => void,
  ) {
    this.#resolve = resolve;
    this.#reject = reject;
    const timeoutMs = o.deadline !== undefined ? Math.min(o.deadline - Date.now(), o.timeoutMs ?? Infinity) : o.timeoutMs;
    if (timeoutMs !== undefined && timeoutMs <= 0) {
      // As grpc-js: a call whose deadline has passed is not sent.
      this.#fail(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded');
      return;
    }
    const headers: Record<string, string> = { ':method': 'POST', ':path': PATH, 'content-type': 'application/grpc', te: 'trailers', ...metadata, ...o.metadata };
    if (timeoutMs !== undefined) headers['grpc-timeout'] = `${Math.max(1, Math.ceil(timeoutMs))}m`;
    try {
      this.#stream = session.request(headers);
    } catch (e) {
      this.#fail(GrpcStatus.UNAVAILABLE, `cannot start a call: ${(e as Error).message}`);
      return;
    }
    const stream = this.#stream;
    stream.on('response', this.#headers); // a trailers-only answer carries its status here
    stream.on('trailers', this.#headers);
    stream.on('data', this.#data);
    stream.on('error', () => undefined); // reported by 'close'
    stream.on('close', this.#close);
    if (timeoutMs !== undefined) this.#timer = setTimeout(this.#expire, Math.max(0, timeoutMs));
    this.#signal = o.signal;
    if (o.signal?.aborted) this.#abort();
    else o.signal?.addEventListener('abort', this.#abort, { once: true });
    stream.end(frame);
  }

  readonly #headers = (h: IncomingHttpHeaders): void => {
    const s = h['grpc-status'];
    if (typeof s === 'string') this.#code = Number(s);
    const m = h['grpc-message'];
    if (typeof m === 'string') this.#message = percentDecoded(m);
  };

  readonly #data = (chunk: Buffer): void => {
    this.#chunks.push(chunk);
  };

  readonly #expire = (): void => {
    this.#cancel(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded');
  };

  readonly #abort = (): void => {
    this.#cancel(GrpcStatus.CANCELLED, 'Cancelled on client');
  };

  #cancel(code: GrpcStatus, message: string): void {
    this.#fail(code, message);
    this.#stream?.close(constants.NGHTTP2_CANCEL);
  }

  readonly #close = (): void => {
    if (this.#settled) return;
    const code = this.#code;
    if (code === undefined) {
      this.#fail(GrpcStatus.UNAVAILABLE, `the stream closed without a status (HTTP/2 code ${this.#stream?.rstCode ?? 'unknown'})`);
    } else if (code !== GrpcStatus.OK) {
      this.#fail(code, this.#message);
    } else {
      let answer: InferResult;
      try {
        answer = fromModelInferResponse(ModelInferResponse.decode(messageOf(this.#chunks)));
      } catch (e) {
        this.#fail(GrpcStatus.INTERNAL, `the answer does not decode: ${(e as Error).message}`);
        return;
      }
      this.#settle();
      this.#resolve(answer);
    }
  };

  #fail(code: GrpcStatus, message: string): void {
    if (this.#settled) return;
    this.#settle();
    this.#reject(new InferenceError(code, message));
  }

  #settle(): void {
    this.#settled = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#signal?.removeEventListener('abort', this.#abort);
  }
}

/** The one message of a unary answer, from the DATA chunks as they came. */
function messageOf(chunks: readonly Buffer[]): Uint8Array {
  const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
  if (body.length < 5) throw new Error(`${body.length} bytes, less than a gRPC frame's header`);
  if (body[0] !== 0) throw new Error('the answer is compressed, which this client never asks for');
  const length = body.readUInt32BE(1);
  if (body.length !== 5 + length) throw new Error(`a frame of ${length} bytes in ${body.length - 5} (one unary answer expected)`);
  return body.subarray(5);
}

function percentDecoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
