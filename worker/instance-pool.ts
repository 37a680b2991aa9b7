import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { type BatchOutput, type BatchTask, type SessionInfo, type ThreadInit } from './thread-protocol.js';

// One model instance = one piscina pool with exactly one thread that owns one
// InferenceSession for its whole life. A pool per instance (rather than one
// pool for all) pins each session to its thread: piscina would otherwise hand
// a task to whichever thread is free, and that thread may not hold the model.

const THREAD_FILE = fileURLToPath(new URL('./ort-thread.js', import.meta.url));

/**
 * Runs handed to one instance's thread at once: the running one and the next.
 * The next then waits in the thread's own message queue and starts the moment
 * the run before it ends, without a round trip through the worker's main
 * thread (≈80 µs each, measured). The thread still runs them one at a time.
 */
export const THREAD_PIPELINE_DEPTH = 2;

/** What ModelHost needs of an instance; tests substitute a fake. */
export interface ModelInstance {
  readonly info: SessionInfo;
  /** Runs one batch; the buffers in `transfer` are moved to the thread. */
  run(task: BatchTask, transfer: readonly ArrayBuffer[]): Promise<BatchOutput>;
  /** Frees the session and ends the thread. Call only when no run is in flight. */
  close(): Promise<void>;
}

export type StartInstance = (init: ThreadInit) => Promise<ModelInstance>;

export class InstancePool implements ModelInstance {
  readonly info: SessionInfo;
  readonly #pool: Piscina<BatchTask | null, unknown>;

  private constructor(pool: Piscina<BatchTask | null, unknown>, info: SessionInfo) {
    this.#pool = pool;
    this.info = info;
  }

  /**
   * Starts the thread and waits until its session is open. Rejects with the
   * load error (the pool is destroyed then). `onThreadError` hears errors of
   * the thread outside any task (they would otherwise crash the process).
   */
  static async start(init: ThreadInit, onThreadError: (error: unknown) => void): Promise<InstancePool> {
    const pool = new Piscina<BatchTask | null, unknown>({
      filename: THREAD_FILE,
      workerData: init,
      minThreads: 1,
      maxThreads: 1,
      concurrentTasksPerWorker: THREAD_PIPELINE_DEPTH,
      // The thread holds the session: it must never be reaped for idleness.
      idleTimeout: Number.POSITIVE_INFINITY,
    });
    pool.on('error', onThreadError);
    try {
      const info = (await pool.run(null, { name: 'info' })) as SessionInfo;
      return new InstancePool(pool, info);
    } catch (error) {
      await pool.destroy();
      throw error;
    }
  }

  // Never pass an AbortSignal here: aborting a piscina task terminates the
  // thread and with it the loaded session. Cancellation happens before dispatch.
  async run(task: BatchTask, transfer: readonly ArrayBuffer[]): Promise<BatchOutput> {
    return (await this.#pool.run(task, { name: 'run', transferList: [...transfer] })) as BatchOutput;
  }

  async close(): Promise<void> {
    // Release explicitly so native memory is freed even if thread teardown is slow.
    await this.#pool.run(null, { name: 'release' }).catch(() => undefined);
    await this.#pool.destroy();
  }
}
