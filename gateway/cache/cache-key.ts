import { createHash } from 'node:crypto';
import { type Tensor } from '../../core/tensor.js';

// The response cache's key: SHA-256 over everything that decides the answer.
// Every field is framed with its length, so no two different requests can
// frame to the same byte stream; tensor bytes go to the hash where they lie
// (one update per tensor, never concatenated into a new buffer).

/** Bumped when the framing changes, so old Redis entries are never read as new ones. */
const DOMAIN = 'fabriek-response-cache-v1';
/** Lengths and dims, written into one reused buffer (update() copies it into the hash at once). */
const scratch = Buffer.allocUnsafe(8);

type Hash = ReturnType<typeof createHash>;

function u32(h: Hash, n: number): void {
  scratch.writeUInt32LE(n >>> 0, 0);
  h.update(scratch.subarray(0, 4));
}

function f64(h: Hash, n: number): void {
  scratch.writeDoubleLE(n, 0);
  h.update(scratch);
}

function text(h: Hash, s: string): void {
  u32(h, Buffer.byteLength(s));
  h.update(s, 'utf8');
}

export interface CacheKeyParts {
  readonly model: string;
  readonly version: number;
  /** The served config's digest (cachePolicyOf): a reloaded model with another config gets other keys. */
  readonly config: string;
  /** The tenant's name; undefined when the model's answers may be shared across tenants. */
  readonly tenant: string | undefined;
  readonly inputs: readonly Tensor[];
  /** Requested outputs in the order asked (the answer's order); empty = all. */
  readonly outputs: readonly string[];
}

/**
 * The key of one request, base64 of the SHA-256 digest. Inputs are hashed
 * in the order sent: the same inputs in another order only miss, they
 * never hit a wrong entry.
 */
export function responseCacheKey(p: CacheKeyParts): string {
  const h = createHash('sha256');
  text(h, DOMAIN);
  text(h, p.model);
  f64(h, p.version);
  text(h, p.config);
  if (p.tenant === undefined) u32(h, 0);
  else {
    u32(h, 1);
    text(h, p.tenant);
  }
  u32(h, p.inputs.length);
  for (const t of p.inputs) {
    text(h, t.name);
    text(h, t.datatype);
    u32(h, t.shape.length);
    for (const d of t.shape) f64(h, d);
    f64(h, t.data.byteLength);
    h.update(t.data);
  }
  u32(h, p.outputs.length);
  for (const name of p.outputs) text(h, name);
  return h.digest('base64');
}
