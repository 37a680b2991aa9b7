import { type ExecuteAnswer } from '../../core/execute-frame.js';
import { type ExecuteRequest } from '../../proto/gen/worker.js';

/**
 * A worker connection for scheduler unit tests: records what it ran (each
 * execution's first input name) and answers only when the test says so,
 * reporting `computeInferNs` of compute per execution, or what it says for
 * the execution's request (and `waitNs` in the worker for the instance, when
 * given).
 */
export class FakeWorker {
  readonly endpoint: { readonly id: string; readonly maxAheadPerInstance?: number };
  readonly ran: string[] = [];
  readonly #pending: (() => void)[] = [];

  /** `maxAheadPerInstance`: as a worker the gateway started (absent: a registered one). */
  constructor(
    private readonly computeInferNs: bigint | ((request: ExecuteRequest) => bigint) = 0n,
    maxAheadPerInstance?: number,
    private readonly waitNs?: number,
  ) {
    this.endpoint = maxAheadPerInstance === undefined ? { id: 'w0' } : { id: 'w0', maxAheadPerInstance };
  }

  /** Like WorkerConnection.execute: `done` says the worker no longer holds the execution. */
  execute(request: ExecuteRequest, _deadline: number, done?: (lost: boolean) => void): Promise<ExecuteAnswer> {
    this.ran.push(request.inputs[0]?.name ?? '?');
    return new Promise((resolve) => {
      this.#pending.push(() => {
        done?.(false);
        const computeInferNs = typeof this.computeInferNs === 'bigint' ? this.computeInferNs : this.computeInferNs(request);
        const answer = { outputs: [], computeInputNs: 0n, computeInferNs, computeOutputNs: 0n };
        resolve(this.waitNs === undefined ? answer : { ...answer, outstanding: 0, waitNs: this.waitNs });
      });
    });
  }

  get inFlight(): number {
    return this.#pending.length;
  }

  /** Answers the oldest execution and lets the schedulers react. */
  async finishOne(): Promise<void> {
    this.#pending.shift()?.();
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  }

  async finishAll(): Promise<void> {
    while (this.#pending.length > 0) await this.finishOne();
  }
}
