import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ServingError } from '../../../core/errors.js';
import { Authenticator, bearerKey } from '../../../gateway/tenants/authenticator.js';
import { hashKey } from '../../../gateway/tenants/key-hash.js';
import { parseTenants } from '../../../gateway/tenants/tenants-file.js';

const config = parseTenants(
  {
    tenants: {
      alpha: { keys: [hashKey('alpha-1'), hashKey('alpha-2')], models: ['*'] },
      beta: { keys: [hashKey('beta-1')], models: ['mlp'] },
    },
  },
  'tenants.yaml',
);

function refusal(f: () => unknown): string {
  try {
    f();
  } catch (error) {
    expect(error).toBeInstanceOf(ServingError);
    expect((error as ServingError).code).toBe(status.UNAUTHENTICATED);
    return (error as Error).message;
  }
  throw new Error('expected UNAUTHENTICATED');
}

describe('API keys', () => {
  const auth = new Authenticator(config);

  it('finds the tenant of every key it was given, by hash', () => {
    expect(auth.authenticate('Bearer alpha-1').name).toBe('alpha');
    expect(auth.authenticate('Bearer alpha-2').name).toBe('alpha');
    expect(auth.authenticate('bearer beta-1').name).toBe('beta');
    expect(auth.authenticate('  BEARER   beta-1 ').name).toBe('beta');
  });

  it('answers UNAUTHENTICATED for no key, another scheme, an unknown key, a near miss or an absurdly long one', () => {
    expect(refusal(() => auth.authenticate(undefined))).toBe("no API key: send the header 'authorization: Bearer KEY'");
    expect(refusal(() => auth.authenticate('Basic YWxwaGEtMQ=='))).toBe("malformed authorization: expected 'Bearer KEY'");
    expect(refusal(() => auth.authenticate('Bearer'))).toBe("malformed authorization: expected 'Bearer KEY'");
    expect(refusal(() => auth.authenticate('Bearer alpha-3'))).toBe('unknown API key');
    expect(refusal(() => auth.authenticate('Bearer alpha-1 extra'))).toBe("malformed authorization: expected 'Bearer KEY'");
    expect(refusal(() => auth.authenticate(`Bearer ${'x'.repeat(100_000)}`))).toBe('unknown API key');
    // The hash, not the key, is what is stored: the hash itself is no key.
    expect(refusal(() => auth.authenticate(`Bearer ${hashKey('alpha-1')}`))).toBe('unknown API key');
  });

  it('parses Bearer values', () => {
    expect(bearerKey('Bearer abc')).toBe('abc');
    expect(bearerKey(undefined)).toBeUndefined();
    expect(bearerKey('Token abc')).toBeUndefined();
  });
});
