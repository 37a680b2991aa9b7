import { Counter, Gauge, type Registry } from 'prom-client';

/** The store behind the response cache, as the metrics see it. */
export interface CacheStoreView {
  readonly kind: 'local' | 'redis';
  /** Bytes held; undefined when the store cannot say (Redis). */
  readonly bytes: number | undefined;
}

/**
 * Fabriek's response-cache metrics beside Triton's per-model nv_cache_*
 * counters: store failures (Redis unreachable, unreadable entries; the
 * request then ran uncached) and the local cache's bytes. Returns the
 * function the store calls on a failure.
 */
export function registerCacheMetrics(registry: Registry, store: () => CacheStoreView | undefined): (op: 'get' | 'put') => void {
  const registers = [registry];
  const errors = new Counter({
    name: 'fabriek_response_cache_errors_total',
    help: 'Response cache operations that failed (the request was served uncached), by cache and operation',
    labelNames: ['cache', 'op'],
    registers,
  });
  new Gauge({
    name: 'fabriek_response_cache_bytes',
    help: 'Bytes held by the local response cache (tensor bytes and bookkeeping)',
    registers,
    collect() {
      const s = store();
      if (s?.bytes !== undefined) this.set(s.bytes);
    },
  });
  let kind: 'local' | 'redis' | undefined;
  return (op) => {
    kind ??= store()?.kind;
    errors.inc({ cache: kind ?? 'unknown', op });
  };
}
