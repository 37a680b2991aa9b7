import { status } from '@grpc/grpc-js';
import { type Tracer } from '@opentelemetry/api';
import { type Logger } from 'pino';
import { activeTracer, contextOf, endOk, endWithError, modelAttributes, remoteParent, SpanKindOf } from '../core/tracing.js';
import { isServingError, ServingError } from '../core/errors.js';
import { decodeExecuteRequest, encodeExecuteResponse, type ExecuteAnswer, type FrameTrace } from '../core/execute-frame.js';
import { encodeFrame, Method, RESPONSE } from '../core/worker-frames.js';
import {
  type ExecuteRequest,
  type LoadModelRequest,
  LoadModelRequest as LoadModelRequestCodec,
  LoadModelResponse,
  StatusResponse,
  type TensorSpec,
  UnloadModelRequest,
  UnloadModelResponse,
} from '../proto/gen/worker.js';
import { prepareBatch } from './batch-task.js';
import { WorkerErrors } from './errors.js';
import { type LoadSpec, type ModelHost } from './model-host.js';
import { bufferOf } from './tensor-bytes.js';
import { type DeviceRequest, type GraphOptimizationLevel, type TensorSpecInfo } from './thread-protocol.js';

// The worker's face to the gateway (the fabriek.worker.Worker methods of
// proto/worker.proto), as typed calls (`WorkerCalls`: what an in-process
// worker of a gateway calls directly) and as the frame handler over them (a
// worker process's socket). ServingErrors keep their status code and
// message, and anything else becomes a generic INTERNAL whose stack goes to
// the log only.

export interface WorkerServiceOptions {
  readonly host: ModelHost;
  readonly workerId: string;
  /** Device this worker serves; used when a LoadModel leaves device_kind empty. */
  readonly device: DeviceRequest;
  readonly logger: Logger;
  /** False once the worker is draining: new batches are refused (the gateway retries them elsewhere). */
  readonly accepting?: () => boolean;
}

/**
 * Handles one call: the request frame's payload (a segmented frame's head)
 * and segments in; the answer frame's parts out, with call id 0 (the frame
 * server writes the call's id); throws ServingError.
 */
export type WorkerHandler = (method: number, payload: Uint8Array, segments: readonly Uint8Array[], connection: number) => Promise<Uint8Array[]>;

/**
 * The worker's methods on decoded messages; each throws ServingError only.
 * `connection` names the gateway that holds what it loads.
 */
export interface WorkerCalls {
  loadModel(request: LoadModelRequest, connection: number): Promise<LoadModelResponse>;
  unloadModel(modelKey: string, connection: number): Promise<void>;
  /**
   * Runs a batch. `borrowed`: the request's tensor bytes still belong to the
   * caller (a gateway in the same process), so they are copied, never moved
   * to an ONNX Runtime thread.
   */
  execute(request: ExecuteRequest & { trace?: FrameTrace }, connection: number, borrowed?: boolean): Promise<ExecuteAnswer>;
  status(): StatusResponse;
}

const MAX_INSTANCES = 64;
const OPT_LEVELS: readonly GraphOptimizationLevel[] = ['disabled', 'basic', 'extended', 'all'];
const METHOD_NAMES: Readonly<Record<number, string>> = { 1: 'LoadModel', 2: 'UnloadModel', 3: 'Execute', 4: 'Status' };

function workerMethods(options: WorkerServiceOptions): WorkerCalls {
  const { host } = options;

  async function loadModel(request: LoadModelRequest, connection: number): Promise<LoadModelResponse> {
    const info = await host.load(loadSpecOf(request, options.device), connection);
    return {
      inputs: info.inputs.map(toTensorSpec),
      outputs: info.outputs.map(toTensorSpec),
      executionProvider: info.executionProvider,
      fallbackReason: info.fallbackReason,
    };
  }

  async function execute(request: ExecuteRequest & { trace?: FrameTrace }, connection: number, borrowed = false): Promise<ExecuteAnswer> {
    const tracer = request.trace !== undefined ? activeTracer() : undefined;
    if (tracer && request.trace) return tracedExecute(tracer, request, request.trace, connection, borrowed);
    return executeOnce(request, connection, borrowed);
  }

  /** The worker's span, a child of the gateway's (the frame's traceparent), and the ONNX Runtime run under it. */
  async function tracedExecute(tracer: Tracer, request: ExecuteRequest, trace: FrameTrace, connection: number, borrowed: boolean): Promise<ExecuteAnswer> {
    const rows = request.inputs[0]?.shape[0];
    const attributes = { ...modelAttributes(request.modelKey), 'fabriek.worker.id': options.workerId, 'fabriek.batch.size': rows === undefined ? 0 : Number(rows) };
    const span = tracer.startSpan('fabriek.worker.run', { kind: SpanKindOf.server, attributes }, remoteParent(trace.traceparent, trace.tracestate));
    try {
      const response = await executeOnce(request, connection, borrowed);
      // The run's times are known after it: placed on the wall clock from the monotonic one.
      const nowMs = Date.now();
      const outputMs = Number(response.computeOutputNs) / 1e6;
      const inferMs = Number(response.computeInferNs) / 1e6;
      const ort = tracer.startSpan('onnxruntime.run', { startTime: nowMs - outputMs - inferMs, attributes }, contextOf(span));
      ort.end(nowMs - outputMs);
      endOk(span);
      return response;
    } catch (error) {
      endWithError(span, error);
      throw error;
    }
  }

  async function executeOnce(request: ExecuteRequest, connection: number, borrowed: boolean): Promise<ExecuteAnswer> {
    if (options.accepting?.() === false) throw WorkerErrors.draining(options.workerId);
    const received = process.hrtime.bigint();
    const { task, transfer } = prepareBatch(request, host.info(request.modelKey), borrowed);
    const prepared = process.hrtime.bigint();
    const result = await host.execute(request.modelKey, task, transfer, connection);
    const outputs = result.outputs.map((t) => ({
      name: t.name,
      datatype: t.datatype,
      shape: t.shape.map(BigInt),
      // A merged run's rows are views of its buffer.
      data: t.data instanceof ArrayBuffer ? bufferOf(t.data) : Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
    }));
    const done = process.hrtime.bigint();
    return {
      outputs,
      // Input: validation and copy, then ORT tensor creation on the thread. Not the wait for the
      // instance (a batch sent ahead waits for the one before it): that is no cost of this batch,
      // and the gateway's cost model, which sheds by these times, must not learn it as one.
      computeInputNs: prepared - received + (result.runStartNs - result.taskStartNs),
      computeInferNs: result.runEndNs - result.runStartNs,
      // Output: ORT tensors to bytes, hand-back, response assembly (not encoding).
      computeOutputNs: done - result.runEndNs,
      // What else of this model the worker holds now, from every gateway: their choice of worker reads it.
      outstanding: host.outstanding(request.modelKey),
      // The wait for the instance left out of the input above: the gateway counts it as queue time.
      waitNs: Number(result.taskStartNs - prepared),
      // What a new execution of this model would wait here, in time: their choice of worker weighs it.
      backlogNs: host.backlogNs(request.modelKey),
    };
  }

  return {
    loadModel,
    // Only this connection's reference: a model other gateways hold stays.
    unloadModel: (modelKey, connection) => host.unload(modelKey, connection),
    execute,
    status: () => ({
      workerId: options.workerId,
      deviceKind: options.device.kind,
      deviceId: options.device.kind === 'gpu' ? options.device.deviceId : 0,
      models: host.status(),
    }),
  };
}

/** A failure as the gateway gets it: ServingErrors as they are (logged quietly); anything else logged with its stack, as a generic INTERNAL. */
function reported(logger: Logger, method: string, error: unknown): ServingError {
  if (isServingError(error)) {
    const quiet = error.code === status.NOT_FOUND || error.code === status.INVALID_ARGUMENT;
    logger[quiet ? 'debug' : 'warn']({ method, code: status[error.code] }, error.message);
    return error;
  }
  logger.error({ method, err: error }, 'unexpected error in worker handler');
  return new ServingError(status.INTERNAL, `internal error in worker ${method}`);
}

/** The worker's calls for a gateway in the same process: each failure is reported as over a socket. */
export function createWorkerCalls(options: WorkerServiceOptions): WorkerCalls {
  const calls = workerMethods(options);
  const { logger } = options;
  return {
    async loadModel(request, connection) {
      try {
        return await calls.loadModel(request, connection);
      } catch (error) {
        throw reported(logger, 'LoadModel', error);
      }
    },
    async unloadModel(modelKey, connection) {
      try {
        await calls.unloadModel(modelKey, connection);
      } catch (error) {
        throw reported(logger, 'UnloadModel', error);
      }
    },
    async execute(request, connection, borrowed) {
      try {
        return await calls.execute(request, connection, borrowed);
      } catch (error) {
        throw reported(logger, 'Execute', error);
      }
    },
    status: () => calls.status(),
  };
}

/** The frame handler of a worker process's socket. */
export function createWorkerService(options: WorkerServiceOptions): WorkerHandler {
  const calls = workerMethods(options);

  async function dispatch(method: number, payload: Uint8Array, segments: readonly Uint8Array[], connection: number): Promise<Uint8Array[]> {
    if (method === Method.Execute) return encodeExecuteResponse(RESPONSE | method, 0, await calls.execute(decodeExecute(payload, segments), connection));
    return encodeFrame(RESPONSE | method, 0, await dispatchProtobuf(method, payload, connection));
  }

  async function dispatchProtobuf(method: number, payload: Uint8Array, connection: number): Promise<Uint8Array> {
    switch (method) {
      case Method.LoadModel:
        return LoadModelResponse.encode(await calls.loadModel(decode(LoadModelRequestCodec, payload, 'LoadModel'), connection)).finish();
      case Method.UnloadModel:
        await calls.unloadModel(decode(UnloadModelRequest, payload, 'UnloadModel').modelKey, connection);
        return UnloadModelResponse.encode({}).finish();
      case Method.Status:
        return StatusResponse.encode(calls.status()).finish();
      default:
        throw new ServingError(status.UNIMPLEMENTED, `worker method ${method} is not implemented`);
    }
  }

  return async (method, payload, segments, connection) => {
    try {
      return await dispatch(method, payload, segments, connection);
    } catch (error) {
      throw reported(options.logger, METHOD_NAMES[method] ?? String(method), error);
    }
  };
}

function decode<T>(codec: { decode(input: Uint8Array): T }, payload: Uint8Array, method: string): T {
  try {
    return codec.decode(payload);
  } catch (error) {
    throw new ServingError(status.INVALID_ARGUMENT, `${method}: the request is not a valid protobuf message: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function decodeExecute(head: Uint8Array, segments: readonly Uint8Array[]): ExecuteRequest & { trace?: FrameTrace } {
  try {
    return decodeExecuteRequest(head, segments);
  } catch (error) {
    throw new ServingError(status.INVALID_ARGUMENT, `Execute: the request is not a valid Execute frame: ${error instanceof Error ? error.message : String(error)}`);
  }
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
  const mode = so === undefined || so.executionMode === '' ? 'sequential' : so.executionMode;
  if (mode !== 'sequential' && mode !== 'parallel') throw bad(`execution_mode "${mode}" is not "sequential" or "parallel"`);
  return {
    modelKey: key,
    model: hasPath ? { path: request.modelPath } : { bytes: request.modelBytes },
    maxBatchSize: request.maxBatchSize,
    instanceCount,
    device,
    options: {
      intraOpNumThreads: so === undefined || so.intraOpThreads === 0 ? undefined : so.intraOpThreads,
      interOpNumThreads: so === undefined || so.interOpThreads === 0 ? 1 : so.interOpThreads,
      graphOptimizationLevel,
      // proto3 cannot tell false from unset: without session_options the arena
      // is on (ORT's default); with them, the field is taken as sent.
      enableCpuMemArena: so === undefined ? true : so.enableCpuMemArena,
      executionMode: mode,
      enableMemPattern: so === undefined ? true : so.enableMemPattern,
    },
  };
}
