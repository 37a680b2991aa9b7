import { type Logger } from 'pino';
import { type Datatype, elementSize } from '../../core/datatypes.js';
import { internal, invalidArgument } from '../../core/errors.js';
import { elementCount, type Tensor } from '../../core/tensor.js';
import { type ControlKind, type SequenceControl, type SequencePlan } from '../../models/config/sequence-config.js';
import { modelKey } from '../repository/model-version.js';
import { OPEN_TENANT } from '../tenants/tenant.js';
import { abortError, type CorrelationId, type InferJob, type JobResult, type Scheduler, type SequenceFlags } from './execution.js';

interface Pending {
  readonly job: InferJob;
  readonly flags: SequenceFlags;
  readonly queuedAt: bigint;
  readonly resolve: (r: JobResult) => void;
  readonly reject: (e: unknown) => void;
  readonly onAbort: () => void;
}

interface Sequence {
  readonly id: CorrelationId;
  /** Its key among the open ones: the ID within its tenant (sequenceKey). */
  readonly key: CorrelationId;
  readonly queue: Pending[];
  /** The last request's state outputs, in the plan's order, renamed as the inputs they become; undefined = initial. */
  states: readonly Tensor[] | undefined;
  /** Holds a candidate place (else waits in the backlog). */
  candidate: boolean;
  running: boolean;
  /** Its END was queued, or it was reaped: no request joins it again. */
  closed: boolean;
  /** When it last ran or queued a request (performance.now ms), for the idle limit. */
  lastActiveMs: number;
  /** Its CORRID control tensor, if the config has one. */
  readonly corrid: Tensor | undefined;
}

/**
 * Several gateway processes (`--gateway-processes N`): a sequence is kept by
 * the process that took its START, which the primary records; a request that
 * arrives at another is run there (gateway/cluster/). A client on one
 * connection (a gRPC channel, a reused HTTP socket) stays on one process, so
 * its requests cost no IPC but the START's record.
 */
export interface SequenceProcesses {
  /** The sequence `key` of that version starts here: recorded as kept here (a process that kept it drops it first). */
  claim(model: string, version: number, key: string): Promise<void>;
  /** Runs the job in that version's scheduler where sequence `key` is kept; refused as not started when it is kept nowhere. */
  forward(model: string, version: number, key: string, job: InferJob): Promise<JobResult>;
  /** Sequence `key`, kept here, ended (its END ran, or it idled out): no longer recorded. */
  ended(key: string): void;
}

/** A sequence's name across the processes: the version and its key (`sequenceKey`). */
export function processKey(modelKey: string, key: CorrelationId): string {
  return `${modelKey}\u0000${typeof key === 'bigint' ? 'n' : 's'}${String(key)}`;
}

/**
 * A sequence's key among the open ones: its ID within its tenant, so that a
 * tenant can neither continue nor end another's sequence by naming its ID.
 * Without tenants (every job is the open tenant's) the ID itself.
 */
export function sequenceKey(id: CorrelationId, tenant: string | undefined): CorrelationId {
  return tenant === undefined || tenant === OPEN_TENANT.name ? id : `${tenant}\u0000${typeof id}\u0000${String(id)}`;
}

export interface SequenceSchedulerOptions {
  readonly modelName: string;
  readonly version: number;
  readonly plan: SequencePlan;
  /** Whether the model batches (max_batch_size > 0): control and state tensors then carry a batch dimension of 1. */
  readonly batching: boolean;
  /** Sequences that run at once, or how many now (from the instances serving); the rest wait in the backlog in arrival order. */
  readonly maxCandidates: number | (() => number);
  /** Each state's first input, in the plan's order (zeros or the initial_state file). */
  readonly initialStates: readonly Tensor[];
  readonly inner: Scheduler;
  readonly log?: Logger;
  /** Milliseconds, monotonic (tests pass a fake clock and call reapIdle themselves). */
  readonly now?: () => number;
  /** false: no idle timer (tests). */
  readonly reapTimer?: boolean;
  /** Several gateway processes: where each sequence is kept. Undefined: all here. */
  readonly processes?: SequenceProcesses;
}

/**
 * Triton's sequence batcher for stateful models. A request names its
 * sequence (`sequence_id`) and whether it starts or ends it; the requests of
 * one sequence run one at a time, in order, each with the control inputs the
 * config asks for (START, END, READY, CORRID) and the implicit state the
 * sequence's previous request left (its `state` outputs, kept here between
 * requests). Requests of different sequences batch together in the inner
 * scheduler, the dynamic batcher when the model batches: Triton's `oldest`
 * strategy, which `direct` also gets (an ONNX model keeps no state of its own
 * per batch slot, so every row is a READY one and no slot is held empty).
 *
 * At most `maxCandidates` sequences run at once; later ones wait in the
 * backlog until one ends or stays idle past `max_sequence_idle_microseconds`,
 * which ends it. The state lives in one gateway process: with several, the
 * one that took the START, and a request that arrives at another is run
 * there (`processes`). A sequence is its tenant's own (`sequenceKey`).
 */
export class SequenceScheduler implements Scheduler {
  readonly #o: SequenceSchedulerOptions;
  /** "name/version", as errors and processKey name it. */
  readonly #modelKey: string;
  readonly #now: () => number;
  /** Open sequences by key, the ID within its tenant (a closed one leaves it while its last requests run). */
  readonly #open = new Map<CorrelationId, Sequence>();
  readonly #backlog: Sequence[] = [];
  #candidates = 0;
  #queued = 0;
  #endedIdle = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped: Error | undefined;
  /** START, END and READY: their tensors for false and true, made once. */
  readonly #flags: readonly { readonly kind: ControlKind; readonly off: Tensor; readonly on: Tensor }[];
  /** CORRID, if the config has it: its tensor is made once a sequence. */
  readonly #corrid: SequenceControl | undefined;
  /** The state outputs, asked for besides the outputs a client names. */
  readonly #stateOutputs: readonly string[];

  constructor(options: SequenceSchedulerOptions) {
    this.#o = options;
    this.#modelKey = modelKey(options.modelName, options.version);
    this.#now = options.now ?? (() => performance.now());
    const { controls, states } = options.plan;
    this.#flags = controls.flatMap((c) =>
      c.falseTrue ? [{ kind: c.kind, off: flagTensor(c, c.falseTrue[0], options.batching), on: flagTensor(c, c.falseTrue[1], options.batching) }] : [],
    );
    this.#corrid = controls.find((c) => c.kind === 'corrid');
    this.#stateOutputs = states.map((st) => st.outputName);
  }

  /** The scheduler the sequences' requests batch in. */
  get inner(): Scheduler {
    return this.#o.inner;
  }

  get pending(): number {
    return this.#queued + this.#o.inner.pending;
  }

  /** Sequences ended by the idle limit since this version loaded. */
  get endedIdle(): number {
    return this.#endedIdle;
  }

  /** Sequences running now, and waiting for a place. */
  get sequences(): { readonly candidates: number; readonly backlog: number } {
    return { candidates: this.#candidates, backlog: this.#backlog.length };
  }

  /** A request of this model: refused, sent to the process that keeps its sequence, or queued here. */
  enqueue(job: InferJob): Promise<JobResult> {
    const refused = this.#refusal(job);
    if (refused !== undefined) return Promise.reject(refused);
    const processes = this.#o.processes;
    if (processes === undefined) return this.#accept(job);
    const flags = job.sequence as SequenceFlags;
    const key = sequenceKey(flags.id, job.tenant?.name);
    if (this.#open.has(key)) return this.#accept(job);
    const name = processKey(this.#modelKey, key);
    // Kept elsewhere, or nowhere: a START makes it this process's, anything else runs where it is kept.
    return flags.start ? processes.claim(this.#o.modelName, this.#o.version, name).then(() => this.#accept(job)) : processes.forward(this.#o.modelName, this.#o.version, name, job);
  }

  /**
   * Another process took the START of sequence `name` (processKey): this
   * process's sequence of that key ends (its queued requests still run), so
   * no later request runs against its stale state here.
   */
  drop(name: string): void {
    for (const [key, s] of this.#open) {
      if (processKey(this.#modelKey, key) !== name) continue;
      s.closed = true;
      this.#open.delete(key);
      this.#settle(s);
      return;
    }
  }

  /** Why the request cannot be taken (Triton's words), checked where it arrived; undefined: it can. */
  #refusal(job: InferJob): Error | undefined {
    const { modelName } = this.#o;
    const flags = job.sequence;
    if (this.#stopped) return this.#stopped;
    if (flags === undefined || flags.id === 0n || flags.id === '') {
      return invalidArgument(`inference request to model '${modelName}' must specify a non-zero or non-empty correlation ID`);
    }
    if (job.batchSize > 1) {
      return invalidArgument(`inference request to model '${modelName}' must specify batch-size 1 due to requirements of sequence batcher`);
    }
    const c = this.#corrid;
    if (typeof flags.id === 'string' && c !== undefined && c.datatype !== 'BYTES') {
      return invalidArgument(`inference request to model '${modelName}' must specify an integer correlation ID: its CORRID control input '${c.name}' is ${c.datatype}, got the string "${flags.id}"`);
    }
    return undefined;
  }

  /** A request another process handed over: its sequence is kept here. */
  enqueueHere(job: InferJob): Promise<JobResult> {
    const refused = this.#refusal(job);
    return refused === undefined ? this.#accept(job) : Promise.reject(refused);
  }

  #accept(job: InferJob): Promise<JobResult> {
    const { modelName } = this.#o;
    const flags = job.sequence as SequenceFlags;
    const key = sequenceKey(flags.id, job.tenant?.name);
    let sequence = this.#open.get(key);
    if (sequence === undefined && !flags.start) {
      return Promise.reject(
        invalidArgument(`inference request for sequence ${String(flags.id)} to model '${modelName}' must specify the START flag on the first request of the sequence`),
      );
    }
    if (sequence !== undefined && flags.start) {
      // Triton's reading: the earlier sequence did not end; its queued requests run, then this one starts afresh.
      this.#o.log?.warn({ model: modelName, sequence: String(flags.id) }, 'sequence restarted before it ended; its earlier requests run first');
    }
    if (job.signal.aborted) return Promise.reject(abortError(this.#modelKey, Date.now(), job.deadline, 'before the request ran'));
    if (sequence === undefined) sequence = this.#begin(flags.id, key);
    const s = sequence;
    s.lastActiveMs = this.#now();
    if (flags.end) {
      s.closed = true;
      this.#open.delete(key);
      this.#o.processes?.ended(processKey(this.#modelKey, key));
    }
    return new Promise<JobResult>((resolve, reject) => {
      const pending: Pending = {
        job,
        flags,
        queuedAt: process.hrtime.bigint(),
        resolve,
        reject,
        onAbort: () => {
          const i = s.queue.indexOf(pending);
          if (i < 0) return;
          s.queue.splice(i, 1);
          this.#queued--;
          reject(abortError(this.#modelKey, Date.now(), job.deadline, 'before the request ran'));
          this.#settle(s);
        },
      };
      job.signal.addEventListener('abort', pending.onAbort, { once: true });
      s.queue.push(pending);
      this.#queued++;
      this.#pump(s);
    });
  }

  /**
   * Ends every sequence idle (nothing queued or running) for longer than the
   * idle limit, as Triton's reaper does: its state is dropped and its place
   * given to the backlog. A later request without START for it is refused.
   */
  reapIdle(): void {
    const limitMs = this.#o.plan.idleUs / 1000;
    const now = this.#now();
    for (const s of [...this.#open.values()]) {
      if (s.running || s.queue.length > 0 || now - s.lastActiveMs <= limitMs) continue;
      this.#o.log?.debug({ model: this.#o.modelName, sequence: String(s.id) }, 'sequence idle past max_sequence_idle_microseconds; ended');
      s.closed = true;
      this.#endedIdle++;
      this.#open.delete(s.key);
      this.#o.processes?.ended(processKey(this.#modelKey, s.key));
      this.#settle(s);
    }
  }

  async stop(reason: Error): Promise<void> {
    this.#stopped = reason;
    this.#stopTimer();
    const all = new Set([...this.#open.values(), ...this.#backlog]);
    for (const s of all) {
      for (const p of s.queue.splice(0)) {
        p.job.signal.removeEventListener('abort', p.onAbort);
        this.#queued--;
        p.reject(reason);
      }
    }
    this.#open.clear();
    this.#backlog.length = 0;
    await this.#o.inner.stop(reason);
  }

  #begin(id: CorrelationId, key: CorrelationId): Sequence {
    const c = this.#corrid;
    const corrid = c && correlationTensor(c, id, this.#o.batching);
    const s: Sequence = { id, key, queue: [], states: undefined, candidate: false, running: false, closed: false, lastActiveMs: this.#now(), corrid };
    this.#open.set(key, s);
    // Behind the backlog, which takes any place that opened first.
    this.#backlog.push(s);
    this.#promote();
    this.#startTimer();
    return s;
  }

  /** Runs the sequence's next request when it holds a place and none of its requests runs. */
  #pump(s: Sequence): void {
    if (!s.candidate || s.running) return;
    const p = s.queue.shift();
    if (p === undefined) return;
    this.#queued--;
    p.job.signal.removeEventListener('abort', p.onAbort);
    s.running = true;
    const waitedNs = Number(process.hrtime.bigint() - p.queuedAt);
    if (p.flags.start) s.states = undefined;
    this.#o.inner.enqueue(this.#withSequenceInputs(p, s)).then(
      (result) => {
        try {
          s.states = this.#keptStates(result.outputs, s.states);
          p.resolve({ ...result, outputs: this.#clientOutputs(result.outputs), queueNs: result.queueNs + waitedNs });
        } catch (error) {
          p.reject(error);
        }
        this.#after(s);
      },
      (error: unknown) => {
        // As in Triton, a failed request leaves the state as the last good one left it.
        p.reject(error);
        this.#after(s);
      },
    );
  }

  #after(s: Sequence): void {
    s.running = false;
    s.lastActiveMs = this.#now();
    this.#settle(s);
  }

  /** After a request: the next one runs, or a closed sequence with nothing left gives its place up. */
  #settle(s: Sequence): void {
    if (s.queue.length > 0) {
      this.#pump(s);
      return;
    }
    if (!s.closed || s.running) return;
    if (!s.candidate) {
      const i = this.#backlog.indexOf(s);
      if (i >= 0) this.#backlog.splice(i, 1);
      return;
    }
    s.candidate = false;
    s.states = undefined;
    this.#candidates--;
    this.#promote();
    if (this.#open.size === 0 && this.#backlog.length === 0) this.#stopTimer();
  }

  /** Sequences the model runs at once now (the instance count may have changed since it loaded). */
  #limit(): number {
    const m = this.#o.maxCandidates;
    return typeof m === 'number' ? m : m();
  }

  /** Places free (one freed, or instances added): the backlog takes them, oldest first. */
  #promote(): void {
    const limit = this.#limit();
    while (this.#candidates < limit) {
      const next = this.#backlog.shift();
      if (next === undefined) return;
      next.candidate = true;
      this.#candidates++;
      next.lastActiveMs = this.#now();
      this.#pump(next);
    }
  }

  /** The job the inner scheduler runs: the client's inputs, the control inputs, the states; the state outputs asked for. */
  #withSequenceInputs(p: Pending, s: Sequence): InferJob {
    const { flags, job } = p;
    const inputs: Tensor[] = [...job.inputs];
    for (const f of this.#flags) inputs.push((f.kind === 'start' ? flags.start : f.kind === 'end' ? flags.end : true) ? f.on : f.off);
    if (s.corrid !== undefined) inputs.push(s.corrid);
    for (const t of s.states ?? this.#o.initialStates) inputs.push(t);
    // No names: every output, the states among them.
    const outputs = job.outputs.length === 0 ? job.outputs : [...job.outputs, ...this.#stateOutputs];
    return { ...job, inputs, outputs };
  }

  /** The state outputs as the next request's state inputs (no copy: a rename). */
  #keptStates(outputs: readonly Tensor[], previous: readonly Tensor[] | undefined): readonly Tensor[] | undefined {
    const { states } = this.#o.plan;
    if (states.length === 0) return previous;
    const kept: Tensor[] = [];
    for (const st of states) {
      const out = outputs.find((o) => o.name === st.outputName);
      if (out === undefined) throw internal(`model '${this.#modelKey}': the worker did not return state output '${st.outputName}'`);
      kept.push({ name: st.inputName, datatype: out.datatype, shape: out.shape, data: out.data });
    }
    return kept;
  }

  #clientOutputs(outputs: readonly Tensor[]): readonly Tensor[] {
    const hidden = this.#o.plan.serverOutputs;
    return hidden.size === 0 ? outputs : outputs.filter((o) => !hidden.has(o.name));
  }

  #startTimer(): void {
    if (this.#timer !== undefined || this.#o.reapTimer === false) return;
    // A quarter of the limit (at least 10 ms, at most 1 s): a sequence ends between its limit and 1.25 × it.
    const everyMs = Math.min(1000, Math.max(10, this.#o.plan.idleUs / 4000));
    this.#timer = setInterval(() => this.reapIdle(), everyMs);
    this.#timer.unref();
  }

  #stopTimer(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/** A control's shape: one value for the request, [1, 1] ([1] for a model taking [batch]); without batching [1] ([]). */
function controlShape(c: SequenceControl, batching: boolean): number[] {
  const item = c.itemRank === 0 ? [] : [1];
  return batching ? [1, ...item] : item;
}

/** START, END or READY set to `value` (in the control's type). */
function flagTensor(c: SequenceControl, value: number | boolean, batching: boolean): Tensor {
  const data = new Uint8Array(elementSize(c.datatype));
  const view = new DataView(data.buffer);
  if (c.datatype === 'FP32') view.setFloat32(0, Number(value), true);
  else if (c.datatype === 'INT32') view.setInt32(0, Number(value), true);
  else data[0] = value ? 1 : 0;
  return { name: c.name, datatype: c.datatype, shape: controlShape(c, batching), data };
}

/** CORRID holding `id`: a string for a BYTES control (an integer ID as its digits), else the integer (Triton's rule: a 32-bit control takes its low 32 bits). */
function correlationTensor(c: SequenceControl, id: CorrelationId, batching: boolean): Tensor {
  const shape = controlShape(c, batching);
  if (c.datatype === 'BYTES') {
    const text = Buffer.from(String(id), 'utf8');
    const data = new Uint8Array(4 + text.length);
    new DataView(data.buffer).setUint32(0, text.length, true);
    data.set(text, 4);
    return { name: c.name, datatype: 'BYTES', shape, data };
  }
  // SequenceScheduler refuses a string ID for an integer CORRID before a sequence begins.
  if (typeof id === 'string') throw internal(`CORRID '${c.name}' is ${c.datatype}: no string correlation ID fits it`);
  const n = id;
  const data = new Uint8Array(elementSize(c.datatype));
  const view = new DataView(data.buffer);
  if (c.datatype === 'UINT64') view.setBigUint64(0, n, true);
  else if (c.datatype === 'INT64') view.setBigInt64(0, BigInt.asIntN(64, n), true);
  else if (c.datatype === 'UINT32') view.setUint32(0, Number(BigInt.asUintN(32, n)), true);
  else view.setInt32(0, Number(BigInt.asIntN(32, n)), true);
  return { name: c.name, datatype: c.datatype, shape, data };
}

/** A state's first input: zeros (a -1 dimension starts at size 0), one batch item when the model batches. */
export function zeroState(name: string, datatype: Datatype, dims: readonly number[], batching: boolean): Tensor {
  const item = dims.map((d) => (d === -1 ? 0 : d));
  const shape = batching ? [1, ...item] : item;
  // BYTES: each element an empty string, its 4-byte length 0.
  const size = datatype === 'BYTES' ? 4 : elementSize(datatype);
  return { name, datatype, shape, data: new Uint8Array(elementCount(shape) * size) };
}

/** The scheduler a version's requests batch in: a sequence model's inner one, else the scheduler itself. */
export function batchingSchedulerOf(scheduler: Scheduler): Scheduler {
  return scheduler instanceof SequenceScheduler ? scheduler.inner : scheduler;
}
