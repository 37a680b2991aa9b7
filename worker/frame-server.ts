import { createServer as netServer, type Server, type Socket } from 'node:net';
import { createServer as tlsServer, type SecureContextOptions, Server as TlsServer, type TlsOptions, TLSSocket } from 'node:tls';
import { status } from '@grpc/grpc-js';
import { type Logger } from 'pino';
import { isServingError } from '../core/errors.js';
import { encodeError, encodeFrame, ERROR, FrameReader, HEADER_BYTES, Method, PING_CALL_ID, RESPONSE } from '../core/worker-frames.js';
import { type WorkerHandler } from './service.js';
import { writeInTick } from '../core/tick-cork.js';

// Serves the worker protocol (core/worker-frames.ts) on a unix socket or a
// TCP port, with TLS when given. Calls on one connection run concurrently and
// are answered as they finish. PING frames are answered at once, here on the
// main thread, ahead of any Execute (whose ONNX Runtime runs are on instance
// threads), so a busy worker still proves it is alive. close() stops
// accepting, lets the calls in flight finish and answer, then closes the
// connections.

const EMPTY = new Uint8Array(0);

/**
 * While a large frame arrives, the worker says it is alive this often (an
 * unsolicited pong): the gateway's PING waits behind that frame on the
 * socket, and a worker reading hundreds of MB on a busy host would
 * otherwise look silent to the gateway's liveness check.
 */
const RECEIVING_PONG_MS = 100;

export interface FrameServerOptions {
  readonly handler: WorkerHandler;
  readonly maxMessageBytes: number;
  readonly logger: Logger;
  /** TLS for remote gateways (requestCert + ca for mTLS). */
  readonly tls?: TlsOptions;
  /** A gateway connection (the id its calls were handed with) closed. */
  readonly onDisconnect?: (connection: number) => void;
}

export class FrameServer {
  readonly #options: FrameServerOptions;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #inFlight = 0;
  #idle: (() => void) | undefined;
  /** Id of the next connection (1, 2, …; 0 is the worker itself in ModelHost). */
  #nextConnection = 1;

  constructor(options: FrameServerOptions) {
    this.#options = options;
    const onConnection = (socket: Socket): void => this.#serve(socket);
    this.#server = options.tls ? tlsServer(options.tls, onConnection) : netServer(onConnection);
    this.#server.on('tlsClientError', (error: Error) => options.logger.warn({ err: error }, 'TLS handshake with a gateway failed'));
  }

  /** Listens on `unix:/path` or `host:port` (port 0: a free one, chosen by the system); resolves with the port (0 for unix). */
  /** New TLS files for the connections from now on (open ones keep theirs); nothing without TLS. */
  setSecureContext(options: SecureContextOptions): void {
    if (this.#server instanceof TlsServer) this.#server.setSecureContext(options);
  }

  listen(address: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      const done = (): void => {
        this.#server.off('error', reject);
        const bound = this.#server.address();
        resolve(typeof bound === 'object' && bound !== null ? bound.port : 0);
      };
      if (address.startsWith('unix:')) this.#server.listen(address.slice('unix:'.length), done);
      else {
        const i = address.lastIndexOf(':');
        this.#server.listen(Number(address.slice(i + 1)), address.slice(0, i).replace(/^\[(.*)\]$/, '$1'), done);
      }
    });
  }

  /** Stops accepting, waits for calls in flight (at most `timeoutMs`), then closes every connection. */
  async close(timeoutMs: number): Promise<boolean> {
    this.#server.close();
    const finished =
      this.#inFlight === 0 ||
      (await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs);
        this.#idle = () => {
          clearTimeout(timer);
          resolve(true);
        };
      }));
    // Flush the last answers before the process may exit: end, wait for the close.
    await Promise.all(
      [...this.#sockets].map(
        (socket) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => socket.destroy(), 2_000);
            socket.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
            socket.end();
          }),
      ),
    );
    return finished;
  }

  #serve(socket: Socket): void {
    const { logger, maxMessageBytes, handler } = this.#options;
    this.#sockets.add(socket);
    const connection = this.#nextConnection++;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    socket.on('close', () => {
      this.#sockets.delete(socket);
      this.#options.onDisconnect?.(connection);
    });
    socket.on('error', (error) => logger.debug({ err: error }, 'gateway connection error'));
    // Which certificate a gateway connected with (one line a connection; a gateway opens one and keeps it).
    if (socket instanceof TLSSocket) {
      const peer = socket.getPeerCertificate();
      logger.info({ connection, subject: peer.subject?.CN, serial: peer.serialNumber, validTo: peer.valid_to }, 'gateway connected (mutual TLS)');
    }
    const reader = new FrameReader(maxMessageBytes);
    let lastPong = 0;
    socket.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = reader.push(chunk);
      } catch (error) {
        logger.warn({ err: error }, 'closing a gateway connection that broke the frame protocol');
        socket.destroy();
        return;
      }
      if (frames.length === 0) {
        // Mid-frame (never on the path of frames that fit in a chunk).
        const now = Date.now();
        if (now - lastPong >= RECEIVING_PONG_MS) {
          lastPong = now;
          this.#write(socket, encodeFrame(RESPONSE | Method.Ping, PING_CALL_ID, EMPTY));
        }
      }
      for (const frame of frames) {
        if (frame.kind === Method.Ping) {
          this.#write(socket, encodeFrame(RESPONSE | Method.Ping, frame.callId, EMPTY));
          continue;
        }
        this.#inFlight++;
        const { callId } = frame;
        handler(frame.kind, frame.payload, frame.segments, connection).then(
          (parts) => this.#answer(socket, callId, parts),
          (error: unknown) => {
            const code = isServingError(error) ? error.code : status.INTERNAL;
            const message = error instanceof Error ? error.message : String(error);
            this.#answer(socket, callId, encodeFrame(ERROR, 0, encodeError(code, message)));
          },
        );
      }
    });
  }

  /** Writes an answer's frame parts (made with call id 0) as the answer to `callId`. */
  #answer(socket: Socket, callId: number, parts: Uint8Array[]): void {
    const limit = this.#options.maxMessageBytes;
    let bytes = -HEADER_BYTES;
    for (const part of parts) bytes += part.byteLength;
    if (bytes > limit) {
      // The gateway would drop the connection over it; say what happened instead.
      parts = encodeFrame(ERROR, 0, encodeError(status.RESOURCE_EXHAUSTED, `the worker's answer of ${bytes} bytes is over the ${limit}-byte message limit`));
    }
    const first = parts[0] as Uint8Array;
    Buffer.from(first.buffer, first.byteOffset, HEADER_BYTES).writeUInt32LE(callId, 5);
    this.#write(socket, parts);
    if (--this.#inFlight === 0) this.#idle?.();
  }

  /** A frame's parts, written with the tick's other answers: tensor bytes go to the socket as they are. */
  #write(socket: Socket, parts: readonly Uint8Array[]): void {
    if (socket.destroyed) return;
    writeInTick(socket, parts);
  }
}
