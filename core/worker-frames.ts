// The wire format between a gateway and its workers: length-prefixed frames
// on one persistent stream socket (unix or TCP, optionally TLS), each holding
// one proto/worker.proto message. Calls are multiplexed by id; a worker may
// answer them in any order. No HTTP/2, no per-call headers: this hop carries
// every batch, and grpc-js cost more CPU per call than the inference of small
// models (see docs/architecture.md, "Internal protocol").
//
//   u32 LE  payload length
//   u8      kind: a Method (request), Method | RESPONSE (answer), ERROR
//   u32 LE  call id (chosen by the caller, echoed in the answer)
//   ...     payload: the protobuf message; for ERROR, u32 LE status code + UTF-8 message
//
// PING (kind 5, call id 0, empty payload) is the gateway's liveness check: the
// worker's frame server answers it at once from its main thread with kind
// PING | RESPONSE, never through the handler, so it does not queue behind
// Execute work. A worker that predates it answers an UNIMPLEMENTED error
// frame, which does as well: every frame proves the worker alive.

export const HEADER_BYTES = 9;

export const Method = {
  LoadModel: 1,
  UnloadModel: 2,
  Execute: 3,
  Status: 4,
  /** Liveness check; answered by the frame server itself (see above). */
  Ping: 5,
} as const;
export type Method = (typeof Method)[keyof typeof Method];

export const RESPONSE = 0x80;
export const ERROR = 0xff;
/** Call id of PING frames and their answers (calls are numbered from 1). */
export const PING_CALL_ID = 0;

export interface Frame {
  readonly kind: number;
  readonly callId: number;
  readonly payload: Uint8Array;
}

export class FrameError extends Error {
  override name = 'FrameError';
}

/** Header and payload as separate buffers, for a corked (vectored) write. */
export function encodeFrame(kind: number, callId: number, payload: Uint8Array): [Buffer, Uint8Array] {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  header.writeUInt32LE(payload.byteLength, 0);
  header.writeUInt8(kind, 4);
  header.writeUInt32LE(callId, 5);
  return [header, payload];
}

export function encodeError(code: number, message: string): Uint8Array {
  const text = Buffer.from(message, 'utf8');
  const out = Buffer.allocUnsafe(4 + text.byteLength);
  out.writeUInt32LE(code, 0);
  text.copy(out, 4);
  return out;
}

export function decodeError(payload: Uint8Array): { code: number; message: string } {
  if (payload.byteLength < 4) throw new FrameError('error frame shorter than its status code');
  const view = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  return { code: view.readUInt32LE(0), message: view.toString('utf8', 4) };
}

/**
 * Reassembles frames from stream chunks. A payload inside one chunk is a view
 * of it (no copy); one spread over chunks is copied together once.
 */
export class FrameReader {
  readonly #maxPayload: number;
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(maxPayloadBytes: number) {
    this.#maxPayload = maxPayloadBytes;
  }

  /** Adds a chunk; returns the frames it completes. Throws FrameError on a frame over the limit. */
  push(chunk: Buffer): Frame[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.byteLength;
    const frames: Frame[] = [];
    for (;;) {
      if (this.#buffered < HEADER_BYTES) break;
      const head = this.#peek(HEADER_BYTES);
      const length = head.readUInt32LE(0);
      if (length > this.#maxPayload) throw new FrameError(`frame of ${length} bytes is over the ${this.#maxPayload}-byte message limit`);
      if (this.#buffered < HEADER_BYTES + length) break;
      const whole = this.#take(HEADER_BYTES + length);
      frames.push({ kind: whole.readUInt8(4), callId: whole.readUInt32LE(5), payload: whole.subarray(HEADER_BYTES) });
    }
    return frames;
  }

  /** The first `n` buffered bytes (merging chunks only when the first is shorter). */
  #peek(n: number): Buffer {
    const first = this.#chunks[0] as Buffer;
    if (first.byteLength >= n) return first;
    const merged = Buffer.concat(this.#chunks);
    this.#chunks = [merged];
    return merged;
  }

  #take(n: number): Buffer {
    let first = this.#chunks[0] as Buffer;
    if (first.byteLength < n) {
      first = Buffer.concat(this.#chunks, this.#buffered);
      this.#chunks = [first];
    }
    const out = first.subarray(0, n);
    if (first.byteLength === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#buffered -= n;
    return out;
  }
}
