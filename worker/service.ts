import { status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { type Logger } from 'pino';
import { isServingError } from '../core/errors.js';
import {
  type ExecuteRequest,
  type ExecuteResponse,
  type LoadModelRequest,
  type LoadModelResponse,
  type StatusResponse,
  type TensorSpec,
  type WorkerServer,
} from '../proto/gen/worker.js';
import { prepareBatch } from './batch-task.js';
import { WorkerErrors } from './errors.js';
import { type LoadSpec, type ModelHost } from './model-host.js';
import { bufferOf } from './tensor-bytes.js';
import { type DeviceRequest, type GraphOptimizationLevel, type TensorSpecInfo } from './thread-protocol.js';

// The gRPC face of the worker (fabriek.worker.Worker). Handlers are plain
// async functions; `unary` turns their ServingErrors into gRPC statuses and
// anything else into a generic INTERNAL whose stack goes to the log only.

export interface WorkerServiceOptions {
  readonly host: ModelHost;
  readonly workerId: string;
  /** Device this worker serves; used when a LoadModel leaves device_kind empty. */
  readonly device: DeviceRequest;
  readonly logger: Logger;
  /** False once the worker is draining: new batches are refused (the gateway retries them elsewhere). */
  readonly accepting?: () => boolean;
}

const MAX_INSTANCES = 64;
const OPT_LEVELS: readonly GraphOptimizationLevel[] = ['disabled', 'basic', 'extended', 'all'];

export function createWorkerService(options: WorkerServiceOptions): WorkerServer {
  const { host, logger } = options;

  function unary<Req, Res>(method: string, handler: (request: Req) => Promise<Res> | Res) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      Promise.resolve()
        .then(() => handler(call.request))
        .then(
          (response) => callback(null, response),
          (error: unknown) => {
            if (isServingError(error)) {
              const quiet = error.code === status.NOT_FOUND || error.code === status.INVALID_ARGUMENT;
              logger[quiet ? 'debug' : 'warn']({ method, code: status[error.code] }, error.message);
              callback({ code: error.code, details: error.message });
            } else {
              logger.error({ method, err: error }, 'unexpected error in worker handler');
              callback({ code: status.INTERNAL, details: `internal error in worker ${method}` });
            }
          },
        );
    };
  }

  return {
    loadModel: unary('LoadModel', async (request: LoadModelRequest): Promise<LoadModelResponse> => {
      const info = await host.load(loadSpecOf(request, options.device));
      return {
        inputs: info.inputs.map(toTensorSpec),
        outputs: info.outputs.map(toTensorSpec),
        executionProvider: info.executionProvider,
        fallbackReason: info.fallbackReason,
      };
    }),

    unloadModel: unary('UnloadModel', async (request: { modelKey: string }) => {
      await host.unload(request.modelKey);
      return {};
    }),

    execute: unary('Execute', async (request: ExecuteRequest): Promise<ExecuteResponse> => {
      if (options.accepting?.() === false) throw WorkerErrors.draining(options.workerId);
      const received = process.hrtime.bigint();
      const { task, transfer } = prepareBatch(request, host.info(request.modelKey));
      const result = await host.execute(request.modelKey, task, transfer);
      const outputs = result.outputs.map((t) => ({
        name: t.name,
        datatype: t.datatype,
        shape: t.shape.map(BigInt),
        data: bufferOf(t.data),
      }));
      const done = process.hrtime.bigint();
      return {
        outputs,
        // Input: validation, copy and hand-over to the thread, ORT tensor creation.
        computeInputNs: result.runStartNs - received,
        computeInferNs: result.runEndNs - result.runStartNs,
        // Output: ORT tensors to bytes, hand-back, response assembly (not gRPC encoding).
        computeOutputNs: done - result.runEndNs,
      };
    }),

    status: unary('Status', (): StatusResponse => ({
      workerId: options.workerId,
      deviceKind: options.device.kind,
      deviceId: options.device.kind === 'gpu' ? options.device.deviceId : 0,
      models: host.status(),
    })),
  };
}

function toTensorSpec(spec: TensorSpecInfo): TensorSpec {
  return { name: spec.name, datatype: spec.datatype, shape: spec.shape.map(BigInt), dimNames: [...spec.dimNames] };
}

/** Validates a LoadModelRequest and fills in defaults. */
export function loadSpecOf(request: LoadModelRequest, workerDevice: DeviceRequest): LoadSpec {
  const key = request.modelKey;
  const bad = (problem: string) => WorkerErrors.badLoadRequest(key, problem);
  if (key === '') throw bad('model_key is empty');
  const hasPath = request.modelPath !== '';
  const hasBytes = request.modelBytes.byteLength > 0;
  if (hasPath === hasBytes) throw bad('give exactly one of model_path and model_bytes');
  // 0 is proto3's "unset": one instance, as in Triton.
  const instanceCount = request.instanceCount === 0 ? 1 : request.instanceCount;
  if (instanceCount > MAX_INSTANCES) throw bad(`instance_count ${instanceCount} is above the limit of ${MAX_INSTANCES}`);

  let device: DeviceRequest;
  if (request.deviceKind === '') device = workerDevice;
  else if (request.deviceKind === 'cpu') device = { kind: 'cpu' };
  else if (request.deviceKind === 'gpu') {
    if (request.deviceId < 0) throw bad(`device_id ${request.deviceId} is negative`);
    device = { kind: 'gpu', deviceId: request.deviceId };
  } else throw bad(`device_kind "${request.deviceKind}" is not "cpu", "gpu" or empty`);

  const so = request.sessionOptions;
  const level = so === undefined || so.graphOptimizationLevel === '' ? 'all' : so.graphOptimizationLevel;
  const graphOptimizationLevel = OPT_LEVELS.find((l) => l === level);
  if (graphOptimizationLevel === undefined) {
    throw bad(`graph_optimization_level "${level}" is not one of ${OPT_LEVELS.join(', ')}`);
  }
  return {
    modelKey: key,
    model: hasPath ? { path: request.modelPath } : { bytes: request.modelBytes },
    instanceCount,
    device,
    options: {
      intraOpNumThreads: so === undefined || so.intraOpThreads === 0 ? undefined : so.intraOpThreads,
      interOpNumThreads: so === undefined || so.interOpThreads === 0 ? 1 : so.interOpThreads,
      graphOptimizationLevel,
      // proto3 cannot tell false from unset: without session_options the arena
      // is on (ORT's default); with them, the field is taken as sent.
      enableCpuMemArena: so === undefined ? true : so.enableCpuMemArena,
    },
  };
}
