import { type ExecuteAnswer, type ExecuteCall, type ExecuteInput, type FrameTrace } from '../../core/execute-frame.js';
import { isDatatype } from '../../core/datatypes.js';
import { internal, unavailable } from '../../core/errors.js';
import { type BatchInput, type Tensor } from '../../core/tensor.js';
import { type TensorData } from '../../proto/gen/worker.js';
import { type SpanContext } from '@opentelemetry/api';
import { activeTracer, contextOf, endWithError, linksTo, modelAttributes, SpanKindOf, frameTraceOf } from '../../core/tracing.js';
import { type ExecutionResult } from './execution.js';
import { type InstanceSlots, type LoadReport, noteReport, noteTiming, type Placement } from './instance-slots.js';
import { isWorkerLost } from './worker-connection.js';

/** An input as the frame to the worker carries it: the request's bytes, or a batch's parts, as they are (no copy). */
export function toExecuteInput(t: BatchInput): ExecuteInput {
  return { name: t.name, datatype: t.datatype, shape: t.shape.map((d) => BigInt(d)), data: 'parts' in t ? t.parts : t.data };
}

export function fromTensorData(t: TensorData): Tensor {
  if (!isDatatype(t.datatype)) throw internal(`worker returned output '${t.name}' with unknown datatype '${t.datatype}'`);
  return { name: t.name, datatype: t.datatype, shape: t.shape.map((d) => Number(d)), data: t.data };
}

function toResult(response: ExecuteAnswer, placement: Placement): ExecutionResult {
  return {
    outputs: response.outputs.map(fromTensorData),
    computeInputNs: Number(response.computeInputNs),
    computeInferNs: Number(response.computeInferNs),
    computeOutputNs: Number(response.computeOutputNs),
    workerId: placement.worker.endpoint.id,
    instanceKind: placement.kind,
    workerWaitNs: response.waitNs,
  };
}


/**
 * What an answer teaches the choice of worker (how long ours took there,
 * against `expectedNs` by the cost model, then its load report); `result`
 * passed on.
 */
function noteLoad(placement: Placement, report: LoadReport, result: ExecutionResult, expectedNs: number | undefined): ExecutionResult {
  const now = performance.now();
  noteTiming(placement, result.computeInputNs + result.computeInferNs + result.computeOutputNs, now, expectedNs);
  noteReport(placement, report, now);
  return result;
}

/**
 * Sends executions of one model version to its instance slots. The caller
 * holds a slot (from `slots.acquire()`) and hands it over; the dispatcher
 * releases it. If the worker is lost before answering, the execution is
 * retried once on another worker (inference is pure), in the first slot that
 * is free there, ahead of the queued work; it fails with UNAVAILABLE when no
 * other worker is left (or at its deadline): never two answers, never none.
 */
export class Dispatcher {
  readonly #modelKey: string;
  readonly #slots: InstanceSlots;
  readonly #onWorkerLost: (workerId: string) => void;

  /**
   * `onWorkerLost` hears of a worker that failed to answer, so that it stops
   * getting work at once (its process exit may be reported later) until it
   * proves alive again.
   */
  constructor(modelKey: string, slots: InstanceSlots, onWorkerLost: (workerId: string) => void = () => {}) {
    this.#modelKey = modelKey;
    this.#slots = slots;
    this.#onWorkerLost = onWorkerLost;
  }

  async run(
    placement: Placement,
    inputs: readonly BatchInput[],
    outputs: readonly string[],
    deadline: number,
    traces?: readonly (SpanContext | undefined)[],
    /** The execution's rows, as its scheduler's cost model counts them: its timing is kept against that model's expectation. */
    rows?: number,
  ): Promise<ExecutionResult> {
    const request: ExecuteCall = { modelKey: this.#modelKey, inputs: inputs.map(toExecuteInput), outputs };
    // Expected before it runs: the scheduler learns this execution only from the answer.
    const expected = rows === undefined ? undefined : this.#slots.expectedNs(rows, placement);
    if (traces !== undefined) return this.#traced(placement, request, deadline, traces, expected);
    return this.#run(placement, request, deadline, expected);
  }

  /**
   * The batch span (child of its first sampled request, linking to each) and
   * the worker execution span under it, whose traceparent goes in the frame.
   */
  async #traced(placement: Placement, request: ExecuteCall, deadline: number, traces: readonly (SpanContext | undefined)[], expected: number | undefined): Promise<ExecutionResult> {
    const tracer = activeTracer();
    const sampled = traces.filter((t): t is SpanContext => t !== undefined);
    if (!tracer || sampled.length === 0) return this.#run(placement, request, deadline, expected);
    const rows = request.inputs[0]?.shape[0];
    const batch = tracer.startSpan(
      'fabriek.batch',
      { links: linksTo(sampled), attributes: { ...modelAttributes(this.#modelKey), 'fabriek.batch.requests': traces.length, 'fabriek.batch.size': rows === undefined ? 0 : Number(rows) } },
      contextOf(sampled[0] as SpanContext),
    );
    const worker = tracer.startSpan('fabriek.worker.execute', { kind: SpanKindOf.client, attributes: modelAttributes(this.#modelKey) }, contextOf(batch));
    try {
      const result = await this.#run(placement, request, deadline, expected, frameTraceOf(worker));
      worker.setAttribute('fabriek.worker.id', result.workerId);
      worker.end();
      batch.end();
      return result;
    } catch (error) {
      endWithError(worker, error);
      endWithError(batch, error);
      throw error;
    }
  }

  async #run(placement: Placement, request: ExecuteCall, deadline: number, expected: number | undefined, trace?: FrameTrace): Promise<ExecutionResult> {
    const first = placement.worker.endpoint.id;
    // Each slot is freed when its worker is done with the execution, which
    // can be after this call gave up at its deadline: the worker still runs
    // what it was sent, and its capacity counts it until it answers.
    try {
      const answer = await placement.worker.execute(request, deadline, this.#settle(placement), trace);
      return noteLoad(placement, answer, toResult(answer, placement), expected);
    } catch (error) {
      if (!isWorkerLost(error)) throw error;
      // #settle has taken the lost worker out of the slots already.
      const retry = await this.#slots.acquireOrWait(new Set([first]), deadline);
      if (typeof retry === 'string') {
        throw unavailable(
          `model '${this.#modelKey}': worker ${first} failed before answering and no other worker could take it${retry === 'deadline' ? ' before the deadline' : ''}: ${(error as Error).message}`,
          error,
        );
      }
      const answer = await retry.worker.execute(request, deadline, this.#settle(retry), trace);
      // Not timed against the first worker's expectation: the retry's may be another kind.
      return noteLoad(retry, answer, toResult(answer, retry), retry.kind === placement.kind ? expected : undefined);
    }
  }

  /**
   * What runs once the worker is done with an execution. A lost worker leaves
   * the slots before its slot is freed: the freed slot wakes the scheduler,
   * which must not send the next execution to the same dead worker.
   */
  #settle(placement: Placement): (lost: boolean) => void {
    let settled = false;
    return (lost) => {
      if (settled) return;
      settled = true;
      if (lost) {
        const id = placement.worker.endpoint.id;
        this.#slots.remove(id);
        this.#onWorkerLost(id);
      }
      this.#slots.release(placement);
    };
  }
}
