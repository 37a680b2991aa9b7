import { type handleUnaryCall } from '@grpc/grpc-js';
import { type Logger } from 'pino';
import { failedPrecondition, invalidArgument, unimplemented } from '../../core/errors.js';
import {
  type GRPCInferenceServiceServer,
  type ModelInferRequest,
  type ModelInferResponse,
  type ModelMetadataResponse,
  type ModelMetadataResponse_TensorMetadata,
  type ModelStatisticsResponse,
  type RepositoryIndexResponse,
} from '../../proto/gen/inference.js';
import { Admission, type CallInfo } from '../inference/admission.js';
import { runInference } from '../inference/infer-pipeline.js';
import {
  modelMetadata,
  modelReady,
  modelStatistics,
  type ReadinessInfo,
  repositoryIndex,
  servedConfig,
  serverReady,
  type TensorMetadata,
} from '../inference/model-queries.js';
import { loadParametersFromProto, unloadParametersFromProto } from '../repository/model-loader.js';
import { type ModelManager } from '../repository/model-manager.js';
import { decodeInputs } from '../tensor/decode-request.js';
import { encodeOutputs } from '../tensor/encode-response.js';
import { authorizationOf, type CallContext, unary } from './call-context.js';
import { identifiedTenant } from './early-refusal.js';
import { grpcTraceHeaders } from '../inference/trace-headers.js';
import { activeTracer } from '../../core/tracing.js';
import { parametersFromProto, requestedOutputsFromProto } from './parameters.js';
import { decodeInputsWithSharedMemory, hasSharedMemoryInput, outputRefsOf, SHARED_MEMORY_OFF, writeOutputs } from '../shared-memory/shared-memory-tensors.js';
import { type SystemSharedMemory } from '../shared-memory/system-shared-memory.js';
import { streamInfer } from './stream-infer.js';
import { type LoadReporter } from '../load/load-reporter.js';
import { type InflightGate } from '../inference/inflight-gate.js';
import { type LogControl, type LogSettings, type LogSettingValue } from '../log-settings.js';
import { type LogSettingsRequest, type LogSettingsResponse, type TraceSettingRequest, type TraceSettingResponse } from '../../proto/gen/inference.js';
import { PER_MODEL_TRACE_SETTINGS, type TraceControl, type TraceSettings } from '../../core/trace-policy.js';

export interface ServerInfo extends ReadinessInfo {
  readonly name: string;
  readonly version: string;
  readonly extensions: readonly string[];
}

function tensorBytes(tensors: readonly { readonly data: Uint8Array }[]): number {
  let n = 0;
  for (const t of tensors) n += t.data.byteLength;
  return n;
}

function tensorMetadata(t: TensorMetadata): ModelMetadataResponse_TensorMetadata {
  return { name: t.name, datatype: t.datatype, shape: t.shape.map((d) => BigInt(d)) };
}

/**
 * The KServe v2 gRPC service: thin handlers over the model manager and the
 * infer pipeline. Every call about a model passes `admission` first (health
 * and server metadata do not).
 */
export function createInferenceService(
  models: ModelManager,
  info: ServerInfo,
  log: Logger,
  admission: Admission = new Admission(),
  load?: LoadReporter,
  inflight?: InflightGate,
  logging?: LogControl,
  tracing?: TraceControl,
  sharedMemory?: SystemSharedMemory,
): GRPCInferenceServiceServer {
  const notImplemented = <Req, Res>(rpc: string): handleUnaryCall<Req, Res> =>
    unary<Req, Res>(() => Promise.reject(unimplemented(`${rpc} is not implemented by Fabriek`)), log);
  /** A system shared memory RPC: FAILED_PRECONDITION, saying how to turn it on, without --system-shared-memory. */
  const shm = <Req, Res>(run: (regions: SystemSharedMemory, request: Req) => Res | Promise<Res>): handleUnaryCall<Req, Res> =>
    unary<Req, Res>(
      (request, context) =>
        admission.call(call(context, 'shared_memory', '', ''), async () => {
          if (sharedMemory === undefined) throw failedPrecondition(SHARED_MEMORY_OFF);
          return run(sharedMemory, request);
        }),
      log,
    );
  const call = (context: CallContext, op: CallInfo['op'], model: string, version: string, id?: string): CallInfo => ({
    protocol: 'grpc',
    op,
    model,
    version,
    authorization: authorizationOf(context.metadata),
    id,
    tenant: identifiedTenant(context.metadata),
  });

  const infer = (request: ModelInferRequest, context: CallContext): Promise<ModelInferResponse> =>
    admission.call(call(context, 'infer', request.modelName, request.modelVersion, request.id), async (tenant, note) => {
      const inputs = hasSharedMemoryInput(request.inputs)
        ? await decodeInputsWithSharedMemory(request, request.modelName, sharedMemory)
        : decodeInputs(request, request.modelName);
      const requested = requestedOutputsFromProto(request.outputs, request.modelName);
      const toShared = requested.shared && outputRefsOf(requested.shared, sharedMemory, request.modelName);
      note.bytesIn = tensorBytes(inputs);
      const result = await runInference(
        models,
        {
          modelName: request.modelName,
          modelVersion: request.modelVersion,
          id: request.id,
          inputs,
          outputs: requested.names,
          parameters: parametersFromProto(request.parameters),
          tenant,
          classifications: requested.classifications,
        },
        context,
        activeTracer() ? { log, protocol: 'grpc', admission, note, ...grpcTraceHeaders(context.metadata) } : { log, protocol: 'grpc', admission, note },
      );
      note.bytesOut = tensorBytes(result.outputs);
      const encoded = encodeOutputs(toShared && sharedMemory ? await writeOutputs(result.outputs, toShared, sharedMemory, result.modelName) : result.outputs, []);
      return {
        modelName: result.modelName,
        modelVersion: result.modelVersion,
        id: result.id,
        parameters: {},
        outputs: encoded.outputs,
        rawOutputContents: encoded.rawOutputContents,
      };
    });

  return {
    serverLive: unary(async () => ({ live: true }), log),
    serverReady: unary(async () => ({ ready: serverReady(models, info) }), log),
    modelReady: unary(
      (request, context) =>
        admission.call(call(context, 'ready', request.name, request.version), async () => ({
          ready: modelReady(models, request.name, request.version),
        })),
      log,
    ),
    serverMetadata: unary(
      async () => ({ name: info.name, version: info.version, extensions: [...info.extensions] }),
      log,
    ),
    modelMetadata: unary(
      (request, context) =>
        admission.call(call(context, 'metadata', request.name, request.version), async (): Promise<ModelMetadataResponse> => {
          if (models.onDemand) await models.loadForQuery(request.name, request.version, context);
          const md = modelMetadata(models, request.name, request.version);
          return { ...md, versions: [...md.versions], inputs: md.inputs.map(tensorMetadata), outputs: md.outputs.map(tensorMetadata) };
        }),
      log,
    ),
    modelInfer: unary(infer, log, load),
    modelStreamInfer: streamInfer(infer, log, inflight),
    modelConfig: unary(
      (request, context) =>
        admission.call(call(context, 'config', request.name, request.version), async () => {
          if (models.onDemand) await models.loadForQuery(request.name, request.version, context);
          return { config: servedConfig(models, request.name, request.version) };
        }),
      log,
    ),
    modelStatistics: unary(
      (request, context) =>
        admission.call(
          call(context, 'statistics', request.name, request.version),
          async (tenant): Promise<ModelStatisticsResponse> => ({
            modelStats: (models.clusterStatistics ? await models.clusterStatistics(request.name, request.version) : modelStatistics(models, request.name, request.version)).filter((s) =>
              admission.mayUse(tenant, s.name),
            ),
          }),
        ),
      log,
    ),
    repositoryIndex: unary(
      (request, context) =>
        admission.call(
          call(context, 'index', '', ''),
          async (tenant): Promise<RepositoryIndexResponse> => ({
            models: repositoryIndex(models, request.ready).filter((e) => admission.mayUse(tenant, e.name)),
          }),
        ),
      log,
    ),
    repositoryModelLoad: unary(
      (request, context) =>
        admission.call(call(context, 'load', request.modelName, ''), async () => {
          await models.load(request.modelName, loadParametersFromProto(request.parameters));
          return {};
        }),
      log,
    ),
    repositoryModelUnload: unary(
      (request, context) =>
        admission.call(call(context, 'unload', request.modelName, ''), async () => {
          await models.unload(request.modelName, unloadParametersFromProto(request.parameters));
          return {};
        }),
      log,
    ),
    systemSharedMemoryStatus: shm((regions, request) => ({
      regions: Object.fromEntries(
        regions.status(request.name).map((r) => [r.name, { name: r.name, key: r.key, offset: BigInt(r.offset), byteSize: BigInt(r.byteSize) }]),
      ),
    })),
    systemSharedMemoryRegister: shm(async (regions, request) => {
      await regions.register(request.name, request.key, Number(request.offset), Number(request.byteSize));
      return {};
    }),
    systemSharedMemoryUnregister: shm(async (regions, request) => {
      await regions.unregister(request.name);
      return {};
    }),
    cudaSharedMemoryStatus: notImplemented('CudaSharedMemoryStatus'),
    cudaSharedMemoryRegister: notImplemented('CudaSharedMemoryRegister'),
    cudaSharedMemoryUnregister: notImplemented('CudaSharedMemoryUnregister'),
    traceSetting: tracing
      ? unary((request, context) => admission.call(call(context, 'tracing', '', ''), async () => traceSettingAnswer(request, tracing)), log)
      : notImplemented('TraceSetting'),
    logSettings: logging
      ? unary((request, context) => admission.call(call(context, 'logging', '', ''), async () => logSettingsAnswer(request, logging)), log)
      : notImplemented('LogSettings'),
  };
}

/** LogSettings: the settings in force when none is given (Triton's get), else after the change. */
async function logSettingsAnswer(request: LogSettingsRequest, logging: LogControl): Promise<LogSettingsResponse> {
  const changes = new Map<string, LogSettingValue>();
  for (const [name, value] of Object.entries(request.settings)) {
    const choice = value.parameterChoice;
    if (choice === undefined) throw invalidArgument(`log setting '${name}': no value given`);
    changes.set(name, choice.value);
  }
  return logSettingsProto(changes.size === 0 ? logging.settings() : await logging.update(changes));
}

function logSettingsProto(settings: LogSettings): LogSettingsResponse {
  const out: LogSettingsResponse['settings'] = {};
  for (const [name, value] of Object.entries(settings) as [string, LogSettingValue][]) {
    out[name] = {
      parameterChoice:
        typeof value === 'boolean'
          ? { $case: 'boolParam', value }
          : typeof value === 'number'
            ? { $case: 'uint32Param', value }
            : { $case: 'stringParam', value },
    };
  }
  return { settings: out };
}

/** TraceSetting: the settings in force when none is given (Triton's get), else after the change. */
async function traceSettingAnswer(request: TraceSettingRequest, tracing: TraceControl): Promise<TraceSettingResponse> {
  if (request.modelName !== '') throw invalidArgument(PER_MODEL_TRACE_SETTINGS);
  const changes = new Map<string, unknown>(Object.entries(request.settings).map(([name, v]) => [name, v.value]));
  return traceSettingProto(changes.size === 0 ? tracing.settings() : await tracing.update(changes));
}

function traceSettingProto(settings: TraceSettings): TraceSettingResponse {
  const out: TraceSettingResponse['settings'] = {};
  for (const [name, value] of Object.entries(settings) as [string, string | readonly string[]][]) out[name] = { value: typeof value === 'string' ? [value] : [...value] };
  return { settings: out };
}
