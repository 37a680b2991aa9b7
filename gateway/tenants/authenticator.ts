import { createHash, timingSafeEqual } from 'node:crypto';
import { unauthenticated } from '../../core/errors.js';
import { type Tenant } from './tenant.js';
import { type TenantsConfig } from './tenants-file.js';

/** Longer values are refused before hashing: no key is that long, and hashing them costs. */
const MAX_KEY_LENGTH = 1024;

/** The key of an `authorization: Bearer KEY` value; undefined when absent or of another scheme. */
export function bearerKey(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(authorization);
  return m?.[1];
}

/**
 * API key → tenant. The presented key is hashed and its digest looked up
 * among the stored digests, then compared in constant time: how long the
 * lookup takes depends on the digest, which a caller cannot steer towards a
 * stored one, never on how much of a key was right.
 */
export class Authenticator {
  #byDigest: ReadonlyMap<string, { digest: Buffer; tenant: Tenant }>;

  constructor(config: TenantsConfig) {
    this.#byDigest = digests(config);
  }

  /** Takes a reloaded tenants file: every call from now on sees the new keys, models, quotas and weights. */
  replace(config: TenantsConfig): void {
    this.#byDigest = digests(config);
  }

  /** The tenant of an `authorization` header value; UNAUTHENTICATED when there is none or it is not known. */
  authenticate(authorization: string | undefined): Tenant {
    const key = bearerKey(authorization);
    if (key === undefined) {
      throw unauthenticated(
        authorization === undefined ? "no API key: send the header 'authorization: Bearer KEY'" : "malformed authorization: expected 'Bearer KEY'",
      );
    }
    if (key.length > MAX_KEY_LENGTH) throw unauthenticated('unknown API key');
    const digest = createHash('sha256').update(key, 'utf8').digest();
    const found = this.#byDigest.get(digest.toString('hex'));
    if (!found || !timingSafeEqual(found.digest, digest)) throw unauthenticated('unknown API key');
    return found.tenant;
  }
}

function digests(config: TenantsConfig): Map<string, { digest: Buffer; tenant: Tenant }> {
  const byName = new Map(config.tenants.map((t) => [t.name, t]));
  const byDigest = new Map<string, { digest: Buffer; tenant: Tenant }>();
  for (const [hash, name] of config.keyHashes) {
    const tenant = byName.get(name);
    if (!tenant) throw new Error(`key hash for unknown tenant '${name}'`);
    const hex = hash.slice(hash.indexOf(':') + 1);
    byDigest.set(hex, { digest: Buffer.from(hex, 'hex'), tenant });
  }
  return byDigest;
}
