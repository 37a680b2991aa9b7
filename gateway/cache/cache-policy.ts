import { createHash } from 'node:crypto';
import { ModelConfig } from '../../proto/gen/model_config.js';

/** The model-config parameter that lets every tenant share one model's cached answers. */
export const SHARED_ACROSS_TENANTS = 'cache_shared_across_tenants';

/** How one model version uses the response cache, read from its config. */
export interface CachePolicy {
  /** `response_cache { enable: true }`. */
  readonly enabled: boolean;
  /**
   * `parameters { key: "cache_shared_across_tenants" value { string_value: "true" } }`:
   * one tenant's cached answer may be served to another. Off by default:
   * a hit on another tenant's entry would tell one caller what another sent.
   */
  readonly sharedAcrossTenants: boolean;
  /**
   * SHA-256 of the served config: part of the key, so a model loaded again
   * with another config (an override, changed outputs) never meets the
   * answers of the old one. Equal on every gateway serving the same config.
   */
  readonly configDigest: string;
}

const NONE: CachePolicy = { enabled: false, sharedAcrossTenants: false, configDigest: '' };
// Configs are immutable once a version is loaded: the policy is read once per config, not per request.
const policies = new WeakMap<ModelConfig, CachePolicy>();

export function cachePolicyOf(config: ModelConfig): CachePolicy {
  let p = policies.get(config);
  if (!p) {
    p = config.responseCache?.enable
      ? {
          enabled: true,
          sharedAcrossTenants: config.parameters[SHARED_ACROSS_TENANTS]?.stringValue.trim().toLowerCase() === 'true',
          configDigest: createHash('sha256').update(ModelConfig.encode(config).finish()).digest('base64'),
        }
      : NONE;
    policies.set(config, p);
  }
  return p;
}
