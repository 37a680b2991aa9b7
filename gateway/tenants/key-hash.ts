import { createHash } from 'node:crypto';

// API keys are stored as SHA-256 hashes, never in clear. An API key is a
// long random secret, not a password: a fast unsalted hash is what lets a
// presented key be found in a Map, and brute force of 128+ random bits is
// not a concern.

export const KEY_HASH_PREFIX = 'sha256:';
export const KEY_HASH_PATTERN = /^sha256:[0-9a-f]{64}$/;

/** `sha256:<hex>` of a key, as written in the tenants file (`fabriek tenants hash-key KEY`). */
export function hashKey(key: string): string {
  return KEY_HASH_PREFIX + createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A fresh random API key (32 bytes, base64url). */
export function newKey(random: (n: number) => Buffer): string {
  return `fbk_${random(32).toString('base64url')}`;
}
