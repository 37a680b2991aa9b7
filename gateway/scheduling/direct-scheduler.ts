import { resourceExhausted, type ServingError } from '../../core/errors.js';
import { type BatchInput } from '../../core/tensor.js';
import { type DirectState } from '../batching/batching-state.js';
import { executionsAhead } from '../../core/pipelining.js';
import { RunningCount } from '../../core/running-count.js';
import { type FairEntry, FairQueue, SOLE_TENANT, tenantQueueBound } from '../batching/fair-queue.js';
import { type CostModel } from '../../core/cost-model.js';
import { KindCosts } from '../../core/kind-costs.js';
import { SizeScaledCost } from '../../core/size-scaled-cost.js';
import { shedError, standingShedError, standsTooLong } from '../batching/shedding.js';
import { elementsPerRowOf } from '../batching/batch-rows.js';
import { type Dispatcher } from './dispatcher.js';
import { abortError, type ExecutionObserver, type InferJob, type JobResult, type Scheduler } from './execution.js';
import { type InstanceSlots, type Placement } from './instance-slots.js';
import { type BatchIoPlan } from '../../models/config/batch-io-config.js';
import { joinBatch, splitBatch } from '../batching/batch-io.js';
import { RunShapes } from './run-shapes.js';

/** Weight of the latest execution in the moving mean of compute that sizes the executions sent ahead. */
const RUN_NS_ALPHA = 0.1;

export interface DirectSchedulerOptions {
  readonly modelKey: string;
  readonly slots: InstanceSlots;
  readonly dispatcher: Dispatcher;
  readonly maxQueueSize: number;
  readonly observer?: ExecutionObserver | undefined;
  /** Wall clock in ms, the clock of jobs' deadlines (tests pass their own). */
  readonly now?: () => number;
  /** Ragged inputs, batch inputs and batch outputs of a batching model without dynamic batching. */
  readonly batchIo?: BatchIoPlan | undefined;
  /** The model batches (max_batch_size > 0): its inputs' first dim is rows, not part of their shape. */
  readonly batched?: boolean;
}

interface Waiting extends FairEntry<Waiting> {
  readonly job: InferJob;
  /** Its shape key (RunShapes), taken once at arrival. */
  readonly shape: string;
  readonly enqueuedAt: bigint;
  readonly resolve: (r: JobResult) => void;
  readonly reject: (e: unknown) => void;
  readonly onAbort: () => void;
}

/**
 * One request per execution: what Triton does for a model without dynamic
 * batching. Jobs wait in a bounded queue until an instance slot is free,
 * first come first served within a tenant and by weighted round robin
 * between tenants (fair-queue.ts), each tenant holding at most its share of
 * the bound. A cancelled or expired job leaves the queue and never runs.
 *
 * Early shedding, as the batcher does: from the compute time the worker
 * reports (the batcher's CostModel, by rows), a request that cannot finish before its
 * deadline is refused on arrival, or when its turn comes, with Triton's
 * timeout status, and never computed. Both estimates are lower bounds (on
 * arrival only its own tenant's queue is counted ahead of it, and no
 * transport), so a shed request would have missed for certain by them.
 * Nothing is shed while nothing runs: only executions correct the estimate.
 * Where the version's shapes vary (run-shapes.ts), a request's own run is
 * estimated by its shape's model once trusted, and each request ahead, of a
 * shape not known here, at the quickest run lately.
 *
 * Short runs are sent several ahead per instance (core/pipelining.ts), from
 * a moving mean of the executions' compute time: a worker then takes and
 * answers them several to a socket read, not one wake-up each.
 */
export class DirectScheduler implements Scheduler {
  readonly #modelKey: string;
  readonly #slots: InstanceSlots;
  readonly #dispatcher: Dispatcher;
  readonly #maxQueueSize: number;
  readonly #observer: ExecutionObserver | undefined;
  readonly #queue = new FairQueue<Waiting>();
  readonly #running = new RunningCount();
  readonly #unsubscribe: () => void;
  readonly #now: () => number;
  readonly #batchIo: BatchIoPlan | undefined;
  readonly #shapes: RunShapes;
  #stopped: Error | undefined;
  /** Execution time by rows, per instance kind, learned from this version's executions (as the batcher's). */
  readonly costs = new KindCosts(elementsPerRowOf);
  /** Moving mean of an execution's compute (ns), for how many to send ahead; 0 until one ran. */
  #runNs = 0;

  constructor(options: DirectSchedulerOptions) {
    this.#batchIo = options.batchIo;
    this.#now = options.now ?? Date.now;
    this.#modelKey = options.modelKey;
    this.#observer = options.observer;
    this.#slots = options.slots;
    this.#dispatcher = options.dispatcher;
    this.#maxQueueSize = options.maxQueueSize;
    this.#shapes = new RunShapes(options.batched ?? false);
    this.#unsubscribe = this.#slots.onFree(() => this.#drain());
    this.#slots.expectBy(this.costs.computeNs);
  }

  /** The cost model it decides with: its lead kind's (the one holding the most instances). */
  get cost(): CostModel {
    return this.costs.lead(this.#slots.leadKind);
  }

  get pending(): number {
    return this.#queue.size;
  }

  /** What it knows now, for GET /v2/models/{m}/batching (batching-state.ts). */
  state(): DirectState {
    return { queued: this.#queue.size, runningExecutions: this.#running.size };
  }

  enqueue(job: InferJob): Promise<JobResult> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    if (job.signal.aborted) return Promise.reject(abortError(this.#modelKey, this.#now(), job.deadline, 'before the request ran'));
    if (this.#queue.size >= this.#maxQueueSize) {
      return Promise.reject(
        resourceExhausted(`model '${this.#modelKey}': queue is full (${this.#maxQueueSize} requests waiting)`),
      );
    }
    const tenant = job.tenant ?? SOLE_TENANT;
    const lane = this.#queue.lane(tenant.name, tenant.weight);
    const bound = tenantQueueBound(this.#maxQueueSize, tenant.queueShare);
    if (lane.held >= bound) {
      return Promise.reject(
        resourceExhausted(
          `model '${this.#modelKey}': queue is full for tenant '${tenant.name}' (${lane.held} requests waiting, its share of ${this.#maxQueueSize})`,
        ),
      );
    }
    // Its own tenant's queue runs before it, over the instances, then its own execution.
    const ahead = Math.floor(lane.held / Math.max(1, this.#slots.instanceCount));
    // Its shape's key, once: the shedding and the cost models read it (a model of one shape builds it once).
    const shape = this.#shapes.keyOf(job.inputs);
    const shed = this.#shed(job, shape, ahead + 1, lane.held + 1);
    if (shed) return Promise.reject(shed);
    if (this.#queue.size === 0 && this.#slots.free > 0) {
      // Nothing waits and an instance is free: it runs now, without a place in the
      // queue (whose fair-share state an entry leaving at once would not change).
      const placement = this.#slots.acquire(undefined, Math.max(1, job.batchSize));
      if (placement) return this.#run(job, shape, placement, 0);
    }
    return new Promise<JobResult>((resolve, reject) => {
      const waiting: Waiting = {
        job,
        shape,
        enqueuedAt: process.hrtime.bigint(),
        resolve,
        reject,
        onAbort: () => {
          if (this.#queue.remove(waiting)) reject(abortError(this.#modelKey, this.#now(), job.deadline, 'before the request ran'));
        },
        rows: 1,
        lane,
        round: 0,
        prev: undefined,
        next: undefined,
        list: undefined,
      };
      job.signal.addEventListener('abort', waiting.onAbort, { once: true });
      this.#queue.push(waiting);
      this.#drain();
    });
  }

  async stop(reason: Error): Promise<void> {
    this.#stopped = reason;
    this.#unsubscribe();
    const waiting = [...this.#queue];
    for (const w of waiting) {
      this.#queue.remove(w);
      w.job.signal.removeEventListener('abort', w.onAbort);
      w.reject(reason);
    }
    await this.#running.idle();
  }

  /**
   * The shed error when `job` would finish past its deadline after `runs`
   * executions of its size, by a trusted estimate; on arrival (`queued`: the
   * requests of its tenant's queue through its own), also when it would wait
   * behind a standing queue (standsTooLong, each request its own execution).
   */
  #shed(job: InferJob, shape: string, runs: number, queued?: number): ServingError | undefined {
    const cost = this.cost;
    if (!Number.isFinite(job.deadline) || this.#running.size === 0 || !cost.trusted) return undefined;
    const rows = Math.max(1, job.batchSize);
    let own = cost.computeNs(rows) ?? 0;
    let each = own;
    if (this.costs.variableShapes) {
      // Those ahead, of shapes not known here, at the quickest run lately; its own run by its shape's model once
      // trusted, else by the kind's size curve at its elements once that is (its quickest: a reading, not a
      // measurement), else at that quickest run too: the mix's median would shed a small image of a shape not seen yet.
      each = cost.computeFloorNs(rows) ?? each;
      const shaped = this.costs.shapeCost(this.costs.leadKind, shape);
      own = (shaped instanceof SizeScaledCost ? shaped.computeFloorNs(rows) : shaped?.computeNs(rows)) ?? each;
    }
    const finishMs = ((runs - 1) * each + own) / 1e6;
    const untilMs = job.deadline - this.#now();
    // A deadline already passed is the dispatcher's DEADLINE_EXCEEDED, not a shed.
    if (!(untilMs > 0)) return undefined;
    if (finishMs > untilMs) return shedError(this.#modelKey, finishMs, untilMs);
    const byKind = this.#slots.instancesByKind;
    const parallel = byKind.size < 2 ? this.#slots.instanceCount : this.costs.equivalentInstances(byKind, Math.max(1, job.batchSize));
    if (queued !== undefined && standsTooLong({ rowsAhead: queued, batchRows: 1, parallel, finishNs: finishMs * 1e6, untilDeadlineNs: untilMs * 1e6 })) {
      return standingShedError(this.#modelKey, queued - 1, finishMs, untilMs, 'requests');
    }
    return undefined;
  }

  #drain(): void {
    while (this.#queue.size > 0) {
      if (this.#slots.free <= 0) return;
      const w = this.#queue[Symbol.iterator]().next().value as Waiting;
      const shed = this.#shed(w.job, w.shape, 1);
      if (shed) {
        this.#queue.remove(w);
        w.job.signal.removeEventListener('abort', w.onAbort);
        w.reject(shed);
        continue;
      }
      const placement = this.#slots.acquire(undefined, Math.max(1, w.job.batchSize));
      if (!placement) return;
      this.#queue.served(w);
      this.#queue.remove(w);
      w.job.signal.removeEventListener('abort', w.onAbort);
      this.#run(w.job, w.shape, placement, Number(process.hrtime.bigint() - w.enqueuedAt)).then(w.resolve, w.reject);
    }
  }

  /** Runs `job` in the slot it holds. */
  #run(job: InferJob, shape: string, placement: Placement, queueNs: number): Promise<JobResult> {
    const batchIo = this.#batchIo;
    // A request alone is still a batch to a ragged model: its ragged inputs flat, its batch inputs made.
    let inputs: readonly BatchInput[] = job.inputs;
    if (batchIo) {
      try {
        inputs = joinBatch(batchIo, [job.inputs]);
      } catch (error) {
        this.#slots.release(placement);
        return Promise.reject(error);
      }
    }
    const run = this.#dispatcher.run(placement, inputs, job.outputs, job.deadline, job.trace ? [job.trace] : undefined, Math.max(1, job.batchSize)).then((execution) => {
      const computeNs = execution.computeInputNs + execution.computeInferNs + execution.computeOutputNs;
      const kind = execution.instanceKind ?? this.#slots.leadKind;
      const rows = Math.max(1, job.batchSize);
      this.costs.of(kind).observe(rows, computeNs);
      // Where its shapes vary, each shape's model learns its own runs too (a version of one shape keeps none).
      this.costs.noteShape(kind, shape)?.observe(rows, computeNs);
      this.costs.noteSize(kind, shape, rows, computeNs);
      this.#runNs = this.#runNs === 0 ? computeNs : this.#runNs + RUN_NS_ALPHA * (computeNs - this.#runNs);
      this.#slots.setAhead(executionsAhead(this.#runNs));
      this.#observer?.executed(job.batchSize, execution);
      // Queued here until dispatched, then in the worker until the run started.
      const outputs = batchIo ? (splitBatch(batchIo, execution.outputs, [{ rows: Math.max(1, job.batchSize), inputs: job.inputs }])[0] ?? []) : execution.outputs;
      return { outputs, queueNs: queueNs + (execution.workerWaitNs ?? 0), execution };
    });
    this.#running.track(run);
    return run;
  }
}
