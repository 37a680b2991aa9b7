// The wire format between a gateway and its workers: length-prefixed frames
// on one persistent stream socket (unix or TCP, optionally TLS), each holding
// one message. Calls are multiplexed by id; a worker may
// answer them in any order. No HTTP/2, no per-call headers: this hop carries
// every batch, and grpc-js cost more CPU per call than the inference of small
// models (see docs/architecture.md, "Internal protocol").
//
//   u32 LE  payload length
//   u8      kind: a Method (request), Method | RESPONSE (answer), ERROR;
//           | SEGMENTED (0x40) when the payload is in segments (below)
//   u32 LE  call id (chosen by the caller, echoed in the answer)
//   ...     payload: a proto/worker.proto message (LoadModel, UnloadModel,
//           Status); for ERROR, u32 LE status code + UTF-8 message
//
// Execute requests and answers are SEGMENTED frames (core/execute-frame.ts):
//   u32 LE  segment count n (the head and one per tensor)
//   n × u32 LE  segment lengths
//   ...     the head (model key, tensor names, datatypes and shapes), then
//           each tensor's raw bytes, never re-encoded: the writer hands them
//           to a corked socket as they are, the reader gives each its own
//           buffer (or a view of the chunk it came in).
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

/**
 * Kind bit of a segmented frame: its payload is a u32 LE segment count n,
 * n u32 LE segment lengths, then the segments. The first segment is the
 * message head; each other one holds the raw bytes of one tensor, so the
 * reader can give every tensor its own buffer (see FrameReader). ERROR
 * frames are never segmented (ERROR has every bit set).
 */
export const SEGMENTED = 0x40;

export function isSegmented(kind: number): boolean {
  return kind !== ERROR && (kind & SEGMENTED) !== 0;
}

export interface Frame {
  /** The kind without the SEGMENTED bit. */
  readonly kind: number;
  readonly callId: number;
  /** The payload; of a segmented frame, its first segment (the head). */
  readonly payload: Uint8Array;
  /** A segmented frame's other segments, in order; empty for a plain one. */
  readonly segments: readonly Uint8Array[];
}

const NO_SEGMENTS: readonly Uint8Array[] = [];

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

/** Bytes before the head of a segmented frame of `segmentCount` segments (head included): frame header, count, lengths. */
export function segmentedPrefixBytes(segmentCount: number): number {
  return HEADER_BYTES + 4 + 4 * segmentCount;
}

/**
 * Writes the prefix of a segmented frame into `out` at 0 (it needs
 * segmentedPrefixBytes(1 + segmentLengths.length) bytes), for a head of
 * `headBytes` bytes and segments of the given lengths; returns the payload
 * length.
 */
export function writeSegmentedPrefix(out: Buffer, kind: number, callId: number, headBytes: number, segmentLengths: readonly number[]): number {
  let length = 4 + 4 * (1 + segmentLengths.length) + headBytes;
  for (const n of segmentLengths) length += n;
  out.writeUInt32LE(length, 0);
  out.writeUInt8(kind | SEGMENTED, 4);
  out.writeUInt32LE(callId, 5);
  out.writeUInt32LE(1 + segmentLengths.length, HEADER_BYTES);
  out.writeUInt32LE(headBytes, HEADER_BYTES + 4);
  let at = HEADER_BYTES + 8;
  for (const n of segmentLengths) {
    out.writeUInt32LE(n, at);
    at += 4;
  }
  return length;
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

const enum ReadState {
  Header,
  Payload,
  SegmentCount,
  SegmentTable,
  Segment,
}

/** Most segments one frame may have (a head and the tensors of one execution). */
export const MAX_SEGMENTS = 1 << 16;

/**
 * Reassembles frames from stream chunks, each payload (and each segment of a
 * segmented frame) with at most one copy and never by repeated
 * concatenation: a piece inside one chunk is a view of it; a piece spread
 * over chunks gets its own buffer of its exact size, allocated once its
 * length is known and filled as the chunks arrive. So a 256 MB tensor is not
 * held twice, and a piece of 4 KiB or more owns its whole ArrayBuffer, which
 * a worker can hand to an ORT thread as it is. Lengths are checked against
 * the limit from the frame header, before any payload is buffered.
 */
export class FrameReader {
  readonly #maxPayload: number;
  #state = ReadState.Header;
  /** The piece being filled across chunks; undefined while none is. */
  #partial: Buffer | undefined;
  #filled = 0;
  // The frame being read.
  #kind = 0;
  #callId = 0;
  #length = 0;
  #segmentLengths: number[] = [];
  #segments: Uint8Array[] = [];

  constructor(maxPayloadBytes: number) {
    this.#maxPayload = maxPayloadBytes;
  }

  /** Adds a chunk; returns the frames it completes. Throws FrameError on a frame over the limit or a bad segment table. */
  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let at = 0;
    for (;;) {
      const size = this.#wanted();
      let piece: Uint8Array;
      if (this.#partial === undefined) {
        if (chunk.byteLength - at >= size) {
          piece = chunk.subarray(at, at + size);
          at += size;
        } else {
          if (at === chunk.byteLength) break;
          // Small pieces come from Node's pool; large ones own their ArrayBuffer.
          this.#partial = size < 4096 ? Buffer.allocUnsafe(size) : Buffer.allocUnsafeSlow(size);
          this.#filled = 0;
          continue;
        }
      } else {
        const n = Math.min(size - this.#filled, chunk.byteLength - at);
        chunk.copy(this.#partial, this.#filled, at, at + n);
        this.#filled += n;
        at += n;
        if (this.#filled < size) break;
        piece = this.#partial;
        this.#partial = undefined;
      }
      const frame = this.#took(piece);
      if (frame !== undefined) frames.push(frame);
    }
    return frames;
  }

  /** Bytes of the next piece in the current state. */
  #wanted(): number {
    switch (this.#state) {
      case ReadState.Header:
        return HEADER_BYTES;
      case ReadState.Payload:
        return this.#length;
      case ReadState.SegmentCount:
        return 4;
      case ReadState.SegmentTable:
        return 4 * this.#segmentLengths.length;
      case ReadState.Segment:
        return this.#segmentLengths[this.#segments.length] as number;
    }
  }

  /** Takes the piece the current state wanted; returns the frame it completes, if any. */
  #took(piece: Uint8Array): Frame | undefined {
    const view = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    switch (this.#state) {
      case ReadState.Header: {
        this.#length = view.readUInt32LE(0);
        this.#kind = view.readUInt8(4);
        this.#callId = view.readUInt32LE(5);
        if (this.#length > this.#maxPayload) throw new FrameError(`frame of ${this.#length} bytes is over the ${this.#maxPayload}-byte message limit`);
        if (isSegmented(this.#kind)) {
          if (this.#length < 4) throw new FrameError(`segmented frame of ${this.#length} bytes is shorter than its segment count`);
          this.#state = ReadState.SegmentCount;
        } else {
          this.#state = ReadState.Payload;
        }
        return undefined;
      }
      case ReadState.Payload:
        this.#state = ReadState.Header;
        return { kind: this.#kind, callId: this.#callId, payload: piece, segments: NO_SEGMENTS };
      case ReadState.SegmentCount: {
        const n = view.readUInt32LE(0);
        if (n < 1 || n > MAX_SEGMENTS || 4 + 4 * n > this.#length) {
          throw new FrameError(`segmented frame of ${this.#length} bytes says it has ${n} segments (expected 1 to ${MAX_SEGMENTS}, with room for their lengths)`);
        }
        this.#segmentLengths = new Array<number>(n).fill(0);
        this.#state = ReadState.SegmentTable;
        return undefined;
      }
      case ReadState.SegmentTable: {
        let sum = 4 + piece.byteLength;
        for (let i = 0; i < this.#segmentLengths.length; i++) {
          const length = view.readUInt32LE(4 * i);
          this.#segmentLengths[i] = length;
          sum += length;
        }
        if (sum !== this.#length) throw new FrameError(`segmented frame of ${this.#length} bytes has segments of ${sum} bytes in all`);
        this.#segments = [];
        this.#state = ReadState.Segment;
        return undefined;
      }
      case ReadState.Segment: {
        this.#segments.push(piece);
        if (this.#segments.length < this.#segmentLengths.length) return undefined;
        const [head, ...segments] = this.#segments as [Uint8Array, ...Uint8Array[]];
        this.#segments = [];
        this.#state = ReadState.Header;
        return { kind: this.#kind & ~SEGMENTED, callId: this.#callId, payload: head, segments };
      }
    }
  }
}
