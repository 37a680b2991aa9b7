import { describe, expect, it } from 'vitest';
import { cachePolicyOf } from '../../../gateway/cache/cache-policy.js';
import { parseModelConfig } from '../../../models/config/model-config.js';

const config = (text: string) => parseModelConfig(text, 'models/m/config.pbtxt').config;
const SHARED = 'parameters { key: "cache_shared_across_tenants" value { string_value: "true" } }';

describe('cachePolicyOf', () => {
  it('is off without response_cache or with enable: false', () => {
    expect(cachePolicyOf(config('name: "m"')).enabled).toBe(false);
    expect(cachePolicyOf(config('response_cache { enable: false }')).enabled).toBe(false);
  });

  it('is per tenant unless the parameter says "true"', () => {
    expect(cachePolicyOf(config('response_cache { enable: true }'))).toMatchObject({ enabled: true, sharedAcrossTenants: false });
    expect(cachePolicyOf(config(`response_cache { enable: true } ${SHARED}`))).toMatchObject({ enabled: true, sharedAcrossTenants: true });
    const other = 'parameters { key: "cache_shared_across_tenants" value { string_value: "yes" } }';
    expect(cachePolicyOf(config(`response_cache { enable: true } ${other}`)).sharedAcrossTenants).toBe(false);
  });

  it('digests the config: equal for equal configs, different when anything changes', () => {
    const a = cachePolicyOf(config('response_cache { enable: true } max_batch_size: 4')).configDigest;
    expect(cachePolicyOf(config('response_cache { enable: true } max_batch_size: 4')).configDigest).toBe(a);
    expect(cachePolicyOf(config('response_cache { enable: true } max_batch_size: 8')).configDigest).not.toBe(a);
    expect(a).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  });
});
