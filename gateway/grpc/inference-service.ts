import { type handleUnaryCall } from '@grpc/grpc-js';
import { type Logger } from 'pino';
import { notFound, unimplemented } from '../../core/errors.js';
import { type TensorSignature } from '../../core/signature.js';
import {
  type GRPCInferenceServiceServer,
  type ModelInferRequest,
  type ModelInferResponse,
  type ModelMetadataResponse,
  type ModelMetadataResponse_TensorMetadata,
  type ModelStatisticsResponse,
  type RepositoryIndexResponse,
} from '../../proto/gen/inference.js';
import { runInference } from '../inference/infer-pipeline.js';
import { loadParametersFromProto } from '../repository/model-loader.js';
import { type ModelManager } from '../repository/model-manager.js';
import { type ModelVersion } from '../repository/model-version.js';
import { decodeInputs } from '../tensor/decode-request.js';
import { encodeOutputs } from '../tensor/encode-response.js';
import { type CallContext, unary } from './call-context.js';
import { parametersFromProto } from './parameters.js';
import { streamInfer } from './stream-infer.js';

export interface ServerInfo {
  readonly name: string;
  readonly version: string;
  readonly extensions: readonly string[];
  /** True from the start of shutdown: ServerReady answers false. */
  isDraining(): boolean;
  /** Triton's --strict-readiness: ready only when every model is READY. */
  readonly strictReadiness: boolean;
}

function tensorMetadata(t: TensorSignature, batched: boolean): ModelMetadataResponse_TensorMetadata {
  const dims = batched ? [-1, ...t.dims] : t.dims;
  return { name: t.name, datatype: t.datatype, shape: dims.map((d) => BigInt(d)) };
}

/** The KServe v2 gRPC service: thin handlers over the model manager and the infer pipeline. */
export function createInferenceService(
  models: ModelManager,
  info: ServerInfo,
  log: Logger,
): GRPCInferenceServiceServer {
  const notImplemented = <Req, Res>(rpc: string): handleUnaryCall<Req, Res> =>
    unary<Req, Res>(() => Promise.reject(unimplemented(`${rpc} is not implemented by Fabriek`)), log);

  const infer = async (request: ModelInferRequest, context: CallContext): Promise<ModelInferResponse> => {
    const inputs = decodeInputs(request, request.modelName);
    const result = await runInference(
      models,
      {
        modelName: request.modelName,
        modelVersion: request.modelVersion,
        id: request.id,
        inputs,
        outputs: request.outputs.map((o) => o.name),
        parameters: parametersFromProto(request.parameters),
      },
      context,
      { log, protocol: 'grpc' },
    );
    const encoded = encodeOutputs(result.outputs, []);
    return {
      modelName: result.modelName,
      modelVersion: result.modelVersion,
      id: result.id,
      parameters: {},
      outputs: encoded.outputs,
      rawOutputContents: encoded.rawOutputContents,
    };
  };

  return {
    serverLive: unary(async () => ({ live: true }), log),
    serverReady: unary(async () => {
      if (info.isDraining() || !models.allSettled()) return { ready: false };
      return { ready: !info.strictReadiness || models.list().every((v) => v.state === 'READY') };
    }, log),
    modelReady: unary(async (request) => {
      try {
        return { ready: models.resolve(request.name, request.version).state === 'READY' };
      } catch {
        return { ready: false };
      }
    }, log),
    serverMetadata: unary(
      async () => ({ name: info.name, version: info.version, extensions: [...info.extensions] }),
      log,
    ),
    modelMetadata: unary(async (request): Promise<ModelMetadataResponse> => {
      const v = models.resolve(request.name, request.version);
      const sig = v.serving?.signature;
      const batched = (sig?.maxBatchSize ?? 0) > 0;
      return {
        name: v.name,
        versions: models
          .versionsOf(v.name)
          .filter((x) => x.state === 'READY')
          .map((x) => String(x.version)),
        platform: 'onnxruntime_onnx',
        inputs: (sig?.inputs ?? []).map((t) => tensorMetadata(t, batched)),
        outputs: (sig?.outputs ?? []).map((t) => tensorMetadata(t, batched)),
      };
    }, log),
    modelInfer: unary(infer, log),
    modelStreamInfer: streamInfer(infer, log),
    modelConfig: unary(async (request) => {
      const v = models.resolve(request.name, request.version);
      const serving = v.serving;
      if (!serving) return { config: undefined };
      return {
        config: {
          ...serving.config,
          parameters: {
            ...serving.config.parameters,
            execution_provider: { stringValue: serving.executionProvider },
          },
        },
      };
    }, log),
    modelStatistics: unary(async (request): Promise<ModelStatisticsResponse> => {
      let versions: ModelVersion[];
      if (request.name === '') {
        versions = models.list();
      } else if (request.version === '') {
        versions = models.versionsOf(request.name);
        if (versions.length === 0) throw notFound(`model '${request.name}' is not in the repository`);
      } else {
        versions = [models.resolve(request.name, request.version)];
      }
      return {
        modelStats: versions.flatMap((v) =>
          v.serving ? [v.serving.stats.snapshot(v.name, String(v.version))] : [],
        ),
      };
    }, log),
    repositoryIndex: unary(async (request): Promise<RepositoryIndexResponse> => {
      const all = models.list().filter((v) => !request.ready || v.state === 'READY');
      return {
        models: all.map((v) => ({
          name: v.name,
          version: v.version > 0 ? String(v.version) : '',
          state: v.state,
          reason: v.reason,
        })),
      };
    }, log),
    repositoryModelLoad: unary(async (request) => {
      await models.load(request.modelName, loadParametersFromProto(request.parameters));
      return {};
    }, log),
    repositoryModelUnload: unary(async (request) => {
      await models.unload(request.modelName);
      return {};
    }, log),
    systemSharedMemoryStatus: notImplemented('SystemSharedMemoryStatus'),
    systemSharedMemoryRegister: notImplemented('SystemSharedMemoryRegister'),
    systemSharedMemoryUnregister: notImplemented('SystemSharedMemoryUnregister'),
    cudaSharedMemoryStatus: notImplemented('CudaSharedMemoryStatus'),
    cudaSharedMemoryRegister: notImplemented('CudaSharedMemoryRegister'),
    cudaSharedMemoryUnregister: notImplemented('CudaSharedMemoryUnregister'),
    traceSetting: notImplemented('TraceSetting'),
    logSettings: notImplemented('LogSettings'),
  };
}
