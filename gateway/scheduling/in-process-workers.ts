import { status as GrpcStatus } from '@grpc/grpc-js';
import { type Logger } from 'pino';
import { ServingError } from '../../core/errors.js';
import { type CallEntry, CallTable } from '../../core/call-table.js';
import { MAX_EXECUTIONS_AHEAD_PER_INSTANCE } from '../../core/pipelining.js';
import { type ExecuteAnswer, type ExecuteCall, type ExecuteInput, type FrameTrace } from '../../core/execute-frame.js';
import { type LoadModelRequest, type LoadModelResponse, type StatusResponse, type TensorData } from '../../proto/gen/worker.js';
import { parseWorkerArgs } from '../../worker/cli-args.js';
import { createWorkerRuntime, type WorkerRuntime } from '../../worker/runtime.js';
import { createWorkerCalls, type WorkerCalls } from '../../worker/service.js';
import { bufferOf, joinToArrayBuffer } from '../../worker/tensor-bytes.js';
import { type LocalWorkerSpec, nextRestart } from './worker-supervisor.js';
import { WorkerLostError } from './worker-connection.js';
import { type WorkerEndpoint, type WorkerLink } from './worker-link.js';

// `fabriek serve --local-workers in-process`: each local worker's ONNX Runtime
// threads and sessions live in the gateway's own process, and the gateway calls
// them directly. A request then costs no socket write and read each way, no
// frame encoding, and no wake-up of a second process: on a small model a
// quarter to a third of the server's CPU per request here, and more of its
// latency at low load. The
// price is isolation: a native crash in ONNX Runtime ends the gateway too
// (a worker process would have been restarted). A thread that dies is still
// survived: the worker starts afresh and its models load again, as after a
// worker process's restart.

/** The address an in-process worker reports (metrics, logs, errors). */
export const IN_PROCESS_ADDRESS = 'in-process';

export interface InProcessWorkersOptions {
  readonly maxMessageBytes: number;
  readonly log: Logger;
  /** A worker is up (first start or after its threads failed) and reachable through `link`. */
  readonly onUp: (link: WorkerLink) => Promise<void>;
  /** A worker went away; its runs in flight have failed as lost. */
  readonly onDown: (workerId: string, reason: string) => void;
  /** `fabriek worker` flags for each worker (e.g. --inline-run-us). */
  readonly workerArgs?: readonly string[];
  /** Makes a worker's threads and model host (tests pass their own). */
  readonly createRuntime?: typeof createWorkerRuntime;
}

interface Running {
  readonly runtime: WorkerRuntime;
  readonly link: InProcessLink;
}

/** The local workers of a gateway, in its own process (the counterpart of WorkerSupervisor). */
export class InProcessWorkers {
  readonly #specs: readonly LocalWorkerSpec[];
  readonly #options: InProcessWorkersOptions;
  readonly #running = new Map<string, Running>();
  #stopping = false;

  constructor(specs: readonly LocalWorkerSpec[], options: InProcessWorkersOptions) {
    this.#specs = specs;
    this.#options = options;
  }

  async start(): Promise<void> {
    await Promise.all(this.#specs.map((spec) => this.#launch(spec, 0)));
  }

  /** Every in-process worker is this process. */
  pids(): Map<string, number> {
    return new Map([...this.#running.keys()].map((id) => [id, process.pid]));
  }

  stopRestarting(): void {
    this.#stopping = true;
  }

  /** Nothing to pass on: its workers log through children of the gateway's logger, which follow its level. */
  setLogLevel(): void {}

  /** Closes every worker's sessions and threads (the gateway has finished its requests by now). */
  async stop(): Promise<void> {
    this.#stopping = true;
    const running = [...this.#running.values()];
    this.#running.clear();
    await Promise.all(running.map((r) => this.#close(r)));
  }

  async #close(running: Running): Promise<void> {
    running.link.close();
    await running.runtime.host.closeAll().catch(() => undefined);
    await running.runtime.pool.close().catch(() => undefined);
  }

  async #launch(spec: LocalWorkerSpec, restarts: number): Promise<void> {
    const { log } = this.#options;
    const device = spec.deviceKind === 'gpu' ? `gpu:${spec.deviceId}` : 'cpu';
    // The defaults a worker process of this gateway would take (threads, inline runs, queues).
    const args = parseWorkerArgs([
      '--listen',
      IN_PROCESS_ADDRESS,
      '--device',
      device,
      '--worker-id',
      spec.id,
      '--max-message-bytes',
      String(this.#options.maxMessageBytes),
      ...(this.#options.workerArgs ?? []),
    ]);
    const logger = log.child({ workerId: spec.id });
    const endpoint: WorkerEndpoint = { ...spec, address: IN_PROCESS_ADDRESS, maxAheadPerInstance: MAX_EXECUTIONS_AHEAD_PER_INSTANCE };
    let running: Running | undefined;
    const startedAt = Date.now();
    const runtime = (this.#options.createRuntime ?? createWorkerRuntime)(args, logger, (error) => {
      if (running === undefined || this.#running.get(spec.id) !== running) return;
      logger.error({ err: error }, 'an ONNX Runtime thread died; starting the in-process worker afresh');
      this.#running.delete(spec.id);
      running.link.lose(`worker ${spec.id}: an ONNX Runtime thread died`);
      this.#options.onDown(spec.id, `worker ${spec.id}: an ONNX Runtime thread died (${error.message})`);
      void this.#close(running);
      if (this.#stopping) return;
      // Backs off on a crash loop, as a worker process's restarts do.
      const { attempt, delay } = nextRestart(startedAt, restarts);
      setTimeout(() => {
        if (this.#stopping) return;
        this.#launch(spec, attempt).catch((e: unknown) => log.error({ worker: spec.id, err: e }, 'in-process worker restart failed'));
      }, delay).unref();
    });
    const calls = createWorkerCalls({ host: runtime.host, workerId: spec.id, device: args.device, logger });
    running = { runtime, link: new InProcessLink(endpoint, calls) };
    this.#running.set(spec.id, running);
    log.info({ worker: spec.id, device, ortThreads: runtime.pool.size }, 'worker up (in the gateway process)');
    await this.#options.onUp(running.link);
  }
}

/** A batch's inputs as the worker takes them, and whether their bytes are still the gateway's. */
function toRequestInputs(inputs: readonly ExecuteInput[]): { inputs: TensorData[]; borrowed: boolean } {
  let borrowed = false;
  const out: TensorData[] = [];
  for (const input of inputs) {
    let data: Buffer;
    if (input.data instanceof Uint8Array) {
      data = Buffer.isBuffer(input.data) ? input.data : Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength);
      borrowed = true;
    } else {
      // A batch's rows, joined once into a buffer of its own, which the worker may move to its thread.
      data = bufferOf(joinToArrayBuffer(input.data));
    }
    out.push({ name: input.name, datatype: input.datatype, shape: input.shape as bigint[], data });
  }
  return { inputs: out, borrowed };
}

/** A run in flight in an in-process worker, failed as lost if its threads die. */
interface RunningCall extends CallEntry {
  readonly onLost: (reason: string) => void;
}

/** The gateway's link to a worker in its own process: direct calls, no frames. */
export class InProcessLink implements WorkerLink {
  readonly endpoint: WorkerEndpoint;
  readonly #calls: WorkerCalls;
  #lost: string | undefined;
  /** Runs not yet answered, failed as lost if the worker's threads die (not a Set: see core/call-table.ts). */
  readonly #running = new CallTable<RunningCall>();

  constructor(endpoint: WorkerEndpoint, calls: WorkerCalls) {
    this.endpoint = endpoint;
    this.#calls = calls;
  }

  loadModel(request: LoadModelRequest): Promise<LoadModelResponse> {
    if (this.#lost !== undefined) return Promise.reject(this.#lostError(this.#lost));
    return this.#calls.loadModel(request, 0);
  }

  unloadModel(modelKey: string): Promise<void> {
    if (this.#lost !== undefined) return Promise.reject(this.#lostError(this.#lost));
    return this.#calls.unloadModel(modelKey, 0);
  }

  status(): Promise<StatusResponse> {
    if (this.#lost !== undefined) return Promise.reject(this.#lostError(this.#lost));
    return Promise.resolve(this.#calls.status());
  }

  /** Never: a wedged in-process worker is a wedged gateway, which no ping of its own would see. */
  onUnresponsive(): () => void {
    return () => undefined;
  }

  close(): void {
    this.lose(`connection to worker ${this.endpoint.id} was closed`);
  }

  /** The worker is gone: its runs in flight and every later call fail as lost (retried elsewhere, if anywhere). */
  lose(reason: string): void {
    this.#lost ??= reason;
    // Each one's onLost takes it out of the table.
    for (const run of this.#running.entries()) run.onLost(reason);
  }

  execute(call: ExecuteCall, deadline: number, done?: (lost: boolean) => void, trace?: FrameTrace): Promise<ExecuteAnswer> {
    if (this.#lost !== undefined) {
      done?.(true);
      return Promise.reject(this.#lostError(this.#lost));
    }
    if (deadline <= Date.now()) {
      done?.(false);
      return Promise.reject(new ServingError(GrpcStatus.DEADLINE_EXCEEDED, `deadline exceeded before the request was sent to worker ${this.endpoint.id}`));
    }
    const { inputs, borrowed } = toRequestInputs(call.inputs);
    // The worker only reads the output names (the proto type calls them string[]).
    // Two literals, not a conditional spread: that costs microseconds a call (see http/handlers.ts).
    const outputs = call.outputs as string[];
    const request = trace ? { modelKey: call.modelKey, inputs, outputs, trace } : { modelKey: call.modelKey, inputs, outputs };
    const run = this.#calls.execute(request, 0, borrowed);
    return new Promise<ExecuteAnswer>((resolve, reject) => {
      // As over a socket: the caller may stop waiting at its deadline, while the
      // run goes on and `done` comes when the worker is really done with it.
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (lost: boolean): boolean => {
        if (settled) return false;
        settled = true;
        this.#running.take(entry.callId);
        if (timer !== undefined) clearTimeout(timer);
        done?.(lost);
        return true;
      };
      // Once the deadline has rejected, a later resolve or reject does nothing.
      const onLost = (reason: string): void => {
        if (finish(true)) reject(this.#lostError(reason));
      };
      const entry: RunningCall = { callId: 0, onLost };
      this.#running.add(entry);
      if (Number.isFinite(deadline)) {
        timer = setTimeout(() => {
          timer = undefined;
          reject(new ServingError(GrpcStatus.DEADLINE_EXCEEDED, `deadline exceeded while worker ${this.endpoint.id} was running the request`));
        }, Math.max(0, deadline - Date.now()));
      }
      run.then(
        (answer) => {
          if (finish(false)) resolve(answer);
        },
        (error: unknown) => {
          // A draining worker refuses new work with UNAVAILABLE: it counts as lost, as over a socket.
          const lost = error instanceof ServingError && error.code === GrpcStatus.UNAVAILABLE;
          if (finish(lost)) reject(lost ? this.#lostError((error as Error).message) : error);
        },
      );
    });
  }

  #lostError(reason: string): WorkerLostError {
    return new WorkerLostError(GrpcStatus.UNAVAILABLE, reason.startsWith('worker') ? reason : `worker ${this.endpoint.id}: ${reason}`);
  }
}
