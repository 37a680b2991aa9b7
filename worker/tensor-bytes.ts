// Tensor bytes between gRPC messages (Buffers) and the ArrayBuffers that travel
// to and from ORT threads in a transfer list.
//
// A transferred ArrayBuffer must belong to this tensor alone and start at
// offset 0 (typed arrays need aligned offsets). An Execute frame's tensor
// that spanned socket chunks was reassembled into a buffer of its own
// (core/worker-frames.ts FrameReader; 4 KiB or more: a whole ArrayBuffer),
// which we adopt instead of copying a second time. Smaller ones live in
// Node's shared 8 KiB Buffer pool, and views of a socket chunk are copied once.

/**
 * An ArrayBuffer holding exactly `bytes`, safe to transfer. When `bytes`
 * spans a whole, unshared ArrayBuffer it is returned as is (the caller gives up
 * `bytes`: transferring detaches it); otherwise the bytes are copied once.
 */
export function takeArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const { buffer } = bytes;
  if (buffer instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === buffer.byteLength) {
    return buffer;
  }
  return copyToArrayBuffer(bytes);
}

/** A fresh ArrayBuffer with a copy of `bytes`. */
export function copyToArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const buffer = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(buffer).set(bytes);
  return buffer;
}

/** A fresh ArrayBuffer holding `parts` one after the other (safe to transfer). */
export function joinToArrayBuffer(parts: readonly Uint8Array[]): ArrayBuffer {
  let bytes = 0;
  for (const part of parts) bytes += part.byteLength;
  const buffer = new ArrayBuffer(bytes);
  const out = new Uint8Array(buffer);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return buffer;
}

/** A Buffer over a (received) ArrayBuffer, without copying. */
export function bufferOf(buffer: ArrayBuffer): Buffer {
  return Buffer.from(buffer, 0, buffer.byteLength);
}
