// JSON from clients (REST bodies, load configs). JSON.parse takes nesting of
// any depth, but everything that walks the value afterwards (flattening
// `data`, JSON.stringify in messages, config field paths) recurses and
// overflows the stack on a request of 100,000 `[`. So the depth is checked
// once, here, without recursion; and bytes that are not UTF-8 are refused
// rather than silently turned into U+FFFD inside BYTES tensors.
import { isUtf8 } from 'node:buffer';
import { invalidArgument } from '../core/errors.js';

/**
 * Deepest nesting of arrays and objects accepted. An infer request needs
 * three levels (request, inputs, input) plus its nested `data`, as deep as
 * the tensor's rank; no real model comes near a rank of 90.
 */
export const MAX_JSON_DEPTH = 100;

/**
 * Parses client JSON; `what` names it in messages ("the request JSON").
 * Throws INVALID_ARGUMENT for bytes that are not UTF-8, text that is not
 * JSON, or nesting deeper than MAX_JSON_DEPTH.
 */
export function parseClientJson(source: Uint8Array | string, what: string): unknown {
  if (typeof source !== 'string' && !isUtf8(source)) throw invalidArgument(`${what} is not valid UTF-8`);
  let value: unknown;
  try {
    value = JSON.parse(typeof source === 'string' ? source : Buffer.from(source.buffer, source.byteOffset, source.byteLength).toString('utf8'));
  } catch (error) {
    throw invalidArgument(`failed to parse ${what}: ${error instanceof Error ? error.message : String(error)}`);
  }
  checkJsonDepth(value, what);
  return value;
}

/** Throws INVALID_ARGUMENT when a parsed value nests deeper than MAX_JSON_DEPTH. */
export function checkJsonDepth(value: unknown, what: string): void {
  if (nestingExceeds(value, MAX_JSON_DEPTH)) throw invalidArgument(`${what} nests deeper than ${MAX_JSON_DEPTH} levels`);
}

/** Whether arrays and objects nest deeper than `max`; an explicit stack, and only containers are pushed. */
function nestingExceeds(root: unknown, max: number): boolean {
  const values: unknown[] = [root];
  const depths: number[] = [1];
  for (;;) {
    const value = values.pop();
    const depth = depths.pop();
    if (depth === undefined) return false;
    if (typeof value !== 'object' || value === null) continue;
    if (depth > max) return true;
    const children = Array.isArray(value) ? (value as unknown[]) : Object.values(value);
    for (const child of children) {
      if (typeof child === 'object' && child !== null) {
        values.push(child);
        depths.push(depth + 1);
      }
    }
  }
}
