import { type BatchOutput, type BatchTask, type SessionInfo, type ThreadInit } from './thread-protocol.js';

// What ModelHost needs of one model instance (one session on one ORT
// thread); ort-pool.ts makes real ones, unit tests substitute fakes.

/**
 * Runs handed to one instance's thread at once: the running one and the next.
 * The next then waits in the thread's own message queue and starts the moment
 * the run before it ends, without a round trip through the worker's main
 * thread (≈80 µs each, measured). The thread still runs them one at a time.
 */
export const THREAD_PIPELINE_DEPTH = 2;

export interface ModelInstance {
  readonly info: SessionInfo;
  /** Runs one batch; the buffers in `transfer` are moved to the thread. */
  run(task: BatchTask, transfer: readonly ArrayBuffer[]): Promise<BatchOutput>;
  /** Frees the session. Call only when no run is in flight. */
  close(): Promise<void>;
}

/**
 * Opens the instances of one model, one promise per init, in order. Each
 * instance goes to a different thread where it can (so that many runs of the
 * model can go at once); a promise rejects with the load error.
 */
export type StartInstances = (inits: readonly ThreadInit[]) => Array<Promise<ModelInstance>>;
