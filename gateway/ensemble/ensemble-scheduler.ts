// Runs an ensemble's steps as a DAG. Each step goes through its own model's
// scheduler, so it batches with that model's other traffic; a step starts as
// soon as the tensors it reads exist, so independent steps run at once.
// Intermediates never leave the gateway; only the ensemble's outputs are
// answered. A failing step fails the request with its status, naming it.
// A step whose model has response_cache on is answered from the cache when
// it can (or by an identical request computing it at the same time), and
// fills it when it runs, with the keys a direct request uses.
import { status } from '@grpc/grpc-js';
import { isServingError, permissionDenied, ServingError } from '../../core/errors.js';
import { type ModelSignature } from '../../core/signature.js';
import { type ModelConfig } from '../../proto/gen/model_config.js';
import { type CacheLookup, type ResponseCache } from '../cache/response-cache.js';
import { OPEN_TENANT } from '../tenants/tenant.js';
import { type Tensor } from '../../core/tensor.js';
import { toClientShapes, toModelShapes } from '../inference/reshape.js';
import { abortError, type ExecutionResult, type InferJob, type JobResult, type Scheduler } from '../scheduling/execution.js';
import { type ModelVersionStatistics } from '../stats/model-statistics.js';
import { validateInputs } from '../validate-request.js';
import { activeTracer, contextOf, endOk, endWithError } from '../../core/tracing.js';
import { type EnsemblePlan, type PlannedStep } from './ensemble-plan.js';

/** A step model's serving version, resolved per request (it may have been reloaded). */
export interface StepTarget {
  readonly config: ModelConfig;
  readonly signature: ModelSignature;
  readonly scheduler: Scheduler;
  readonly stats: ModelVersionStatistics;
}

/** Throws a ServingError (UNAVAILABLE, NOT_FOUND) when the step's model cannot serve now. */
export type ResolveStep = (model: string, version: string) => StepTarget;

interface Totals {
  queueNs: number;
  computeInputNs: number;
  computeInferNs: number;
  computeOutputNs: number;
}

export class EnsembleScheduler implements Scheduler {
  readonly #name: string;
  readonly #plan: EnsemblePlan;
  readonly #resolve: ResolveStep;
  readonly #outputs: ReadonlySet<string>;
  readonly #cache: ResponseCache | undefined;
  #running = 0;
  #idle: (() => void) | undefined;
  #stopped: Error | undefined;

  /** `cache`: the gateway's response cache, for steps whose model has response_cache on. */
  constructor(name: string, plan: EnsemblePlan, resolve: ResolveStep, cache?: ResponseCache) {
    this.#cache = cache;
    this.#name = name;
    this.#plan = plan;
    this.#resolve = resolve;
    this.#outputs = new Set(plan.outputs);
  }

  /** An ensemble queues nothing itself: its steps wait in their models' queues. */
  get pending(): number {
    return 0;
  }

  async enqueue(job: InferJob): Promise<JobResult> {
    if (this.#stopped) throw this.#stopped;
    this.#running++;
    try {
      return await this.#run(job);
    } finally {
      if (--this.#running === 0) this.#idle?.();
    }
  }

  async stop(reason: Error): Promise<void> {
    this.#stopped = reason;
    if (this.#running === 0) return;
    await new Promise<void>((resolve) => {
      this.#idle = resolve;
    });
  }

  async #run(job: InferJob): Promise<JobResult> {
    const tensors = new Map<string, Tensor>();
    for (const t of job.inputs) tensors.set(t.name, t);
    const totals: Totals = { queueNs: 0, computeInputNs: 0, computeInferNs: 0, computeOutputNs: 0 };
    // Steps are in dependency order, so each one's producers are already in the map.
    const ready = new Map<string, Promise<void>>();
    const runs: Promise<void>[] = [];
    for (const step of this.#plan.steps) {
      const waits: Promise<void>[] = [];
      for (const [, tensor] of step.inputs) {
        const producer = ready.get(tensor);
        if (producer) waits.push(producer);
      }
      const run = Promise.all(waits).then(() => this.#step(step, tensors, job, totals));
      for (const [, tensor] of step.outputs) ready.set(tensor, run);
      runs.push(run);
    }
    // A failed step is reported whatever else fails after it; nothing is left unawaited.
    const settled = await Promise.allSettled(runs);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const outputs: Tensor[] = [];
    for (const t of tensors.values()) if (this.#isOutput(t.name, job.outputs)) outputs.push(t);
    const execution: ExecutionResult = { outputs, workerId: 'ensemble', ...totals };
    return { outputs, queueNs: totals.queueNs, execution };
  }

  /** Ensemble outputs the caller asked for (all when it named none); intermediates never. */
  #isOutput(name: string, requested: readonly string[]): boolean {
    if (!this.#outputs.has(name)) return false;
    return requested.length === 0 || requested.includes(name);
  }

  /** Stores the step's outputs under the ensemble's tensor names; answers them in the step's order. */
  #keep(step: PlannedStep, outputs: readonly Tensor[], tensors: Map<string, Tensor>): Tensor[] {
    return step.outputs.map(([output, tensor]) => {
      const t = outputs.find((o) => o.name === output);
      if (!t) throw new ServingError(status.INTERNAL, `the model did not return output '${output}'`);
      tensors.set(tensor, { ...t, name: tensor });
      return t;
    });
  }

  async #step(step: PlannedStep, tensors: Map<string, Tensor>, job: InferJob, totals: Totals): Promise<void> {
    const label = `ensemble '${this.#name}' step ${step.index} ('${step.model}')`;
    const started = process.hrtime.bigint();
    let target: StepTarget | undefined;
    let cached: CacheLookup | undefined;
    // Traced: a span per step under the request's, which the step's batch links to.
    const span = job.trace
      ? activeTracer()?.startSpan(
          'fabriek.ensemble.step',
          { attributes: { 'fabriek.ensemble': this.#name, 'fabriek.ensemble.step': step.index, 'fabriek.model': step.model } },
          contextOf(job.trace),
        )
      : undefined;
    try {
      // The ensemble's grant is not enough: the caller must be allowed each step's model too.
      if (job.tenant?.models && !job.tenant.models.allows(step.model)) {
        throw permissionDenied(`tenant '${job.tenant.name}' may not use model '${step.model}'`);
      }
      target = this.#resolve(step.model, step.version);
      const inputs = step.inputs.map(([input, tensor]) => ({ ...(tensors.get(tensor) as Tensor), name: input }));
      const wanted = step.outputs.map(([output]) => output);
      const { batchSize } = validateInputs(target.signature, inputs, wanted);
      const tenant = job.tenant?.name ?? OPEN_TENANT.name;
      cached = this.#cache?.lookupFor(step.model, Number(target.signature.version), target.config, { inputs, outputs: wanted }, tenant);
      const found = cached && (await cached.answer(job.signal, () => abortError(step.model, Date.now(), job.deadline, 'while an identical request was computed')));
      if (found && cached) {
        span?.setAttribute('fabriek.cache', found.coalesced ? 'coalesced' : 'hit');
        target.stats.cacheHit(Number(process.hrtime.bigint() - started), cached.lookupNs);
        this.#keep(step, found.outputs, tensors);
        if (span) endOk(span);
        return;
      }
      const result = await target.scheduler.enqueue({
        inputs: toModelShapes(target.signature, inputs),
        outputs: wanted,
        signal: job.signal,
        deadline: job.deadline,
        batchSize,
        ...(job.priority !== undefined ? { priority: job.priority } : {}),
        ...(job.timeoutUs !== undefined ? { timeoutUs: job.timeoutUs } : {}),
        ...(job.tenant !== undefined ? { tenant: job.tenant } : {}),
        ...(span ? { trace: span.spanContext() } : {}),
        // A stateful step sees the ensemble's sequence, as in Triton.
        ...(job.sequence !== undefined ? { sequence: job.sequence } : {}),
      });
      span?.setAttribute('fabriek.queue_time_us', Math.round(result.queueNs / 1000));
      target.stats.succeeded(batchSize, Number(process.hrtime.bigint() - started), result);
      totals.queueNs += result.queueNs;
      totals.computeInputNs += result.execution.computeInputNs;
      totals.computeInferNs += result.execution.computeInferNs;
      totals.computeOutputNs += result.execution.computeOutputNs;
      const produced = this.#keep(step, toClientShapes(target.signature, result.outputs), tensors);
      cached?.put(produced, target.stats);
      if (span) endOk(span);
    } catch (error) {
      // Identical requests waiting for this step's answer compute their own.
      cached?.abandon();
      target?.stats.failed(Number(process.hrtime.bigint() - started), error);
      if (span) endWithError(span, error);
      const code = isServingError(error) ? error.code : status.INTERNAL;
      const message = error instanceof Error ? error.message : String(error);
      throw new ServingError(code, `${label}: ${message}`, { cause: error });
    }
  }
}
