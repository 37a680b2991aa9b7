import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { resourceExhausted } from '../core/errors.js';
import { type ModelInstance } from './model-instance.js';
import { fileVersion, INLINE_MAX_MODEL_BYTES, type InlineOutcome, MovableInstance } from './inline-runs.js';
import { MAX_ORT_THREADS, placeInstances } from './thread-placement.js';
import {
  type BatchOutput,
  type BatchTask,
  isThreadFailure,
  type SessionInfo,
  type ThreadInit,
  type ThreadReply,
  type ThreadRequest,
} from './thread-protocol.js';

// A fixed pool of ONNX Runtime threads per worker process; each thread hosts
// many sessions (a small model costs its session's memory, not a V8
// isolate's ≈10 MB), and a model's N instances are sessions on N distinct
// threads, so N of its runs can go at once.
//
// Hand-written on node:worker_threads rather than piscina: piscina gives a
// task to whichever thread is free, but a run must go to the one thread that
// holds its session. Each thread is driven through its own port (the
// Worker's); it answers requests in order, so answers are matched to
// requests by a FIFO, with no ids or maps on the run path. Tensor buffers are
// moved (transfer lists) both ways, never copied.
//
// Session creation runs on the pool threads. Each thread opens one session at
// a time (the rest wait here, not in its message queue), so the runs of
// models already loaded on it wait for at most one creation; loads go in
// parallel, one per thread. A thread that dies takes its sessions with it:
// the pool reports it as fatal (the worker exits and is restarted, and its
// gateway loads its models again).
//
// A CPU instance whose runs prove shorter than the hand-off moves to the
// main thread (inline-runs.ts, --inline-run-us).

const THREAD_FILE = fileURLToPath(new URL('./ort-thread.js', import.meta.url));

/** Opens that may wait for a thread, over the whole pool; more are refused. */
export const MAX_PENDING_OPENS = 16_384;

export interface OrtThreadPoolOptions {
  /** Threads to start with (see defaultThreadCount). */
  readonly threads: number;
  /** A thread died (uncaught error or exit): its sessions are gone. */
  readonly onFatal: (error: Error) => void;
  /**
   * A CPU instance whose runs take at most this long on the main thread
   * moves there (inline-runs.ts); 0 or absent: every run stays on its thread.
   */
  readonly inlineMaxRunNs?: number;
  /** How an instance's trial on the main thread ended: kept there, back on its thread, or not opened there (`error`). */
  readonly onInline?: (label: string, outcome: InlineOutcome) => void;
}

type Settle = (reply: ThreadReply) => void;

class OrtThread {
  readonly #worker: Worker;
  /** Settlers of the requests posted and not yet answered, oldest first. */
  readonly #waiting: Array<Settle> = [];
  readonly #freeIds: number[] = [];
  #nextId = 0;
  /** Sessions open or opening here: the placement weight. */
  sessions = 0;
  /** Opens not yet posted, oldest first; one is in the thread at a time. */
  readonly #opens: Array<() => void> = [];
  #opening = false;
  #dead: Error | undefined;
  #closing = false;

  constructor(
    readonly index: number,
    onFatal: (error: Error) => void,
  ) {
    this.#worker = new Worker(THREAD_FILE);
    this.#worker.on('message', (reply: ThreadReply) => this.#waiting.shift()?.(reply));
    this.#worker.on('error', (error) => this.#die(new Error(`ORT thread ${index} failed: ${error.message}`, { cause: error }), onFatal));
    this.#worker.on('exit', (code) => {
      if (!this.#closing) this.#die(new Error(`ORT thread ${index} exited (code ${code})`), onFatal);
    });
  }

  #die(error: Error, onFatal: (error: Error) => void): void {
    if (this.#dead !== undefined) return;
    this.#dead = error;
    const failure: ThreadReply = { error: error.message };
    for (const settle of this.#waiting.splice(0)) settle(failure);
    for (const start of this.#opens.splice(0)) start();
    onFatal(error);
  }

  /** Posts one request; resolves with its answer (a ThreadFailure when it failed). */
  request(message: ThreadRequest, transfer?: readonly ArrayBuffer[]): Promise<ThreadReply> {
    if (this.#dead !== undefined) return Promise.resolve({ error: this.#dead.message });
    return new Promise<ThreadReply>((resolve) => {
      // Answers are matched by order: a message that could not be posted (a
      // transfer list holding a buffer already moved) must leave no waiter.
      try {
        this.#worker.postMessage(message, transfer);
      } catch (error) {
        resolve({ error: `could not hand the request to the ORT thread: ${error instanceof Error ? error.message : String(error)}` });
        return;
      }
      this.#waiting.push(resolve);
    });
  }

  /** Opens a session here once the opens before it are done; resolves with its id and info. */
  async open(init: ThreadInit): Promise<{ id: number; info: SessionInfo }> {
    this.sessions++;
    // The turn to open passes from one open to the next (finally below), so a
    // new call never slips in between them.
    if (this.#opening) await new Promise<void>((start) => this.#opens.push(start));
    else this.#opening = true;
    const id = this.#freeIds.pop() ?? this.#nextId++;
    try {
      const reply = await this.request({ op: 'open', id, init });
      if (isThreadFailure(reply)) throw new Error(reply.error);
      return { id, info: reply as SessionInfo };
    } catch (error) {
      this.#freeIds.push(id);
      this.sessions--;
      throw error;
    } finally {
      const next = this.#opens.shift();
      if (next) next();
      else this.#opening = false;
    }
  }

  async close(id: number): Promise<void> {
    const reply = await this.request({ op: 'close', id });
    this.#freeIds.push(id);
    this.sessions--;
    if (isThreadFailure(reply)) throw new Error(reply.error);
  }

  get pendingOpens(): number {
    return this.#opens.length;
  }

  terminate(): Promise<number> {
    this.#closing = true;
    return this.#worker.terminate();
  }
}

class PooledSession implements ModelInstance {
  constructor(
    readonly info: SessionInfo,
    readonly thread: OrtThread,
    readonly id: number,
  ) {}

  async run(task: BatchTask, transfer: readonly ArrayBuffer[]): Promise<BatchOutput> {
    const reply = await this.thread.request({ op: 'run', id: this.id, task }, transfer);
    if (isThreadFailure(reply)) throw new Error(reply.error);
    return reply as BatchOutput;
  }

  close(): Promise<void> {
    return this.thread.close(this.id);
  }
}

export class OrtThreadPool {
  readonly #threads: OrtThread[] = [];
  readonly #onFatal: (error: Error) => void;
  readonly #options: OrtThreadPoolOptions;

  constructor(options: OrtThreadPoolOptions) {
    this.#options = options;
    this.#onFatal = options.onFatal;
    const size = Math.max(1, Math.min(MAX_ORT_THREADS, options.threads));
    for (let i = 0; i < size; i++) this.#threads.push(new OrtThread(i, this.#onFatal));
  }

  get size(): number {
    return this.#threads.length;
  }

  /** Sessions per thread (for status and tests). */
  sessionsPerThread(): number[] {
    return this.#threads.map((t) => t.sessions);
  }

  /**
   * Opens one model's instances on distinct threads, least loaded first. A
   * model with more instances than the pool has threads grows the pool to
   * that count (at most MAX_ORT_THREADS), so instance_group.count keeps
   * meaning "that many runs at once".
   */
  open(inits: readonly ThreadInit[]): Array<Promise<ModelInstance>> {
    while (this.#threads.length < Math.min(inits.length, MAX_ORT_THREADS)) {
      this.#threads.push(new OrtThread(this.#threads.length, this.#onFatal));
    }
    const pending = this.#threads.reduce((n, t) => n + t.pendingOpens, 0);
    if (pending + inits.length > MAX_PENDING_OPENS) {
      const error = resourceExhausted(`${pending} model loads are already waiting for an ONNX Runtime thread (at most ${MAX_PENDING_OPENS})`);
      return inits.map(() => Promise.reject(error));
    }
    const targets = placeInstances(
      this.#threads.map((t) => t.sessions),
      inits.length,
    );
    return inits.map(async (init, i) => {
      const thread = this.#threads[targets[i] as number] as OrtThread;
      const movable = this.#movable(init);
      // The file's version before the thread reads it: the main thread may open the file only while it is unchanged.
      const version = movable ? fileVersion(init) : undefined;
      const { id, info } = await thread.open(init);
      const session = new PooledSession(info, thread, id);
      const bound = { maxRunNs: this.#options.inlineMaxRunNs ?? 0, instances: inits.length };
      return movable ? new MovableInstance(session, init, bound, (outcome) => this.#options.onInline?.(init.label, outcome), undefined, version) : session;
    });
  }

  /** May move to the main thread: CPU, moving enabled, and not a large model given as bytes (kept for the move otherwise). */
  #movable(init: ThreadInit): boolean {
    if ((this.#options.inlineMaxRunNs ?? 0) <= 0 || init.device.kind !== 'cpu') return false;
    return !('bytes' in init.model) || init.model.bytes.byteLength <= INLINE_MAX_MODEL_BYTES;
  }

  /** Ends every thread (shutdown, after the sessions were closed). */
  async close(): Promise<void> {
    await Promise.all(this.#threads.map((t) => t.terminate()));
  }
}
