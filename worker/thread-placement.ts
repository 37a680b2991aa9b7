import { type DeviceRequest } from './thread-protocol.js';

// Pure decisions of the ORT thread pool (ort-pool.ts): how many threads, and
// which threads a model's instances go to.

/** The most threads one worker's pool grows to (the largest instance count a LoadModel may ask). */
export const MAX_ORT_THREADS = 64;

/**
 * Threads a worker starts with: one per core on CPU (each runs one session at
 * a time, so that many runs go at once); on a GPU, a few (the device does the
 * work; a few threads let runs of different models overlap their host-side
 * parts), at most the cores.
 */
export function defaultThreadCount(device: DeviceRequest, cores: number): number {
  const c = Math.max(1, Math.floor(cores));
  return device.kind === 'gpu' ? Math.min(4, c) : Math.min(MAX_ORT_THREADS, c);
}

/**
 * Threads for `count` instances of one model: distinct threads, least loaded
 * first (fewest sessions; the lower index on a tie, so placement is
 * deterministic). `loads[t]` is thread t's session count. When `count`
 * exceeds the threads (only past MAX_ORT_THREADS; the pool grows before
 * that) the extra instances go round again, least loaded first.
 */
export function placeInstances(loads: readonly number[], count: number): number[] {
  if (loads.length === 0) throw new Error('placeInstances: the pool has no threads');
  const order = loads.map((load, thread) => ({ load, thread })).sort((a, b) => a.load - b.load || a.thread - b.thread);
  return Array.from({ length: count }, (_, i) => (order[i % order.length] as { thread: number }).thread);
}
