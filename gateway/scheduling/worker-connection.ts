import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { ServingError } from '../../core/errors.js';
import { decodeExecuteResponse, encodeExecuteRequest, type ExecuteAnswer, type ExecuteCall, type FrameTrace } from '../../core/execute-frame.js';
import { decodeError, encodeFrame, ERROR, type Frame, FrameError, FrameReader, HEADER_BYTES, Method, PING_CALL_ID, RESPONSE } from '../../core/worker-frames.js';
import { CallTable } from '../../core/call-table.js';
import { writeInTick } from '../../core/tick-cork.js';
import { serverNameFor } from '../../core/tls.js';
import {
  type LoadModelRequest,
  LoadModelRequest as LoadModelRequestCodec,
  LoadModelResponse,
  StatusRequest,
  StatusResponse,
  UnloadModelRequest,
  UnloadModelResponse,
} from '../../proto/gen/worker.js';
import { Liveness } from './worker-liveness.js';
import { type WorkerEndpoint, type WorkerLink } from './worker-link.js';

export interface WorkerConnectionOptions {
  readonly maxMessageBytes: number;
  /** TLS (with a client certificate for mTLS) to workers on other machines. */
  readonly tls?: ConnectionOptions;
  /**
   * Liveness check: a PING whenever the socket was silent for a while, and
   * the socket is given up as lost when nothing arrives for this long
   * (core/worker-frames.ts). Absent or 0: no check.
   */
  readonly pingTimeoutMs?: number;
}

/**
 * Is this failure the worker's process or connection going away (so the work
 * may be retried elsewhere), rather than an answer from a healthy worker?
 */
export function isWorkerLost(error: unknown): boolean {
  return error instanceof WorkerLostError;
}

/** The worker did not answer: it died, its connection broke, or it refused new work while draining. */
export class WorkerLostError extends ServingError {
  override name = 'WorkerLostError';
}

interface Pending {
  callId: number;
  resolve(frame: Frame): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | undefined;
  /** The caller stopped waiting (deadline); the worker's answer is still awaited, then dropped. */
  expired: boolean;
  /** Called once when the worker is done with the call: it answered (false), or it is lost (true). */
  readonly done: ((lost: boolean) => void) | undefined;
  /** The socket the call went out on: only its close fails the call. */
  readonly socket: Socket;
}

interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
}
interface Decoder<T> {
  decode(input: Uint8Array): T;
}

/** A protobuf call's frame parts (header, message); its call id is written when sent. */
function protobufFrame<T>(method: Method, codec: Codec<T>, request: T): Uint8Array[] {
  return encodeFrame(method, 0, codec.encode(request).finish());
}

/** The answer of a protobuf call. */
function protobufAnswer<T>(decoder: Decoder<T>): (frame: Frame) => T {
  return (frame) => decoder.decode(frame.payload);
}

const executeAnswer = (frame: Frame): ExecuteAnswer => decodeExecuteResponse(frame.payload, frame.segments);

/**
 * The gateway's connection to one worker: one persistent socket carrying
 * length-prefixed frames (core/worker-frames.ts), calls multiplexed by id.
 * It connects on first use and again after a break; when the socket closes,
 * every call still waiting fails with WorkerLostError, at once. With
 * `pingTimeoutMs`, a worker that keeps its socket open but stops answering
 * (stopped, wedged, partitioned) is treated the same way once it has been
 * silent that long, and `onUnresponsive` listeners hear of it.
 */
export class WorkerConnection implements WorkerLink {
  readonly endpoint: WorkerEndpoint;
  readonly #options: WorkerConnectionOptions;
  /** Calls waiting for their answer, by call id (not a Map: see core/call-table.ts). */
  readonly #pending = new CallTable<Pending>(PING_CALL_ID);
  #socket: Socket | undefined;
  #connected: Promise<Socket> | undefined;
  #closed = false;
  readonly #unresponsiveListeners = new Set<(reason: string) => void>();

  constructor(endpoint: WorkerEndpoint, options: WorkerConnectionOptions) {
    this.endpoint = endpoint;
    this.#options = options;
  }

  loadModel(request: LoadModelRequest, timeoutMs = 10 * 60_000): Promise<LoadModelResponse> {
    return this.#call(() => protobufFrame(Method.LoadModel, LoadModelRequestCodec, request), protobufAnswer(LoadModelResponse), Date.now() + timeoutMs);
  }

  unloadModel(modelKey: string, timeoutMs = 5 * 60_000): Promise<void> {
    return this.#call(() => protobufFrame(Method.UnloadModel, UnloadModelRequest, { modelKey }), protobufAnswer(UnloadModelResponse), Date.now() + timeoutMs).then(() => undefined);
  }

  /** Runs a batch (WorkerLink.execute); the connection closing counts as the worker lost. */
  execute(request: ExecuteCall, deadline: number, done?: (lost: boolean) => void, trace?: FrameTrace): Promise<ExecuteAnswer> {
    return this.#call(() => encodeExecuteRequest(Method.Execute, 0, request, trace), executeAnswer, deadline, done);
  }

  status(timeoutMs = 5_000): Promise<StatusResponse> {
    return this.#call(() => protobufFrame(Method.Status, StatusRequest, {}), protobufAnswer(StatusResponse), Date.now() + timeoutMs);
  }

  /**
   * Called (with a reason) each time the liveness check gives up on a socket,
   * after the calls waiting on it have failed with WorkerLostError. Returns
   * the unsubscribe function.
   */
  onUnresponsive(listener: (reason: string) => void): () => void {
    this.#unresponsiveListeners.add(listener);
    return () => this.#unresponsiveListeners.delete(listener);
  }

  close(): void {
    this.#closed = true;
    this.#socket?.destroy();
    this.#failAll(`connection to worker ${this.endpoint.id} was closed`);
  }

  /**
   * Sends the frame `encode` makes (its parts written with the tick's other frames,
   * the call id patched into its header) and decodes the answer's frame.
   */
  async #call<Res>(encode: () => Uint8Array[], decode: (frame: Frame) => Res, deadline: number, done?: (lost: boolean) => void): Promise<Res> {
    let socket: Socket;
    let parts: Uint8Array[];
    try {
      if (this.#closed) throw this.#lost(`connection to worker ${this.endpoint.id} is closed`);
      if (deadline <= Date.now()) {
        throw new ServingError(GrpcStatus.DEADLINE_EXCEEDED, `deadline exceeded before the request was sent to worker ${this.endpoint.id}`);
      }
      parts = encode();
      let bytes = -HEADER_BYTES;
      for (const part of parts) bytes += part.byteLength;
      if (bytes > this.#options.maxMessageBytes) {
        throw new ServingError(GrpcStatus.RESOURCE_EXHAUSTED, `message of ${bytes} bytes for worker ${this.endpoint.id} is over the ${this.#options.maxMessageBytes}-byte limit`);
      }
      socket = this.#socket && !this.#socket.destroyed && this.#connected === undefined ? this.#socket : await this.#connect();
    } catch (error) {
      done?.(isWorkerLost(error));
      throw error;
    }
    let id = 0;
    const answer = new Promise<Frame>((resolve, reject) => {
      const pending: Pending = { callId: 0, resolve, reject, timer: undefined, socket, expired: false, done };
      id = this.#pending.add(pending);
      if (Number.isFinite(deadline)) {
        pending.timer = setTimeout(() => {
          pending.expired = true;
          reject(new ServingError(GrpcStatus.DEADLINE_EXCEEDED, `deadline exceeded while worker ${this.endpoint.id} was running the request`));
        }, Math.max(0, deadline - Date.now()));
      }
    });
    const first = parts[0] as Uint8Array;
    Buffer.from(first.buffer, first.byteOffset, HEADER_BYTES).writeUInt32LE(id, 5);
    writeInTick(socket, parts);
    const frame = await answer;
    try {
      return decode(frame);
    } catch (error) {
      throw new ServingError(GrpcStatus.INTERNAL, `worker ${this.endpoint.id} sent an answer that does not decode: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  #connect(): Promise<Socket> {
    this.#connected ??= new Promise<Socket>((resolve, reject) => {
      const { address } = this.endpoint;
      const onConnect = (): void => {
        clearTimeout(connectTimer);
        socket.off('error', onError);
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 10_000);
        this.#socket = socket;
        this.#connected = undefined;
        liveness?.start();
        resolve(socket);
      };
      const onError = (error: Error): void => {
        clearTimeout(connectTimer);
        this.#connected = undefined;
        reject(this.#lost(`worker ${this.endpoint.id} at ${address} is unreachable: ${error.message}`, error));
      };
      const target = address.startsWith('unix:') ? { path: address.slice('unix:'.length) } : hostPort(address);
      const tls = this.#options.tls;
      const socket: Socket = tls
        ? tlsConnect({ ...tls, ...target, ...sni(target, tls) }, onConnect)
        : netConnect(target, onConnect);
      socket.once('error', onError);
      const liveness = this.#listen(socket);
      // A stopped worker's kernel still accepts TCP, but a TLS handshake (or a
      // SYN to a partitioned host) would hang: with the liveness check on, the
      // connection gets as long as a silent socket does.
      const limit = this.#options.pingTimeoutMs ?? 0;
      const connectTimer =
        limit > 0 ? setTimeout(() => socket.destroy(new Error(`no connection within ${limit} ms`)), limit).unref() : undefined;
    });
    return this.#connected;
  }

  /** Reads the socket's frames; returns its liveness check (started once connected), if any. */
  #listen(socket: Socket): Liveness | undefined {
    const reader = new FrameReader(this.#options.maxMessageBytes);
    const timeoutMs = this.#options.pingTimeoutMs ?? 0;
    const liveness =
      timeoutMs > 0
        ? new Liveness(
            { timeoutMs },
            () => this.#ping(socket),
            (silentMs) => this.#unresponsive(socket, silentMs),
          )
        : undefined;
    socket.on('data', (chunk: Buffer) => {
      liveness?.heard();
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (error) {
        socket.destroy(error instanceof Error ? error : new FrameError(String(error)));
        return;
      }
      for (const frame of frames) {
        if (frame.callId === PING_CALL_ID) continue; // a pong (or an old worker's refusal of PING): heard above
        const pending = this.#pending.take(frame.callId);
        if (!pending) continue;
        if (pending.timer) clearTimeout(pending.timer);
        const error = frame.kind === ERROR ? decodeError(frame.payload) : undefined;
        // A draining worker refuses new work with UNAVAILABLE: it counts as lost, and the work is retried elsewhere.
        const lost = error?.code === GrpcStatus.UNAVAILABLE;
        pending.done?.(lost);
        if (pending.expired) continue; // the caller gave up at its deadline; the answer is dropped
        if (error) {
          pending.reject(lost ? this.#lost(error.message) : new ServingError(error.code, error.message));
        } else if ((frame.kind & RESPONSE) !== 0) {
          pending.resolve(frame);
        } else {
          pending.reject(new ServingError(GrpcStatus.INTERNAL, `worker ${this.endpoint.id} sent an unexpected frame kind ${frame.kind}`));
        }
      }
    });
    socket.on('error', () => {
      // 'close' follows and fails what is pending.
    });
    socket.on('close', () => {
      liveness?.stop();
      if (this.#socket === socket) this.#socket = undefined;
      this.#failAll(`worker ${this.endpoint.id} connection closed before it answered`, socket);
    });
    return liveness;
  }

  #ping(socket: Socket): void {
    if (socket.destroyed || !socket.writable) return;
    const [header, body] = encodeFrame(Method.Ping, PING_CALL_ID, new Uint8Array(0));
    socket.cork();
    socket.write(header);
    socket.write(body);
    socket.uncork();
  }

  /** Nothing came for too long: this socket counts as closed by a lost worker. */
  #unresponsive(socket: Socket, silentMs: number): void {
    const reason = `worker ${this.endpoint.id} is unresponsive: nothing received for ${silentMs} ms (ping timeout ${this.#options.pingTimeoutMs ?? 0} ms)`;
    if (this.#socket === socket) this.#socket = undefined;
    this.#failAll(reason, socket);
    socket.destroy();
    for (const listener of this.#unresponsiveListeners) listener(reason);
  }

  /** Fails the calls waiting on `socket` (all of them without one). */
  #failAll(reason: string, socket?: Socket): void {
    for (const p of this.#pending.entries()) {
      if (socket && p.socket !== socket) continue;
      this.#pending.take(p.callId);
      if (p.timer) clearTimeout(p.timer);
      p.done?.(true);
      if (!p.expired) p.reject(this.#lost(reason));
    }
  }

  #lost(message: string, cause?: unknown): WorkerLostError {
    return new WorkerLostError(GrpcStatus.UNAVAILABLE, message.startsWith('worker') ? message : `worker ${this.endpoint.id}: ${message}`, { cause });
  }
}

/** The server name for a TCP target, unless the options name one (core/tls.ts serverNameFor). */
function sni(target: { host: string } | { path: string }, tls: ConnectionOptions): { servername?: string } {
  if (!('host' in target) || tls.servername !== undefined) return {};
  return serverNameFor(target.host);
}

function hostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(address.slice(i + 1)) };
}
