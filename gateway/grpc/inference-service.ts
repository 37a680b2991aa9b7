import { type handleUnaryCall } from '@grpc/grpc-js';
import { type Logger } from 'pino';
import { unimplemented } from '../../core/errors.js';
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
import { loadParametersFromProto } from '../repository/model-loader.js';
import { type ModelManager } from '../repository/model-manager.js';
import { decodeInputs } from '../tensor/decode-request.js';
import { encodeOutputs } from '../tensor/encode-response.js';
import { type CallContext, unary } from './call-context.js';
import { parametersFromProto } from './parameters.js';
import { streamInfer } from './stream-infer.js';

export interface ServerInfo extends ReadinessInfo {
  readonly name: string;
  readonly version: string;
  readonly extensions: readonly string[];
}

function tensorMetadata(t: TensorMetadata): ModelMetadataResponse_TensorMetadata {
  return { name: t.name, datatype: t.datatype, shape: t.shape.map((d) => BigInt(d)) };
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
    serverReady: unary(async () => ({ ready: serverReady(models, info) }), log),
    modelReady: unary(async (request) => ({ ready: modelReady(models, request.name, request.version) }), log),
    serverMetadata: unary(
      async () => ({ name: info.name, version: info.version, extensions: [...info.extensions] }),
      log,
    ),
    modelMetadata: unary(async (request): Promise<ModelMetadataResponse> => {
      const md = modelMetadata(models, request.name, request.version);
      return { ...md, versions: [...md.versions], inputs: md.inputs.map(tensorMetadata), outputs: md.outputs.map(tensorMetadata) };
    }, log),
    modelInfer: unary(infer, log),
    modelStreamInfer: streamInfer(infer, log),
    modelConfig: unary(async (request) => ({ config: servedConfig(models, request.name, request.version) }), log),
    modelStatistics: unary(
      async (request): Promise<ModelStatisticsResponse> => ({
        modelStats: modelStatistics(models, request.name, request.version),
      }),
      log,
    ),
    repositoryIndex: unary(
      async (request): Promise<RepositoryIndexResponse> => ({ models: repositoryIndex(models, request.ready) }),
      log,
    ),
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
