/** Time as the batcher sees it; injected so tests are deterministic. */
export interface Clock {
  /** Monotonic ns. */
  now(): bigint;
  /** Wall clock, ms since the epoch: the unit of `InferJob.deadline`. */
  epochMs(): number;
  /** Calls `fn` once after `ms`; returns a cancel function. */
  setTimeout(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => process.hrtime.bigint(),
  epochMs: () => Date.now(),
  setTimeout(fn, ms) {
    // Node fires longer delays at once; waking early is harmless (the batcher re-arms).
    const t = setTimeout(fn, Math.min(ms, 2 ** 31 - 1));
    // Queued requests belong to open calls, which keep the process alive; the timer need not.
    t.unref();
    return () => clearTimeout(t);
  },
};
