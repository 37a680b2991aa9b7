import { type Tensor } from '../../core/tensor.js';

/** Where answers are kept: the in-process LRU or Redis. Keys come from responseCacheKey. */
export interface ResponseStore {
  readonly kind: 'local' | 'redis';
  /** The kept outputs, or undefined on a miss (and, for Redis, when Redis fails: serving goes on uncached). */
  get(key: string): readonly Tensor[] | undefined | Promise<readonly Tensor[] | undefined>;
  /** Keeps an answer; returns whether it was taken (false: too large). Never throws. */
  put(key: string, outputs: readonly Tensor[]): boolean;
  /** Bytes held (local) for the metrics; undefined when the store cannot say. */
  readonly bytes: number | undefined;
  close(): Promise<void>;
}
