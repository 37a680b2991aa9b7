import { type ClientHttp2Session, connect, constants } from 'node:http2';
import { status as GrpcStatus } from '@grpc/grpc-js';

// Tenant A's client in the fairness benchmark: gRPC unary calls written
// straight onto node:http2 with a message encoded once. A grpc-js client
// spends about half a millisecond of CPU per call; A shares this machine's
// two cores with the server it attacks, where a real attacker's client would
// be elsewhere, so its own cost should be as small as the protocol allows.
// It reads only the grpc-status of each answer.

export class RawGrpcUnary {
  readonly #address: string;
  #session: ClientHttp2Session;
  /** Sessions the server closed, and this client opened again. */
  reconnects = 0;

  constructor(address: string) {
    this.#address = address;
    this.#session = this.#connect();
  }

  #connect(): ClientHttp2Session {
    // No session memory bound, as grpc-js and the h2 load client: with Node's 10 MB default this client
    // reset its own streams (ENHANCE_YOUR_CALM, reported as UNAVAILABLE) once seventeen 600 KB requests
    // waited to be written.
    const session = connect(`http://${this.#address}`, { maxSessionMemory: Number.MAX_SAFE_INTEGER });
    // A broken session fails its streams, which report UNAVAILABLE below.
    session.on('error', () => undefined);
    return session;
  }

  /** The session, or a new one once the server has closed it (as grpc-js reconnects). */
  #live(): ClientHttp2Session {
    if (this.#session.closed || this.#session.destroyed) {
      this.#session = this.#connect();
      this.reconnects++;
    }
    return this.#session;
  }

  /** Sends one call (`frame` from h2-grpc-infer's grpcFrame) and resolves with the status code of its answer; never rejects. */
  call(path: string, frame: Buffer, metadata: Readonly<Record<string, string>>, timeoutMs: number): Promise<GrpcStatus> {
    return new Promise((resolve) => {
      let code: GrpcStatus | undefined;
      const read = (headers: Record<string, unknown>): void => {
        const s = headers['grpc-status'];
        if (typeof s === 'string') code = Number(s) as GrpcStatus;
      };
      let stream;
      try {
        stream = this.#live().request({
          ':method': 'POST',
          ':path': path,
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': `${Math.max(1, Math.round(timeoutMs))}m`,
          ...metadata,
        });
      } catch {
        resolve(GrpcStatus.UNAVAILABLE);
        return;
      }
      // The call's own deadline, as grpc-js keeps one: a stream the server never ends (its answer sent before the
      // request's body, which then waits on flow control) would otherwise hold its caller forever. noisy-neighbour
      // with --max-inflight-wait-ms hung that way until the harness's watchdog stopped it.
      let late = false;
      const timer = setTimeout(() => {
        late = true;
        stream.close(constants.NGHTTP2_CANCEL);
      }, timeoutMs);
      stream.on('response', read); // a trailers-only answer carries its status here
      stream.on('trailers', read);
      stream.on('error', () => undefined);
      stream.on('close', () => {
        clearTimeout(timer);
        resolve(code ?? (late ? GrpcStatus.DEADLINE_EXCEEDED : GrpcStatus.UNAVAILABLE));
      });
      stream.resume();
      stream.end(frame);
    });
  }

  close(): void {
    this.#session.close();
  }
}
