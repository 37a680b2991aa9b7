import { type CancelSignal } from '../../core/cancellation.js';
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

/** An answer being computed now, for the identical requests that wait for it; undefined: it failed. */
interface Computing {
  readonly promise: Promise<readonly Tensor[] | undefined>;
  readonly resolve: (outputs: readonly Tensor[] | undefined) => void;
}

function computing(): Computing {
  let resolve!: Computing['resolve'];
  const promise = new Promise<readonly Tensor[] | undefined>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * The response cache of a gateway: which requests may use it (the model's
 * response_cache and tenant sharing), the store behind it, and the answers
 * being computed now, which identical requests that miss wait for instead of
 * computing them again.
 */
export class ResponseCache {
  readonly store: ResponseStore;
  readonly #computing = new Map<string, Computing>();

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
    return new CacheLookup(this.store, key, start, this.#computing);
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
  readonly #computing: Map<string, Computing>;
  /** Set while this request computes the answer identical requests wait for. */
  #leading: Computing | undefined;
  /** Hashing plus the store's get. */
  lookupNs = 0;

  constructor(store: ResponseStore, key: string, start: bigint, computing: Map<string, Computing>) {
    this.#store = store;
    this.key = key;
    this.#start = start;
    this.#computing = computing;
  }

  /**
   * The answer without running the model: the one kept (`coalesced` false),
   * or, after a miss, the one an identical request is computing now, once it
   * has (`coalesced` true; the wait ends with `ended()` when `signal` aborts).
   * Undefined: this request computes the answer, and must `put` it or
   * `abandon` (or the identical one failed: it computes its own).
   */
  async answer(signal: CancelSignal, ended: () => Error): Promise<{ readonly outputs: readonly Tensor[]; readonly coalesced: boolean } | undefined> {
    const kept = await this.get();
    if (kept) return { outputs: kept, coalesced: false };
    const computing = this.joinOrLead();
    if (computing === undefined) return undefined;
    if (signal.aborted) throw ended();
    const outputs = await new Promise<readonly Tensor[] | undefined>((resolve, reject) => {
      const onAbort = (): void => reject(ended());
      signal.addEventListener('abort', onAbort, { once: true });
      void computing.then((o) => {
        signal.removeEventListener('abort', onAbort);
        resolve(o);
      });
    });
    return outputs && { outputs, coalesced: true };
  }

  /**
   * After a miss: the answer an identical request is computing now (undefined
   * when that fails: then compute it yourself), or undefined when none is, and
   * this request computes it: it must then `put` its answer or `abandon`.
   */
  joinOrLead(): Promise<readonly Tensor[] | undefined> | undefined {
    const other = this.#computing.get(this.key);
    if (other) return other.promise;
    this.#leading = computing();
    this.#computing.set(this.key, this.#leading);
    return undefined;
  }

  /** This request will not answer (it failed, or its caller left): those waiting for it compute their own. */
  abandon(): void {
    this.#settle(undefined);
  }

  #settle(outputs: readonly Tensor[] | undefined): void {
    const leading = this.#leading;
    if (!leading) return;
    this.#leading = undefined;
    if (this.#computing.get(this.key) === leading) this.#computing.delete(this.key);
    leading.resolve(outputs);
  }

  /** The cached answer, or undefined on a miss; never throws. */
  async get(): Promise<readonly Tensor[] | undefined> {
    const found = await this.#store.get(this.key);
    this.lookupNs = Number(process.hrtime.bigint() - this.#start);
    return found;
  }

  /** Keeps the answer a miss computed (exactly the outputs returned), counts the miss, and answers those waiting for it. */
  put(outputs: readonly Tensor[], stats: CacheStatistics): void {
    const start = process.hrtime.bigint();
    this.#store.put(this.key, outputs);
    stats.cacheMiss(this.lookupNs + Number(process.hrtime.bigint() - start));
    this.#settle(outputs);
  }
}
