import { type ExecuteAnswer, type ExecuteCall, type FrameTrace } from '../../core/execute-frame.js';
import { type LoadModelRequest, type LoadModelResponse, type StatusResponse } from '../../proto/gen/worker.js';

/** Where a worker is and what it runs on. */
export interface WorkerEndpoint {
  readonly id: string;
  /** `unix:/path.sock`, `host:port`, or `in-process` (the gateway's own process). */
  readonly address: string;
  readonly deviceKind: 'cpu' | 'gpu';
  readonly deviceId: number;
  /**
   * Executions per instance this gateway may send ahead of the running one:
   * the share of the worker's queue that is this gateway's. A worker the
   * gateway started has its queue sized for MAX_EXECUTIONS_AHEAD_PER_INSTANCE
   * (core/pipelining.ts); absent (a registered worker, shared with gateways
   * this one does not know of): EXECUTIONS_AHEAD_PER_INSTANCE.
   */
  readonly maxAheadPerInstance?: number;
}

/**
 * What the gateway asks of a worker, wherever it runs: in a process of its own
 * over a socket (worker-connection.ts), or in the gateway's process
 * (in-process-workers.ts). The scheduler, the slots and the model manager see
 * only this.
 */
export interface WorkerLink {
  readonly endpoint: WorkerEndpoint;
  loadModel(request: LoadModelRequest, timeoutMs?: number): Promise<LoadModelResponse>;
  unloadModel(modelKey: string, timeoutMs?: number): Promise<void>;
  /**
   * Runs a batch. `done` is called exactly once when the worker no longer
   * holds it: when it answers (also after the deadline made this promise
   * reject: the worker still runs what it was sent), when the worker is lost,
   * or at once when it was never sent; `lost` says the worker is gone (or
   * refused it while draining). A scheduler frees the slot there, so its
   * count of executions in the worker stays true, and on `lost` takes the
   * worker out of its slots first, so nothing more is sent to it.
   */
  execute(request: ExecuteCall, deadline: number, done?: (lost: boolean) => void, trace?: FrameTrace): Promise<ExecuteAnswer>;
  status(timeoutMs?: number): Promise<StatusResponse>;
  /** Called (with a reason) each time the worker stops answering; returns the unsubscribe function. */
  onUnresponsive(listener: (reason: string) => void): () => void;
  close(): void;
}
