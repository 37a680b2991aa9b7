import { type ExecuteRequest, type ExecuteResponse } from '../../proto/gen/worker.js';

/**
 * A worker connection for scheduler unit tests: records what it ran (each
 * execution's first input name) and answers only when the test says so,
 * reporting `computeInferNs` of compute per execution.
 */
export class FakeWorker {
  readonly endpoint: { readonly id: string; readonly maxAheadPerInstance?: number };
  readonly ran: string[] = [];
  readonly #pending: (() => void)[] = [];

  /** `maxAheadPerInstance`: as a worker the gateway started (absent: a registered one). */
  constructor(
    private readonly computeInferNs = 0n,
    maxAheadPerInstance?: number,
  ) {
    this.endpoint = maxAheadPerInstance === undefined ? { id: 'w0' } : { id: 'w0', maxAheadPerInstance };
  }

  /** Like WorkerConnection.execute: `done` says the worker no longer holds the execution. */
  execute(request: ExecuteRequest, _deadline: number, done?: (lost: boolean) => void): Promise<ExecuteResponse> {
    this.ran.push(request.inputs[0]?.name ?? '?');
    return new Promise((resolve) => {
      this.#pending.push(() => {
        done?.(false);
        resolve({ outputs: [], computeInputNs: 0n, computeInferNs: this.computeInferNs, computeOutputNs: 0n } as unknown as ExecuteResponse);
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
