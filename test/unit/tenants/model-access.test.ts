import { describe, expect, it } from 'vitest';
import { globToRegExp, ModelAccess } from '../../../gateway/tenants/model-access.js';

describe('model access globs', () => {
  it('* matches any run (also none), ? exactly one character, everything else literally', () => {
    const access = new ModelAccess(['mlp*', 'identity_fp??', 'resnet.v1', 'a+b']);
    expect(access.allows('mlp')).toBe(true);
    expect(access.allows('mlp_large')).toBe(true);
    expect(access.allows('xmlp')).toBe(false);
    expect(access.allows('identity_fp32')).toBe(true);
    expect(access.allows('identity_fp3')).toBe(false);
    expect(access.allows('identity_fp321')).toBe(false);
    expect(access.allows('resnet.v1')).toBe(true);
    expect(access.allows('resnetXv1')).toBe(false);
    expect(access.allows('a+b')).toBe(true);
    expect(access.allows('aab')).toBe(false);
  });

  it('"*" allows every model; a glob spans characters a hostile name may hold', () => {
    expect(ModelAccess.everything.allows('anything at all')).toBe(true);
    expect(new ModelAccess(['a*z']).allows('a\nz')).toBe(true);
    expect(new ModelAccess(['a*']).allows('b\na')).toBe(false);
    expect(new ModelAccess(['[ab]']).allows('a')).toBe(false);
    expect(new ModelAccess(['[ab]']).allows('[ab]')).toBe(true);
  });

  it('refuses an empty pattern', () => {
    expect(() => globToRegExp('')).toThrow(RangeError);
  });
});
