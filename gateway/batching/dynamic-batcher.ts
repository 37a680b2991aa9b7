import { type SpanContext } from '@opentelemetry/api';
import { deadlineExceeded, type ServingError, unavailable } from '../../core/errors.js';
import { type BatchInput, type Tensor } from '../../core/tensor.js';
import { activeTracer } from '../../core/tracing.js';
import { RunningCount } from '../../core/running-count.js';
import {
  abortError,
  type ExecutionObserver,
  type ExecutionResult,
  type InferJob,
  type JobResult,
  type Scheduler,
} from '../scheduling/execution.js';
import { type BatchIoPlan } from '../../models/config/batch-io-config.js';
import { joinBatch, splitBatch } from './batch-io.js';
import { batchShape, elementsPerRowOf } from './batch-rows.js';
import { BatchQueue, type Queued } from './batch-queue.js';
import { type Clock, systemClock } from './clock.js';
import { type BatcherState } from './batching-state.js';
import { type BatchCost, type CostModel } from '../../core/cost-model.js';
import { DEFAULT_KIND, KindCosts, SHAPES } from '../../core/kind-costs.js';
import { RecentMap } from '../../core/recent-map.js';
import { DrainRate } from './drain-rate.js';
import { drainedNs, expectedFinishNs, type ShedError, shedError, standingShedError, standsTooLong, wouldMiss } from './shedding.js';
import { ArrivalRate } from './arrival-rate.js';
import { decide, type ExpiryReason } from './decide.js';
import { SOLE_TENANT, tenantQueueBound } from './fair-queue.js';
import { type BatchingPolicy, levelOf, levelPolicy, queueTimeoutNs } from './policy.js';
import { decideSlo, newcomerRows } from './slo-decide.js';

const MS = 1_000_000n;
/**
 * SLO mode: a model counts as shared by tenants this long after arrivals
 * last switched from one tenant to another: a tenant that sent within it is
 * still sending. Not 1 s: a quiet tenant's pause of two seconds let a
 * flood's backlog batches grow and go ahead, and its next requests waited
 * behind them (noisy neighbour: 400-690 ms against 30 alone).
 */
const SHARED_NS = 10_000n * MS;

/** What the batcher needs from the instance slots (InstanceSlots fits). */
export interface BatchSlots<P> {
  readonly free: number;
  /**
   * Free slots whose instance is idle now; the others are queue-ahead slots
   * (the batch would wait in the worker behind a running one).
   */
  readonly idle: number;
  /** Executions that run at once across workers (instances); for the shedding estimate, 1 when absent. */
  readonly instanceCount?: number | undefined;
  /** The kind holding the most instances, whose cost model decides (core/kind-costs.ts); DEFAULT_KIND when absent. */
  readonly leadKind?: string | undefined;
  /** Instances by kind; absent: all of the lead kind. */
  readonly instancesByKind?: ReadonlyMap<string, number> | undefined;
  /** The kind of the slot `acquire(undefined, rows)` would take now; undefined when none is free. */
  nextKind?(rows: number): string | undefined;
  /** A slot for an execution of `rows` rows (InstanceSlots weighs each worker at that size). */
  acquire(exclude?: undefined, rows?: number): P | undefined;
  release(placement: P): void;
  onFree(listener: () => void): () => void;
  /** Told how the batcher's cost models expect a batch of so many rows to take on a kind (InstanceSlots.expectBy). */
  expectBy?(estimate: (rows: number, kind: string) => number | undefined): void;
}

/** What the batcher needs to run a batch (Dispatcher fits); it releases the slot. */
export interface BatchRunner<P> {
  run(placement: P, inputs: readonly BatchInput[], outputs: readonly string[], deadline: number, traces?: readonly (SpanContext | undefined)[], rows?: number): Promise<ExecutionResult>;
}

export interface DynamicBatcherOptions<P> {
  /** `name/version`, for messages. */
  readonly modelKey: string;
  readonly slots: BatchSlots<P>;
  readonly dispatcher: BatchRunner<P>;
  readonly policy: BatchingPolicy;
  readonly observer?: ExecutionObserver;
  readonly clock?: Clock;
  /** Shed requests that cannot finish before their deadline, by the cost model (default true). */
  readonly shedding?: boolean;
  /**
   * SLO-aware batch formation (`batching_slo_ms`): > 0 turns it on, and a
   * request without a deadline of its own is due this long after it arrived.
   * 0 or absent: Triton's fixed max_queue_delay and preferred sizes.
   */
  readonly sloNs?: bigint;
  /** Ragged inputs, batch inputs and batch outputs (Triton's ragged batching); absent for most models. */
  readonly batchIo?: BatchIoPlan | undefined;
}

interface Entry extends Queued<Entry> {
  readonly job: InferJob;
  /** Inputs in name order, lined up with every other member of its batch. */
  readonly inputs: readonly Tensor[];
  readonly resolve: (r: JobResult) => void;
  readonly reject: (e: unknown) => void;
  readonly onAbort: () => void;
}

interface Answer {
  settle: (() => void) | undefined;
}

/** How far one return time moves SloInput.returnNs: about the last 5 answers. */
const RETURN_ALPHA = 0.2;

/**
 * Triton's dynamic batcher for one model version: bounded queues per
 * priority level, one timer, and `decide` for every choice. A batch is cut
 * only when an instance slot is free, so batches grow with load. Each
 * member's promise settles exactly once: with its rows of the outputs, or,
 * when the execution fails, with that error for every member.
 */
export class DynamicBatcher<P> implements Scheduler {
  readonly #key: string;
  readonly #slots: BatchSlots<P>;
  readonly #dispatcher: BatchRunner<P>;
  readonly #policy: BatchingPolicy;
  readonly #observer: ExecutionObserver | undefined;
  readonly #clock: Clock;
  readonly #shedding: boolean;
  /** 0n = off. */
  readonly #sloNs: bigint;
  /** In SLO mode: the policy decide walks with (no delay, no preferred sizes: decideSlo sizes the batch). */
  readonly #sloPolicy: BatchingPolicy | undefined;
  readonly #batchIo: BatchIoPlan | undefined;
  readonly #arrivals = new ArrivalRate();
  /** Expected end of the compute of each batch sent and not yet answered, by the cost model (SLO mode). */
  readonly #finishes: bigint[] = [];
  /** Execution time by batch size, per instance kind, learned from this version's executions. */
  readonly costs = new KindCosts(elementsPerRowOf);
  readonly #queue = new BatchQueue<Entry>();
  readonly #running = new RunningCount();
  /** preserve_ordering: settlements of batches in the order they were cut. */
  readonly #answers: Answer[] = [];
  readonly #unsubscribe: () => void;
  #cancelTimer: (() => void) | undefined;
  #timerAt: bigint | undefined;
  #draining = false;
  #again = false;
  #stopped: Error | undefined;

  constructor(options: DynamicBatcherOptions<P>) {
    this.#key = options.modelKey;
    this.#slots = options.slots;
    this.#dispatcher = options.dispatcher;
    this.#policy = options.policy;
    this.#observer = options.observer;
    this.#clock = options.clock ?? systemClock;
    this.#shedding = options.shedding ?? true;
    this.#sloNs = options.sloNs !== undefined && options.sloNs > 0n ? options.sloNs : 0n;
    this.#sloPolicy =
      this.#sloNs > 0n ? { ...options.policy, maxQueueDelayNs: 0n, preferredBatchSizes: [options.policy.maxBatchSize] } : undefined;
    this.#batchIo = options.batchIo;
    this.#unsubscribe = this.#slots.onFree(() => this.#drain());
    this.#slots.expectBy?.(this.costs.computeNs);
  }

  /** The cost model the batcher decides with: its lead kind's (the one holding the most instances). */
  get cost(): CostModel {
    return this.costs.lead(this.#slots.leadKind ?? DEFAULT_KIND);
  }

  /**
   * Instances, counted at the lead kind's speed on full batches (the
   * instance count while the version runs on one kind): what the shedding
   * estimate spreads the rows ahead over.
   */
  #parallel(): number {
    const byKind = this.#slots.instancesByKind;
    if (byKind === undefined || byKind.size < 2) return this.#slots.instanceCount ?? 1;
    return this.costs.equivalentInstances(byKind, this.#policy.maxBatchSize);
  }

  get pending(): number {
    return this.#queue.size;
  }

  /** The SLO of `batching_slo_ms` in ns; 0n when the mode is off. */
  get sloNs(): bigint {
    return this.#sloNs;
  }

  /** Requests cut into a batch after their deadline had passed: the batcher's own check that none is computed late. */
  computedPastDeadline = 0;

  enqueue(job: InferJob): Promise<JobResult> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    const levelNo = levelOf(this.#policy, job.priority);
    const now = this.#clock.now();
    const deadlineNs = Number.isFinite(job.deadline)
      ? now + BigInt(Math.round((job.deadline - this.#clock.epochMs()) * 1e6))
      : undefined;
    if (job.signal.aborted || (deadlineNs !== undefined && deadlineNs <= now)) {
      return Promise.reject(this.#abortReason(job));
    }
    const level = this.#queue.level(levelNo);
    const lp = levelPolicy(this.#policy, levelNo);
    const held = this.#queue.held(level);
    if (held >= lp.maxQueueSize) {
      // Triton's words and code (scheduler_utils.cc), then what was full.
      const where = `model '${this.#key}' priority level ${levelNo} holds ${held} of ${lp.maxQueueSize} requests`;
      return Promise.reject(unavailable(`Exceeds maximum queue size: ${where}`));
    }
    // Each tenant fills at most its share of the bound, so a flood from one leaves room for the others.
    const tenant = job.tenant ?? SOLE_TENANT;
    const lane = level.queued.lane(tenant.name, tenant.weight);
    const bound = tenantQueueBound(lp.maxQueueSize, tenant.queueShare);
    if (lane.held >= bound) {
      const where = `model '${this.#key}' priority level ${levelNo}: tenant '${tenant.name}' holds ${lane.held} of its ${bound} requests (its share of ${lp.maxQueueSize})`;
      return Promise.reject(unavailable(`Exceeds maximum queue size: ${where}`));
    }
    const timeout = queueTimeoutNs(lp, job.timeoutUs);
    const { inputs, key } = batchShape(job.inputs, this.#batchIo?.ragged);
    const rows = Math.max(1, job.batchSize);
    // SLO mode: a request without a deadline of its own is due the SLO after it arrived.
    let dueNs = deadlineNs;
    if (this.#sloNs > 0n) {
      this.#arrivals.observe(rows, now);
      if (this.costs.variableShapes) this.#byShape.touch(key).observe(rows, now);
      this.#returnedRows += rows;
      if (this.#answeredNs !== undefined && this.#returnedRows >= this.#answeredRows && this.#returnedRows - rows < this.#answeredRows) {
        // With this request, as many rows as the last batch answered have come since: how long callers take to come back.
        const t = Number(now - this.#answeredNs);
        this.#returnNs = this.#returnNs === undefined ? t : this.#returnNs + RETURN_ALPHA * (t - this.#returnNs);
      }
      dueNs ??= now + this.#sloNs;
      if (tenant.name !== this.#lastTenant) {
        if (this.#lastTenant !== undefined) this.#sharedUntilNs = now + SHARED_NS;
        this.#lastTenant = tenant.name;
      }
      // Noted before the model counts as shared too: the request that makes it shared may come from the other tenant.
      this.#noteBudget(dueNs - now, now);
    }
    return new Promise<JobResult>((resolve, reject) => {
      const entry: Entry = {
        job,
        level,
        lane,
        round: 0,
        inputs,
        rows,
        shapeKey: key,
        enqueuedNs: now,
        timeoutNs: timeout === undefined ? undefined : now + timeout,
        deadlineNs: dueNs,
        resolve,
        reject,
        onAbort: () => {
          if (!this.#remove(entry)) return;
          reject(this.#abortReason(job));
        },
        prev: undefined,
        next: undefined,
        list: undefined,
      };
      this.#queue.push(entry);
      if (dueNs !== undefined && this.#shedding && this.#shedOnArrival(entry, now, dueNs, deadlineNs !== undefined)) return;
      job.signal.addEventListener('abort', entry.onAbort, { once: true });
      this.#drain();
    });
  }

  /**
   * Sheds `entry` (just queued) when the rows served before it, in full
   * batches over the instances, would run past its deadline, or, for a
   * deadline the caller set (`own`), when it waits behind a standing queue
   * (standsTooLong); true if shed. Not while nothing runs (see #shedLeadNs).
   */
  #shedOnArrival(entry: Entry, now: bigint, deadlineNs: bigint, own: boolean): boolean {
    if (!this.cost.trusted || this.#running.size === 0) return false;
    let rowsAhead = entry.level.queued.rowsThrough(entry);
    for (const l of this.#queue.levels) if (l.level < entry.level.level) rowsAhead += l.queued.rows;
    // A request that rides in the next batch cut is not shed by estimate, however late that says it ends: turned away,
    // it takes its rows out of a batch that runs anyway, and a closed loop's caller sends it again at once. A busy
    // machine's slow answers made every estimate late, the queue never reached a batch, and shedding kept it there:
    // mlp_large at 64 connections, a neighbour on one core, answered 89 req/s and refused 4,400 a second, where fixed
    // delays answered 2,439 (docs/performance.md, "Shedding that starved its own batches"). A request whose deadline
    // comes nearer than one run before the cut is still shed there (#shedLeadNs).
    if (rowsAhead <= this.#backlogRows(now)) return false;
    // The batches ahead occupy the instances for their compute; the overhead (transport, answer) is the request's own, once.
    // Both as expected (their medians), not at their floors: under overload the floors admitted requests that
    // then all ended late (150 % load: goodput 0, p99 325 ms, against 115/s and 104 ms).
    const cost = this.cost.computeNs;
    // Batches already sent are about half done on average.
    const parallel = this.#parallel();
    const running = ((cost(this.#lastRows || 1) ?? 0) * this.#running.size) / (2 * parallel);
    // The rows ahead in batches of max_batch_size: a backlog is cut that large while its members stay in time.
    // Its own batch, where shapes vary, by its shape's model once trusted, else by the kind's size curve at its
    // elements (KindCosts.shapeCost): only rows of its shape run with it.
    const ownCost = this.costs.shapeCost(this.costs.leadKind, entry.shapeKey)?.computeNs ?? cost;
    const ahead = expectedFinishNs({ rowsAhead, maxBatch: this.#policy.maxBatchSize, parallel }, cost, ownCost);
    if (ahead === undefined) return false;
    // Under a backlog, what the queue has taken per row lately, costs beyond compute included (drain-rate.ts),
    // bounds the wait from below: the rows ahead and half of those out, each at the rate of the batches it runs in.
    // Measured between answers, it should hold the way to the worker and back already; yet with the least overhead
    // added instead of the median, the SLO mode admitted more at 150 % load that then ended late (goodput 367–521/s
    // against 479–768/s in alternating slo-goodput runs, then with a mean; 428/s against 220/s with the median, but
    // 3,626 answers a second, of which 12 % in time), though it shed none at arrival at 50 %. The median stays.
    const nsPerRow = this.#drainRate.nsPerRow();
    const drained =
      nsPerRow === undefined
        ? 0
        : drainedNs(
            {
              nsPerRow,
              measuredRows: this.#drainRate.rowsPerCompletion(),
              rowsAhead,
              backlogRows: this.#backlogRows(now),
              runningRows: this.#runningRows,
              runningBatches: this.#running.size,
            },
            cost,
          );
    const expected = Math.max(ahead + running, drained) + this.cost.overheadNs;
    const until = Number(deadlineNs - now);
    // A deadline already passed (grpc-js wraps timeouts past ~24.8 days) is DEADLINE_EXCEEDED, not a shed.
    if (until <= 0) return false;
    let error: ShedError;
    if (wouldMiss(expected, until)) error = shedError(this.#key, expected / 1e6, until / 1e6);
    else if (own && standsTooLong({ rowsAhead, batchRows: this.#backlogRows(now), parallel, finishNs: expected, untilDeadlineNs: until })) {
      error = standingShedError(this.#key, rowsAhead - entry.rows, expected / 1e6, until / 1e6);
    } else return false;
    this.#queue.remove(entry);
    entry.reject(error);
    return true;
  }

  /**
   * The least an execution takes by the cost model, as decide's shedding
   * lead (0 = none): at the cut a request has waited its turn, and is shed
   * only when even the quickest run of one row lately seen would end past
   * its deadline. Nothing is shed by estimate while nothing runs: only
   * executions correct the estimate, so one that grew too pessimistic (a
   * busy machine's slow answers) would otherwise shed every request forever.
   */
  #shedLeadNs(): bigint {
    if (!this.#shedding || this.#running.size === 0 || !this.cost.trusted) return 0n;
    const ns = this.cost.computeFloorNs(1);
    return ns === undefined ? 0n : BigInt(Math.round(ns + this.cost.overheadFloorNs));
  }

  async stop(reason: Error): Promise<void> {
    this.#stopped = reason;
    this.#unsubscribe();
    this.#arm(undefined);
    for (const e of this.#queue.clear()) {
      e.job.signal.removeEventListener('abort', e.onAbort);
      e.reject(reason);
    }
    await this.#running.idle();
  }

  /** Takes an entry out of the queue (false if it had left); the caller settles it. `served`: into a batch. */
  #remove(e: Entry, served = false): boolean {
    if (!this.#queue.remove(e, served)) return false;
    e.job.signal.removeEventListener('abort', e.onAbort);
    return true;
  }

  #abortReason(job: InferJob): ServingError {
    return abortError(this.#key, this.#clock.epochMs(), job.deadline, 'before the request ran');
  }

  #expire(e: Entry, reason: ExpiryReason, now: bigint): void {
    if (reason === 'delay') {
      this.#queue.delay(e);
      return;
    }
    if (!this.#remove(e)) return;
    // The SLO passed for a request without a deadline of its own: its caller still waits, so it is shed, not timed out.
    if (reason === 'deadline' && !Number.isFinite(e.job.deadline)) reason = 'shed';
    if (reason === 'deadline') {
      e.reject(deadlineExceeded(`model '${this.#key}': deadline exceeded before the request ran`));
    } else if (reason === 'shed') {
      const until = e.deadlineNs === undefined ? 0 : Number(e.deadlineNs - now) / 1e6;
      e.reject(shedError(this.#key, ((this.cost.computeFloorNs(e.rows) ?? 0) + this.cost.overheadFloorNs) / 1e6, until));
    } else {
      // Triton's words and code (dynamic_batch_scheduler.cc), then how long it waited.
      const waitedUs = Math.round(Number(now - e.enqueuedNs) / 1000);
      e.reject(unavailable(`Request timeout expired: model '${this.#key}', after ${waitedUs} µs in the queue`));
    }
  }

  /** Applies queue timeouts that passed, wherever their requests sit (decide only sees the batch's region). */
  #sweep(now: bigint): void {
    for (let e = this.#queue.popDue(now); e !== undefined; e = this.#queue.popDue(now)) {
      this.#expire(e, levelPolicy(this.#policy, e.level.level).timeoutAction === 'DELAY' ? 'delay' : 'reject', now);
    }
  }

  #drain(): void {
    if (this.#stopped) return;
    if (this.#draining) {
      this.#again = true;
      return;
    }
    this.#draining = true;
    let waitUntil: bigint | undefined;
    try {
      do {
        this.#again = false;
        waitUntil = undefined;
        while (this.#queue.size > 0) {
          const free = this.#slots.free;
          if (free <= 0) break;
          const now = this.#clock.now();
          if (this.#sloPolicy) {
            const next = this.#cutSlo(now, free, this.#sloPolicy);
            if (typeof next === 'bigint') waitUntil = next;
            if (next !== true) break;
            continue;
          }
          const d = decide(this.#queue.levels, now, free, this.#policy, this.#shedLeadNs());
          for (const x of d.expired) this.#expire(x.entry, x.reason, now);
          if (d.kind === 'wait') waitUntil = d.untilNs;
          if (d.kind !== 'send') break;
          // A batch goes ahead into a busy instance's queue only when it is at
          // least as large as the last one cut (or full): a smaller one would be
          // frozen early, while waiting for the instance lets it grow. Under
          // steady load this keeps the instance fed without shrinking batches.
          if (this.#slots.idle <= 0 && rowsOf(d.take) < Math.min(this.#fullBatch, this.#lastRows)) break;
          if (!this.#send(d.take, now)) break;
        }
      } while (this.#again);
    } finally {
      this.#draining = false;
    }
    this.#arm(waitUntil);
  }

  /**
   * SLO mode, one step: decide walks the queues as ever (priority levels,
   * tenants' DRR order, expiry and shedding) with no delay, then decideSlo
   * says how much of that head to cut, or until when to wait. True when a
   * batch was sent, a wake-up time to wait for, or false (nothing to do).
   */
  #cutSlo(now: bigint, free: number, policy: BatchingPolicy): boolean | bigint {
    const d = decide(this.#queue.levels, now, free, policy, this.#shedLeadNs());
    for (const x of d.expired) this.#expire(x.entry, x.reason, now);
    if (d.kind !== 'send') return false;
    // Sized by the curve of the kind it will run on, where the version runs on several, and where its shapes vary by
    // its shape's, against its shape's arrivals.
    const { model, arrivals } = this.#sizingFor(d.take);
    const byShape = arrivals !== this.#arrivals;
    const busyUntilNs = freeAtNs(this.#finishes, this.#slots.instanceCount ?? 1);
    const idle = this.#slots.idle > 0;
    // A slot is freed as the worker's answer arrives, before the batch's answers go out (#send's then): rows still
    // running on an idle instance are being answered now. (With several instances, those of the busy ones count
    // too: the wait they allow is bounded by the compute it saves.)
    const answering = idle && this.#runningRows > 0;
    const s = decideSlo({
      now,
      queued: d.take,
      maxBatch: this.#fullRows(now, model),
      // A backlog grows past the efficient size only while one tenant sends: the few per cent of throughput it buys
      // are paid by whoever arrives next, and with tenants sharing the model that is another tenant, waiting for a
      // turn as long as the batch (issue #15's noisy neighbour).
      largestBatch: this.#backlogRows(now, model),
      sloNs: this.#sloNs,
      shared: now < this.#sharedUntilNs,
      idle,
      busyUntilNs,
      cost: model.estimateNs,
      compute: model.computeNs,
      // The way to the worker, from the least overhead: the typical one holds the lag of a busy gateway in reading
      // the answers, and taken as the dispatch time (then a mean) it sent every arrival ahead alone (batches of 1–6 at
      // 150 % load).
      dispatchNs: model.overheadFloorNs / 2,
      arrivalRowsPerNs: arrivals.rowsPerNs(now),
      lastArrivalNs: arrivals.lastNs,
      recentGapNs: arrivals.recentGapNs(),
      meanGapNs: arrivals.meanGapNs(),
      // The callers' return is the version's (a batch answered of one shape brings back callers of any): not waited
      // for in a batch of one shape.
      answeredNs: byShape ? undefined : answering ? now : this.#answeredNs,
      answeredRows: answering ? this.#runningRows : this.#answeredRows,
      returnedRows: answering ? 0 : this.#returnedRows,
      runningRows: this.#runningRows,
      returnNs: byShape ? undefined : this.#returnNs,
    });
    if (s.kind === 'wait') return s.untilNs;
    if (s.kind === 'idle' || s.kind === 'hold') return false;
    return this.#send(s.count === d.take.length ? d.take : d.take.slice(0, s.count), now, model);
  }

  /**
   * The cost model a batch of `take` is sized by, and the arrivals it is
   * weighed against: the lead kind's model and every arrival while the
   * version runs on one kind and one shape (the usual case: nothing is
   * asked). With several kinds, the model of the kind of the slot the
   * choice would take, so a CPU instance beside a GPU is given batches sized
   * by the CPU's curve. Where shapes vary, that kind's model of the batch's
   * shape once trusted, else its reading of the kind's size curve once that
   * is (KindCosts.shapeCost), with the arrivals of that shape alone: only
   * they can join the batch. Sized by its shape's curve against every shape's
   * arrivals, the batches of a mix of short and long rows (row_mlp, 4 and
   * 256 values, 1,000 and 350 a second) queued for seconds (p50 0.02–1.4 s
   * against 5–8 ms by the kind's model).
   */
  #sizingFor(take: readonly Entry[]): { readonly model: BatchCost; readonly arrivals: ArrivalRate } {
    const costs = this.costs;
    const byKind = this.#slots.instancesByKind;
    const mixed = byKind !== undefined && byKind.size >= 2 && this.#slots.nextKind !== undefined;
    if (!mixed && !costs.variableShapes) {
      // The same answer cut after cut: made again only when the lead kind changed.
      const model = this.cost;
      if (this.#plainSizing.model !== model) this.#plainSizing = { model, arrivals: this.#arrivals };
      return this.#plainSizing;
    }
    const kind = (mixed ? this.#slots.nextKind?.(rowsOf(take)) : undefined) ?? this.#slots.leadKind ?? DEFAULT_KIND;
    const shape = (take[0] as Entry).shapeKey;
    const shaped = costs.shapeCost(kind, shape);
    const arrivals = this.#byShape.get(shape);
    if (shaped !== undefined && arrivals !== undefined) return { model: shaped, arrivals };
    return { model: costs.of(kind), arrivals: this.#arrivals };
  }

  #plainSizing: { readonly model: BatchCost; readonly arrivals: ArrivalRate } = { model: this.costs.of(DEFAULT_KIND), arrivals: this.#arrivals };

  /** SLO mode, where shapes vary: each shape's arrivals (the SHAPES most recent), by its batch key. */
  readonly #byShape = new RecentMap<ArrivalRate>(SHAPES, () => new ArrivalRate());

  /** SLO mode: the tenant of the last arrival, and until when the model counts as shared (see SHARED_NS). */
  #lastTenant: string | undefined;
  #sharedUntilNs = 0n;
  /**
   * SLO mode: the tightest time from arrival to deadline among requests of
   * the last SHARED_NS (the SLO for those without a deadline of their own):
   * what a newcomer may wait for, when tenants share the model.
   */
  #budgetNs = 0n;
  #budgetUntilNs = 0n;

  /** Rows of the last batch cut. */
  #lastRows = 0;
  /** Rows of the batches sent and not yet answered. */
  #runningRows = 0;
  /** SLO mode: when the last batch was answered, and its rows (callers in a closed loop send again: returnWait). */
  #answeredNs: bigint | undefined;
  #answeredRows = 0;
  /** Rows arrived since the last batch was answered. */
  #returnedRows = 0;
  /** How long they took lately to reach its rows (smoothed; see SloInput.returnNs). */
  #returnNs: number | undefined;
  readonly #drainRate = new DrainRate();

  /** Rows of a full batch now (see #fullRows), for metrics. */
  get fullBatchRows(): number {
    return this.#fullRows(this.#clock.now());
  }

  /** What it knows now, for GET /v2/models/{m}/batching (batching-state.ts). */
  state(): BatcherState {
    const now = this.#clock.now();
    return {
      maxBatchSize: this.#policy.maxBatchSize,
      preferredBatchSizes: this.#policy.preferredBatchSizes,
      maxQueueDelayNs: this.#policy.maxQueueDelayNs,
      sloNs: this.#sloNs,
      queued: this.#queue.size,
      runningBatches: this.#running.size,
      fullBatchRows: this.#fullRows(now),
      sharedByTenants: this.#sloNs > 0n && now < this.#sharedUntilNs,
      arrivalRowsPerNs: this.#arrivals.rowsPerNs(now),
      drainNsPerRow: this.#drainRate.nsPerRow(),
      computedPastDeadline: this.computedPastDeadline,
    };
  }

  /**
   * Rows of a full batch: max_batch_size, or in SLO mode the size past which
   * the cost model says larger batches buy little throughput (they would
   * only make their rows and the next arrivals wait).
   */
  #batchRows(model: BatchCost): number {
    const max = this.#policy.maxBatchSize;
    return this.#sloNs > 0n ? model.efficientRows(max) : max;
  }

  /**
   * Rows of a full batch at `now`: #batchRows, and while tenants share the
   * model (SLO mode) at most what lets another tenant's request arriving as
   * it starts be served in the next batch within the tightest deadline of
   * late (newcomerRows): the throughput a larger batch buys is paid by that
   * request's wait.
   */
  #fullRows(now: bigint, model: BatchCost = this.cost): number {
    const rows = this.#batchRows(model);
    if (this.#sloNs === 0n || now >= this.#sharedUntilNs) return rows;
    // Never looser than the SLO, whatever deadlines the callers bring.
    const budget = now < this.#budgetUntilNs && this.#budgetNs < this.#sloNs ? this.#budgetNs : this.#sloNs;
    // newcomerRows walks down from the efficient size, two estimates a size; its inputs change only with a
    // timing (samples, overhead), the efficient size or the budget, and it is asked at every decision.
    const m = this.#newcomer;
    const samples = model.samples;
    const overhead = model.overheadNs;
    if (m.model !== model || m.samples !== samples || m.overhead !== overhead || m.efficient !== rows || m.budget !== budget) {
      m.model = model;
      m.samples = samples;
      m.overhead = overhead;
      m.efficient = rows;
      m.budget = budget;
      m.rows = newcomerRows(rows, Number(budget), model.computeNs, model.estimateNs);
    }
    return m.rows;
  }

  /** The last newcomerRows answer and what it was asked with (see #fullRows). */
  readonly #newcomer: { model: BatchCost | undefined; samples: number; overhead: number; efficient: number; budget: bigint; rows: number } = {
    model: undefined,
    samples: -1,
    overhead: NaN,
    efficient: 0,
    budget: 0n,
    rows: 0,
  };

  /** A request arrived with `budget` ns to its deadline: the tightest of the last SHARED_NS is kept. */
  #noteBudget(budget: bigint, now: bigint): void {
    if (budget > this.#budgetNs && now < this.#budgetUntilNs) return;
    this.#budgetNs = budget;
    this.#budgetUntilNs = now + SHARED_NS;
  }

  /**
   * Rows of the batches a backlog is cut in: the largest preferred size (or
   * max_batch_size) with fixed delays; in SLO mode max_batch_size (the
   * backlog cut), or the full batch while tenants share the model.
   */
  #backlogRows(now: bigint, model: BatchCost = this.cost): number {
    if (this.#sloNs === 0n) return this.#fullBatch;
    return now < this.#sharedUntilNs ? this.#fullRows(now, model) : this.#policy.maxBatchSize;
  }

  /** The largest preferred batch size (max_batch_size without preferences). */
  get #fullBatch(): number {
    const sizes = this.#policy.preferredBatchSizes;
    return sizes[sizes.length - 1] ?? this.#policy.maxBatchSize;
  }

  /** Cuts one batch onto a free slot (expected to run as `model` says); false when no slot could be had. */
  #send(take: readonly Entry[], now: bigint, model: BatchCost = this.cost): boolean {
    const idle = this.#slots.idle > 0;
    const rows = rowsOf(take);
    const placement = this.#slots.acquire(undefined, rows);
    if (placement === undefined) return false;
    let deadline = -Infinity;
    for (const e of take) {
      this.#remove(e, true);
      if (e.deadlineNs !== undefined && e.deadlineNs <= now) this.computedPastDeadline++;
      // The batch is worth running until its last member's deadline.
      if (e.job.deadline > deadline) deadline = e.job.deadline;
    }
    this.#lastRows = rows;
    let inputs: readonly BatchInput[];
    try {
      inputs = joinBatch(this.#batchIo, take.map((e) => e.inputs));
    } catch (error) {
      this.#slots.release(placement);
      for (const e of take) e.reject(error);
      return true;
    }
    const answer: Answer | undefined = this.#policy.preserveOrdering ? { settle: undefined } : undefined;
    if (answer) this.#answers.push(answer);
    const deliver = (settle: () => void): void => {
      if (!answer) return settle();
      answer.settle = settle;
      while (this.#answers[0]?.settle) this.#answers.shift()?.settle?.();
    };
    const run = this.#dispatcher.run(placement, inputs, requestedOutputs(take), deadline, activeTracer() ? take.map((e) => e.job.trace) : undefined, rows).then(
      (execution) => {
        const computeNs = execution.computeInputNs + execution.computeInferNs + execution.computeOutputNs;
        // Its own kind's model learns it (a GPU's timings would tell a CPU's model nothing true), and where the
        // version's shapes vary, that kind's model of its shape.
        const kind = execution.instanceKind ?? this.#slots.leadKind ?? DEFAULT_KIND;
        const cost = this.costs.of(kind);
        const shape = (take[0] as Entry).shapeKey;
        const shaped = this.costs.noteShape(kind, shape);
        cost.observe(rows, computeNs);
        shaped?.observe(rows, computeNs);
        this.costs.noteSize(kind, shape, rows, computeNs);
        const done = this.#clock.now();
        // Sent to a busy instance, its wall time includes waiting behind another batch.
        if (idle) {
          cost.observeOverhead(Number(done - now), computeNs);
          shaped?.observeOverhead(Number(done - now), computeNs);
        }
        // Busy after it, not idling by the batcher's choice (a queue delay): every instance has another batch
        // (this one is still in #running), or a full batch waits.
        const busy = this.#running.size > (this.#slots.instanceCount ?? 1) || this.#queue.size >= this.#policy.maxBatchSize;
        this.#drainRate.completed(now, done, rows, busy);
        this.#answeredNs = done;
        this.#answeredRows = rows;
        this.#returnedRows = 0;
        this.#observer?.executed(rows, execution);
        deliver(() => answerMembers(take, execution, now, rows, this.#batchIo));
      },
      (error: unknown) => deliver(() => take.forEach((e) => e.reject(error))),
    );
    this.#running.track(run);
    this.#runningRows += rows;
    let finish: bigint | undefined;
    if (this.#sloNs > 0n) {
      // When its compute ends: it reaches the worker after about half the least overhead (the rest is the answer's
      // way back; the median also holds the gateway's own lag in answering, which a busy loop makes tens of ms), and
      // sent ahead it starts when the last batch before it ends.
      let start = now + BigInt(Math.round(model.overheadFloorNs / 2));
      if (!idle) for (const f of this.#finishes) if (f > start) start = f;
      const compute = model.computeNs(rows);
      if (compute !== undefined) this.#finishes.push((finish = start + BigInt(Math.round(compute))));
    }
    void run.finally(() => {
      this.#runningRows -= rows;
      if (finish !== undefined) this.#finishes.splice(this.#finishes.indexOf(finish), 1);
    });
    return true;
  }

  /** One timer, at the sooner of decide's wake-up and the next queue timeout. */
  #arm(untilNs: bigint | undefined): void {
    let at = untilNs;
    const next = this.#stopped ? undefined : this.#queue.nextTimeoutNs();
    if (next !== undefined && (at === undefined || next < at)) at = next;
    if (at === this.#timerAt) return;
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    this.#timerAt = at;
    if (at === undefined) return;
    const ms = Math.max(0, Math.ceil(Number(at - this.#clock.now()) / 1e6));
    this.#cancelTimer = this.#clock.setTimeout(() => {
      this.#cancelTimer = undefined;
      this.#timerAt = undefined;
      if (this.#stopped) return;
      this.#sweep(this.#clock.now());
      this.#drain();
    }, ms);
  }
}

/** Outputs the batch must return: every output if any member wants all, else the union. */
function requestedOutputs(take: readonly Entry[]): string[] {
  const names = new Set<string>();
  for (const e of take) {
    if (e.job.outputs.length === 0) return [];
    for (const n of e.job.outputs) names.add(n);
  }
  return [...names];
}

function answerMembers(take: readonly Entry[], execution: ExecutionResult, cutNs: bigint, batchRows: number, batchIo: BatchIoPlan | undefined): void {
  let parts: Tensor[][];
  try {
    parts = splitBatch(batchIo, execution.outputs, take);
  } catch (error) {
    for (const e of take) e.reject(error);
    return;
  }
  // Queued in the batcher until the cut, then in the worker until the run started.
  const waitNs = execution.workerWaitNs ?? 0;
  take.forEach((e, i) => {
    const mine = parts[i] ?? [];
    const wanted = e.job.outputs;
    const outputs = wanted.length === 0 ? mine : mine.filter((t) => wanted.includes(t.name));
    e.resolve({ outputs, queueNs: Number(cutNs - e.enqueuedNs) + waitNs, execution, batchRows });
  });
}

function rowsOf(take: readonly { readonly rows: number }[]): number {
  let rows = 0;
  for (const e of take) rows += e.rows;
  return rows;
}

/**
 * When the first instance is expected to be free with nothing queued for it:
 * the `instances`-th latest expected finish of the batches in flight (the
 * latest, with one instance); undefined when fewer are in flight. Not the
 * earliest: a batch sent ahead waits behind that one, and a run late on its
 * estimate would otherwise make every arrival look due for sending ahead,
 * one row at a time.
 */
export function freeAtNs(finishes: readonly bigint[], instances: number): bigint | undefined {
  if (finishes.length === 0 || finishes.length < instances) return undefined;
  if (instances <= 1) {
    let latest = finishes[0] as bigint;
    for (const f of finishes) if (f > latest) latest = f;
    return latest;
  }
  const sorted = [...finishes].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0));
  return sorted[instances - 1];
}
