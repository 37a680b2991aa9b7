import { statSync } from 'node:fs';
import { type ModelInstance } from './model-instance.js';
import { type OrtSession } from './ort-binding.js';
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
// stay on their threads.
//
// So every CPU instance starts on its thread. One whose runs there (after
// its first WARM_RUNS) held the thread at most --inline-run-us (median of
// INLINE_SAMPLES, BatchOutput.heldNs: conversions and ONNX Runtime's own run)
// is tried on the main thread, its thread session kept open meanwhile; if
// its runs there hold the main thread at most as long, or at most as long as
// handing a run to its thread and back took (the wall time beyond the run),
// it stays and its thread session closes, else it goes back to its thread
// for good. The main thread's own timings decide, since that is the thread a run would hold:
// on this 2-core machine identity_fp32's runs held it 140–240 µs, against
// 70–150 µs on its own thread (the main thread also reads and answers every
// frame). The choice is made once: after that an instance left on its
// thread costs nothing more per run. GPU sessions always stay on their
// threads. On the main thread a session runs on one ONNX Runtime thread
// (see InlineSession.open).

/** Runs timed before each decision: on the thread, then on the main thread. */
export const INLINE_SAMPLES = 16;
/**
 * Runs on its thread before any is timed: a model's first runs allocate
 * (ONNX Runtime's first run at a shape) and come while its callers warm up,
 * so they say little about the runs after them.
 */
export const WARM_RUNS = 32;
/** A model file larger than this is never opened on the main thread (creating a session blocks the thread that does it). */
export const INLINE_MAX_MODEL_BYTES = 4 * 2 ** 20;

/**
 * Whether runs that held their thread `samplesNs` (conversions and ONNX
 * Runtime's run: BatchOutput.heldNs) are short enough: enough of them, and
 * their median within `maxRunNs`.
 */
export function runsInline(samplesNs: readonly number[], maxRunNs: number): boolean {
  return maxRunNs > 0 && samplesNs.length >= INLINE_SAMPLES && median(samplesNs) <= maxRunNs;
}

/** How long a timed run held its thread (a session that ignores `timed` is taken at its whole run). */
function heldOf(out: BatchOutput): number {
  return out.heldNs ?? Number(out.runEndNs - out.taskStartNs);
}

function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[sorted.length >> 1] as number;
}

/** A session on the worker's main thread: a run blocks it for the run's length. */
export class InlineSession implements ModelInstance {
  private constructor(
    readonly info: SessionInfo,
    readonly session: OrtSession,
  ) {}

  static async open(init: ThreadInit): Promise<InlineSession> {
    // One ONNX Runtime thread, the caller's: a run short enough for the main thread gains nothing from being
    // split, and waking ORT's own threads for it (they sleep between runs: no spinning) costs more than the run.
    const { session, info } = await openSession({ ...init, options: { ...init.options, intraOpNumThreads: 1, interOpNumThreads: 1 } });
    return new InlineSession(info, session);
  }

  run(task: BatchTask): Promise<BatchOutput> {
    // Nothing crosses a thread: the output buffers stay where they are.
    return runTask(this.session, task, []);
  }

  close(): Promise<void> {
    // Callers chain .catch() on it: a release that throws must reject, not throw.
    try {
      this.session.release();
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }
}

const NO_TRANSFER: readonly ArrayBuffer[] = [];

/** How a trial on the main thread ended: kept there, or back on its thread with the median run it took there. */
export type InlineOutcome =
  | ({ readonly moved: boolean } & TrialTimings)
  | { readonly moved: false; readonly error: Error };

/** Medians of a trial: runs on the main thread, runs on its thread, and the hand-off to its thread and back. */
export interface TrialTimings {
  readonly medianNs: number;
  readonly threadMedianNs: number;
  readonly handOffMedianNs: number;
}

/**
 * One CPU instance: on its ORT thread until its runs are known to be short,
 * then on the main thread (see the top of this file). The choice is made
 * once; a failed open, or runs on the main thread over the bound, leave it
 * on its thread.
 */
export class MovableInstance implements ModelInstance {
  readonly #init: ThreadInit;
  readonly #maxRunNs: number;
  /** 1 / the model's instances in this worker. */
  readonly #share: number;
  readonly #onDecided: ((outcome: InlineOutcome) => void) | undefined;
  readonly #openInline: (init: ThreadInit) => Promise<ModelInstance>;
  #thread: ModelInstance | undefined;
  #inline: ModelInstance | undefined;
  /** Timings of the runs on its thread, then (while #trial) on the main thread. */
  #samples: number[] = [];
  /** Of the runs timed on its thread: the wall time from handing each over to its answer, beyond its run. */
  readonly #handOffs: number[] = [];
  /** On the main thread on trial: its thread session is kept until the trial ends. */
  #trial = false;
  /** The medians of its runs on its thread and of their hand-offs (known once it goes on trial). */
  #threadMedianNs = 0;
  #handOffMedianNs = 0;
  /** Runs handed to the thread and not yet ended. */
  #onThread = 0;
  /** Runs ended on its thread so far, while undecided (WARM_RUNS are not timed). */
  #ended = 0;
  /** Runs on the main thread not yet ended. */
  #onMain = 0;
  #moving = false;
  /** Decided for the thread (its runs too long, or the move given up): on its thread for good. */
  #staying = false;
  #closed = false;

  /** The model file as its thread opened it (about): a file changed since is not opened again (it is not this instance's model). */
  readonly #opened: string | undefined;

  /**
   * `bound.maxRunNs` is --inline-run-us; `bound.instances` the model's
   * instances in this worker. Instances on the main thread run one at a
   * time, so each of N gets 1/N of the bound and of the hand-off allowance:
   * N of them there never cost the main thread more per round of runs than
   * one within the bound. `openInline` opens the instance on the main thread
   * (tests give their own).
   */
  constructor(
    thread: ModelInstance,
    init: ThreadInit,
    bound: { readonly maxRunNs: number; readonly instances?: number },
    onDecided?: (outcome: InlineOutcome) => void,
    openInline: (init: ThreadInit) => Promise<ModelInstance> = (i) => InlineSession.open(i),
    /** The file's version from before its thread read it (`fileVersion`); taken now when not given. */
    opened: string | undefined = fileVersion(init),
  ) {
    this.#thread = thread;
    this.#init = init;
    this.#share = 1 / Math.max(1, bound.instances ?? 1);
    this.#maxRunNs = bound.maxRunNs * this.#share;
    this.#onDecided = onDecided;
    this.#openInline = openInline;
    this.#opened = opened;
  }

  get info(): SessionInfo {
    return (this.#inline ?? this.#thread)?.info as SessionInfo;
  }

  /** On the main thread now, on trial or for good (for status and tests). */
  get inline(): boolean {
    return this.#inline !== undefined;
  }

  /** Its thread session is still open (for tests). */
  get onThread(): boolean {
    return this.#thread !== undefined;
  }

  run(task: BatchTask, transfer: readonly ArrayBuffer[]): Promise<BatchOutput> {
    // On the main thread nothing crosses a thread: the caller's buffers stay where they are.
    if (this.#inline) return this.#trial ? this.#runOnTrial(this.#inline, task) : this.#inline.run(task, NO_TRANSFER);
    const thread = this.#thread as ModelInstance;
    // Decided to stay: the thread's session as it is, nothing counted or timed.
    if (this.#staying) return thread.run(task, transfer);
    return this.#runOnThread(thread, task, transfer);
  }

  async #runOnThread(thread: ModelInstance, task: BatchTask, transfer: readonly ArrayBuffer[]): Promise<BatchOutput> {
    this.#onThread++;
    // Timed until it goes on trial: after that its runs on the thread decide nothing.
    const timing = !this.#moving;
    const sentNs = timing ? process.hrtime.bigint() : 0n;
    try {
      const out = await thread.run(timing ? { ...task, timed: true } : task, transfer);
      if (timing && !this.#moving && !this.#staying) {
        const held = heldOf(out);
        this.#observe(held, Number(process.hrtime.bigint() - sentNs) - held);
      }
      return out;
    } finally {
      this.#onThread--;
      if (this.#inline && !this.#trial && this.#onThread === 0) this.#closeThread();
    }
  }

  async #runOnTrial(inline: ModelInstance, task: BatchTask): Promise<BatchOutput> {
    this.#onMain++;
    try {
      const out = await inline.run({ ...task, timed: true }, NO_TRANSFER);
      if (this.#trial && this.#inline === inline) this.#observeTrial(heldOf(out));
      return out;
    } finally {
      this.#onMain--;
      // Sent back to its thread: the main thread's session closes once its last run there ended.
      if (this.#inline !== inline && !this.#closed && this.#onMain === 0) inline.close().catch(() => undefined);
    }
  }

  /** Times INLINE_SAMPLES runs on the thread after WARM_RUNS, then decides once: try the main thread, or stay for good. */
  #observe(ns: number, handOffNs: number): void {
    if (++this.#ended <= WARM_RUNS) return;
    this.#samples.push(ns);
    this.#handOffs.push(handOffNs);
    if (this.#samples.length < INLINE_SAMPLES) return;
    if (!runsInline(this.#samples, this.#maxRunNs)) {
      this.#staying = true;
      return;
    }
    this.#moving = true;
    this.#threadMedianNs = median(this.#samples);
    this.#handOffMedianNs = median(this.#handOffs);
    void this.#move();
  }

  /**
   * Times INLINE_SAMPLES runs on the main thread, then keeps it there (its
   * thread session closes) or sends it back for good: kept when they held
   * the main thread within the bound, or within what handing a run to its
   * thread and back took (a busy worker's main thread runs slower, and its
   * hand-offs take longer too).
   */
  #observeTrial(ns: number): void {
    this.#samples.push(ns);
    if (this.#samples.length < INLINE_SAMPLES) return;
    this.#trial = false;
    const timings = { medianNs: median(this.#samples), threadMedianNs: this.#threadMedianNs, handOffMedianNs: this.#handOffMedianNs };
    if (runsInline(this.#samples, Math.max(this.#maxRunNs, this.#handOffMedianNs * this.#share))) {
      if (this.#onThread === 0) this.#closeThread();
      this.#onDecided?.({ moved: true, ...timings });
      return;
    }
    // Back to its thread for good; #runOnTrial closes the main thread's session once its runs there have ended.
    this.#inline = undefined;
    this.#staying = true;
    this.#onDecided?.({ moved: false, ...timings });
  }

  async #move(): Promise<void> {
    try {
      const model = this.#init.model;
      const bytes = 'bytes' in model ? model.bytes.byteLength : statSync(model.path).size;
      if (bytes > INLINE_MAX_MODEL_BYTES || this.#opened !== fileVersion(this.#init)) {
        this.#staying = true;
        return;
      }
      const inline = await this.#openInline(this.#init);
      if (this.#closed) {
        await inline.close();
        return;
      }
      this.#samples = [];
      this.#trial = true;
      this.#inline = inline;
    } catch (error) {
      this.#staying = true;
      this.#onDecided?.({ moved: false, error: error instanceof Error ? error : new Error(String(error)) });
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
    const inline = this.#inline;
    this.#inline = undefined;
    await Promise.all([thread?.close(), inline?.close()]);
  }
}

/**
 * Size and modification time of a model given as a file; undefined for one
 * given as bytes. Read at once (a model load is rare), before its thread
 * opens the file: read after, as it once was on the thread pool, a file
 * rewritten meanwhile passed for the one the thread had read. Throws when
 * the file cannot be read: the load fails with that error, as its thread's
 * open would (as a promise, a failed read was left unhandled when the open
 * failed too).
 */
export function fileVersion(init: ThreadInit): string | undefined {
  if (!('path' in init.model)) return undefined;
  const s = statSync(init.model.path);
  return `${s.size}:${s.mtimeMs}`;
}
