import { type Tensor } from '../../core/tensor.js';
import { cachedSize, type CachedResponse, toCachedResponse } from './cached-response.js';
import { type ResponseStore } from './response-store.js';

/**
 * Triton's `local` cache: an in-process LRU bounded by bytes. A Map keeps
 * insertion order, so a hit moves its entry to the end and eviction takes
 * from the front. An answer larger than maxEntryBytes is not kept; one
 * that fits evicts the least recently used entries until the total is
 * within sizeBytes again.
 */
export class LocalLru implements ResponseStore {
  readonly kind = 'local';
  readonly #entries = new Map<string, CachedResponse>();
  readonly #sizeBytes: number;
  readonly #maxEntryBytes: number;
  #bytes = 0;
  #evictions = 0;

  constructor(sizeBytes: number, maxEntryBytes: number = sizeBytes) {
    this.#sizeBytes = sizeBytes;
    this.#maxEntryBytes = Math.min(maxEntryBytes, sizeBytes);
  }

  get(key: string): readonly Tensor[] | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, e);
    return e.outputs;
  }

  put(key: string, outputs: readonly Tensor[]): boolean {
    if (cachedSize(key, outputs) > this.#maxEntryBytes) return false;
    const old = this.#entries.get(key);
    if (old) {
      // Two identical requests missed together; the first answer stays.
      return true;
    }
    const entry = toCachedResponse(key, outputs);
    this.#entries.set(key, entry);
    this.#bytes += entry.bytes;
    for (const [k, e] of this.#entries) {
      if (this.#bytes <= this.#sizeBytes) break;
      this.#entries.delete(k);
      this.#bytes -= e.bytes;
      this.#evictions += 1;
    }
    return true;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get entries(): number {
    return this.#entries.size;
  }

  get evictions(): number {
    return this.#evictions;
  }

  close(): Promise<void> {
    this.#entries.clear();
    this.#bytes = 0;
    return Promise.resolve();
  }
}
