import { stat } from 'node:fs/promises';
import type ort from 'onnxruntime-node';
import { type ModelInstance } from './model-instance.js';
import { openSession, runTask } from './ort-session.js';
import { type BatchOutput, type BatchTask, type SessionInfo, type ThreadInit } from './thread-protocol.js';

// Runs on the worker's main thread, for models whose runs are shorter than
// handing them to an ORT thread. The hand-off costs a postMessage each way
// and a thread wake-up each way: measured on identity_fp32 at 16 clients,
// the worker spent 157–166 µs of CPU per request with every run on a thread
// and 82 µs with runs on its main thread (`fabriek bench`, /proc). A run
// that takes longer than the hand-off would hold the main thread (which
// reads and answers every model's executions) for longer than the hand-off
// costs it, and runs of several instances could no longer overlap: those
// stay on their threads. So every CPU instance starts on its thread, and
// one whose recent runs all took less than the bound (--inline-run-us) is
// opened again on the main thread; its thread session closes once its runs
// there have ended. The choice is made once, on its first runs: after that an
// instance left on its thread costs nothing more per run. GPU sessions always
// stay on their threads.

/** Runs timed on the thread before deciding. */
export const INLINE_SAMPLES = 16;
/** A model file larger than this is never opened on the main thread (creating a session blocks the thread that does it). */
export const INLINE_MAX_MODEL_BYTES = 4 * 2 ** 20;

/**
 * Whether runs that took `samplesNs` on their thread (conversion and run,
 * from taking the task up to the answer) should move to the main thread:
 * enough of them, and their median within `maxRunNs`.
 */
export function runsInline(samplesNs: readonly number[], maxRunNs: number): boolean {
  if (maxRunNs <= 0 || samplesNs.length < INLINE_SAMPLES) return false;
  const sorted = [...samplesNs].sort((a, b) => a - b);
  return (sorted[sorted.length >> 1] as number) <= maxRunNs;
}

/** A session on the worker's main thread: a run blocks it for the run's length. */
export class InlineSession implements ModelInstance {
  private constructor(
    readonly info: SessionInfo,
    readonly session: ort.InferenceSession,
  ) {}

  static async open(init: ThreadInit): Promise<InlineSession> {
    const { session, info } = await openSession(init);
    return new InlineSession(info, session);
  }

  run(task: BatchTask): Promise<BatchOutput> {
    // Nothing crosses a thread: the output buffers stay where they are.
    return runTask(this.session, task, []);
  }

  close(): Promise<void> {
    return this.session.release();
  }
}

/**
 * One CPU instance: on its ORT thread until its first runs are known to be
 * short, then on the main thread (see the top of this file). The choice is
 * made once; a failed open on the main thread leaves it on its thread.
 */
export class MovableInstance implements ModelInstance {
  readonly #init: ThreadInit;
  readonly #maxRunNs: number;
  readonly #onMoved: ((error?: Error) => void) | undefined;
  #thread: ModelInstance | undefined;
  #inline: InlineSession | undefined;
  readonly #samples: number[] = [];
  /** Runs handed to the thread and not yet ended. */
  #onThread = 0;
  #moving = false;
  /** Its first runs were too long (or the move was given up): on its thread for good. */
  #staying = false;
  #closed = false;

  /** The model file as its thread opened it (about): a file changed since is not opened again (it is not this instance's model). */
  readonly #opened: Promise<string | undefined>;

  constructor(thread: ModelInstance, init: ThreadInit, maxRunNs: number, onMoved?: (error?: Error) => void) {
    this.#thread = thread;
    this.#init = init;
    this.#maxRunNs = maxRunNs;
    this.#onMoved = onMoved;
    this.#opened = fileVersion(init);
    this.#opened.catch(() => undefined);
  }

  get info(): SessionInfo {
    return (this.#inline ?? this.#thread)?.info as SessionInfo;
  }

  /** On the main thread now (for status and tests). */
  get inline(): boolean {
    return this.#inline !== undefined;
  }

  run(task: BatchTask, transfer: readonly ArrayBuffer[]): Promise<BatchOutput> {
    if (this.#inline) return this.#inline.run(task);
    const thread = this.#thread as ModelInstance;
    // Decided to stay: the thread's session as it is, nothing counted or timed.
    if (this.#staying) return thread.run(task, transfer);
    return this.#runOnThread(thread, task, transfer);
  }

  async #runOnThread(thread: ModelInstance, task: BatchTask, transfer: readonly ArrayBuffer[]): Promise<BatchOutput> {
    this.#onThread++;
    try {
      const out = await thread.run(task, transfer);
      if (!this.#moving && !this.#staying) this.#observe(Number(out.runEndNs - out.taskStartNs));
      return out;
    } finally {
      this.#onThread--;
      if (this.#inline && this.#onThread === 0) this.#closeThread();
    }
  }

  /** Times the first INLINE_SAMPLES runs, then decides once: move, or stay for good. */
  #observe(ns: number): void {
    this.#samples.push(ns);
    if (this.#samples.length < INLINE_SAMPLES) return;
    if (!runsInline(this.#samples, this.#maxRunNs)) {
      this.#staying = true;
      return;
    }
    this.#moving = true;
    void this.#move();
  }

  async #move(): Promise<void> {
    try {
      const model = this.#init.model;
      const bytes = 'bytes' in model ? model.bytes.byteLength : (await stat(model.path)).size;
      const before = await this.#opened;
      if (bytes > INLINE_MAX_MODEL_BYTES || before !== (await fileVersion(this.#init))) {
        this.#staying = true;
        return;
      }
      const inline = await InlineSession.open(this.#init);
      if (this.#closed) {
        await inline.close();
        return;
      }
      this.#inline = inline;
      if (this.#onThread === 0) this.#closeThread();
      this.#onMoved?.();
    } catch (error) {
      this.#staying = true;
      this.#onMoved?.(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #closeThread(): void {
    const thread = this.#thread;
    this.#thread = undefined;
    thread?.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const thread = this.#thread;
    this.#thread = undefined;
    await Promise.all([thread?.close(), this.#inline?.close()]);
  }
}

/** Size and modification time of a model given as a file; undefined for one given as bytes. */
async function fileVersion(init: ThreadInit): Promise<string | undefined> {
  if (!('path' in init.model)) return undefined;
  const s = await stat(init.model.path);
  return `${s.size}:${s.mtimeMs}`;
}
