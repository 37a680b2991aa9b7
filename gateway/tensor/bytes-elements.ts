// Helpers for BYTES tensors in raw form: each element is a 4-byte
// little-endian length followed by that many bytes (KServe / Triton).
import { invalidArgument } from '../../core/errors.js';

/** Largest element a 4-byte length prefix can describe. */
const MAX_ELEMENT_BYTES = 0xffff_ffff;

/** Below this, a byte loop beats TypedArray#set (measured). */
const SMALL_ELEMENT_BYTES = 32;

/**
 * Walks the elements of a raw BYTES buffer once and returns how many there
 * are, calling `visit` with each element's [start, end) offsets in `data`.
 * A prefix cut short or running past the end is INVALID_ARGUMENT, never an
 * out-of-bounds read; `where` names the tensor in the message.
 */
export function walkBytesElements(
  data: Uint8Array,
  where: string,
  visit?: (start: number, end: number) => void,
): number {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const end = data.byteLength;
  let offset = 0;
  let count = 0;
  while (offset < end) {
    const left = end - offset;
    if (left < 4) {
      throw invalidArgument(
        `${where}: BYTES element ${count} has a truncated length prefix (${left} of 4 bytes at offset ${offset})`,
      );
    }
    const length = view.getUint32(offset, true);
    offset += 4;
    if (length > end - offset) {
      throw invalidArgument(
        `${where}: BYTES element ${count} declares ${length} bytes but only ${end - offset} remain`,
      );
    }
    visit?.(offset, offset + length);
    offset += length;
    count++;
  }
  return count;
}

/** Number of elements in a raw BYTES buffer, checking that the prefixes exactly cover it. */
export function countBytesElements(data: Uint8Array, where: string): number {
  return walkBytesElements(data, where);
}

/**
 * Splits a raw BYTES buffer into its elements, as Buffer views of `data`
 * (no copy; Buffer so they can go straight into `bytes_contents`).
 */
export function splitBytesElements(data: Uint8Array, where: string): Buffer[] {
  const elements: Buffer[] = [];
  const base = data.byteOffset;
  walkBytesElements(data, where, (start, end) => {
    elements.push(Buffer.from(data.buffer, base + start, end - start));
  });
  return elements;
}

/** Joins elements into raw BYTES form with one allocation. */
export function joinBytesElements(elements: readonly Uint8Array[], where: string): Uint8Array {
  let total = 0;
  let i = 0;
  for (const element of elements) {
    if (element.length > MAX_ELEMENT_BYTES) {
      throw invalidArgument(`${where}: BYTES element ${i} has ${element.length} bytes, more than a 4-byte length can describe`);
    }
    total += 4 + element.length;
    i++;
  }
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let offset = 0;
  for (const element of elements) {
    const length = element.length;
    view.setUint32(offset, length, true);
    offset += 4;
    if (length > SMALL_ELEMENT_BYTES) {
      out.set(element, offset);
    } else {
      // TypedArray#set costs more than a short loop for the typical few-byte string.
      for (let j = 0; j < length; j++) out[offset + j] = element[j] ?? 0;
    }
    offset += length;
  }
  return out;
}
