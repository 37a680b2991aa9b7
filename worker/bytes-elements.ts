import { isUtf8 } from 'node:buffer';

// BYTES tensors in KServe raw form: per element a 4-byte little-endian length,
// then that many bytes. ONNX Runtime's node binding takes and gives string[]
// (UTF-8), so the worker converts at the thread boundary.

const PREFIX = 4;

/**
 * Checks the framing of a length-prefixed BYTES buffer (and that every element
 * is UTF-8, since the node binding cannot carry other bytes). Returns the
 * element count, or a sentence saying what is wrong.
 */
export function checkBytesElements(bytes: Uint8Array): { count: number } | { problem: string } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  let count = 0;
  while (offset < bytes.byteLength) {
    if (offset + PREFIX > bytes.byteLength) {
      return { problem: `element ${count} has a truncated 4-byte length prefix at byte ${offset}` };
    }
    const length = view.getUint32(offset, true);
    const start = offset + PREFIX;
    if (start + length > bytes.byteLength) {
      return { problem: `element ${count} declares ${length} bytes but only ${bytes.byteLength - start} remain` };
    }
    if (!isUtf8(bytes.subarray(start, start + length))) {
      return { problem: `element ${count} is not valid UTF-8 (ONNX Runtime strings are UTF-8)` };
    }
    offset = start + length;
    count++;
  }
  return { count };
}

const decoder = new TextDecoder('utf-8');
const encoder = new TextEncoder();

/** Length-prefixed elements → strings. Framing must have been checked. */
export function decodeBytesElements(buffer: ArrayBuffer): string[] {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  const out: string[] = [];
  let offset = 0;
  while (offset + PREFIX <= bytes.byteLength) {
    const length = view.getUint32(offset, true);
    const start = offset + PREFIX;
    out.push(decoder.decode(bytes.subarray(start, start + length)));
    offset = start + length;
  }
  return out;
}

/** Strings → one fresh ArrayBuffer of length-prefixed UTF-8 elements. */
export function encodeBytesElements(strings: readonly string[]): ArrayBuffer {
  const encoded = strings.map((s) => encoder.encode(s));
  let total = 0;
  for (const e of encoded) total += PREFIX + e.byteLength;
  const buffer = new ArrayBuffer(total);
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  let offset = 0;
  for (const e of encoded) {
    view.setUint32(offset, e.byteLength, true);
    bytes.set(e, offset + PREFIX);
    offset += PREFIX + e.byteLength;
  }
  return buffer;
}
