import { type Tensor } from '../../core/tensor.js';
import { type ModelConfig } from '../../proto/gen/model_config.js';
import { cachePolicyOf } from './cache-policy.js';
import { responseCacheKey } from './cache-key.js';
import { type ResponseStore } from './response-store.js';

/** What the cache tells the version's statistics (Triton's cache_hit / cache_miss). */
export interface CacheStatistics {
  /** A miss, with the time spent looking up and inserting. */
  cacheMiss(ns: number): void;
}

/** The parts of a request the key is made of. */
export interface CacheableRequest {
  readonly inputs: readonly Tensor[];
  readonly outputs: readonly string[];
}

/**
 * The response cache of a gateway: which requests may use it (the model's
 * response_cache and tenant sharing), and the store behind it.
 */
export class ResponseCache {
  readonly store: ResponseStore;

  constructor(store: ResponseStore) {
    this.store = store;
  }

  /** The lookup for one request, or undefined when its model does not cache. */
  lookupFor(model: string, version: number, config: ModelConfig, request: CacheableRequest, tenant: string): CacheLookup | undefined {
    const policy = cachePolicyOf(config);
    if (!policy.enabled) return undefined;
    const start = process.hrtime.bigint();
    const key = responseCacheKey({
      model,
      version,
      config: policy.configDigest,
      tenant: policy.sharedAcrossTenants ? undefined : tenant,
      inputs: request.inputs,
      outputs: request.outputs,
    });
    return new CacheLookup(this.store, key, start);
  }

  close(): Promise<void> {
    return this.store.close();
  }
}

/** One request's use of the cache: a get, then (on a miss) a put of its answer. */
export class CacheLookup {
  readonly #store: ResponseStore;
  readonly key: string;
  readonly #start: bigint;
  /** Hashing plus the store's get. */
  lookupNs = 0;

  constructor(store: ResponseStore, key: string, start: bigint) {
    this.#store = store;
    this.key = key;
    this.#start = start;
  }

  /** The cached answer, or undefined on a miss; never throws. */
  async get(): Promise<readonly Tensor[] | undefined> {
    const found = await this.#store.get(this.key);
    this.lookupNs = Number(process.hrtime.bigint() - this.#start);
    return found;
  }

  /** Keeps the answer a miss computed (exactly the outputs returned) and counts the miss. */
  put(outputs: readonly Tensor[], stats: CacheStatistics): void {
    const start = process.hrtime.bigint();
    this.#store.put(this.key, outputs);
    stats.cacheMiss(this.lookupNs + Number(process.hrtime.bigint() - start));
  }
}
