import { type Logger } from 'pino';
// The REST endpoints' logic: the same ModelManager calls and semantics as
// the gRPC handlers in gateway/grpc/inference-service.ts, answering JSON.
import { invalidArgument, notFound } from '../../core/errors.js';
import { type TensorSignature } from '../../core/signature.js';
import { type ServerInfo } from '../grpc/inference-service.js';
import { runInference } from '../inference/infer-pipeline.js';
import { loadParametersFromJson } from '../repository/model-loader.js';
import { type ModelManager } from '../repository/model-manager.js';
import { type ModelVersion } from '../repository/model-version.js';
import { decodeInferRequest, encodeInferResponse, type EncodedInferResponse } from './json-tensors.js';
import { modelConfigJson, modelStatisticsJson } from './model-json.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export function serverReady(models: ModelManager, info: ServerInfo): boolean {
  if (info.isDraining() || !models.allSettled()) return false;
  return !info.strictReadiness || models.list().every((v) => v.state === 'READY');
}

export function modelReady(models: ModelManager, name: string, version: string): boolean {
  try {
    return models.resolve(name, version).state === 'READY';
  } catch {
    return false;
  }
}

export function serverMetadata(info: ServerInfo): Json {
  return { name: info.name, version: info.version, extensions: [...info.extensions] };
}

function tensorMetadata(t: TensorSignature, batched: boolean): Json {
  return { name: t.name, datatype: t.datatype, shape: batched ? [-1, ...t.dims] : [...t.dims] };
}

export function modelMetadata(models: ModelManager, name: string, version: string): Json {
  const v = models.resolve(name, version);
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
}

export function modelConfig(models: ModelManager, name: string, version: string): Json {
  const serving = models.resolve(name, version).serving;
  if (!serving) return {};
  return modelConfigJson({
    ...serving.config,
    parameters: { ...serving.config.parameters, execution_provider: { stringValue: serving.executionProvider } },
  });
}

/** GET /v2/models[/{m}[/versions/{v}]]/stats: every model when `name` is empty, as Triton. */
export function modelStatistics(models: ModelManager, name: string, version: string): Json {
  let versions: ModelVersion[];
  if (name === '') {
    versions = models.list();
  } else if (version === '') {
    versions = models.versionsOf(name);
    if (versions.length === 0) throw notFound(`model '${name}' is not in the repository`);
  } else {
    versions = [models.resolve(name, version)];
  }
  return {
    model_stats: versions.flatMap((v) =>
      v.serving ? [modelStatisticsJson(v.serving.stats.snapshot(v.name, String(v.version)))] : [],
    ),
  };
}

/** POST /v2/repository/index: Triton's array of {name, version, state, reason}. */
export function repositoryIndex(models: ModelManager, readyOnly: boolean): Json {
  return models
    .list()
    .filter((v) => !readyOnly || v.state === 'READY')
    .map((v) => ({ name: v.name, version: v.version > 0 ? String(v.version) : '', state: v.state, reason: v.reason }));
}

export async function infer(
  models: ModelManager,
  name: string,
  version: string,
  body: Buffer,
  headerLength: number | undefined,
  signal: AbortSignal,
  log?: Logger,
): Promise<EncodedInferResponse> {
  const { request, ...wants } = decodeInferRequest(body, headerLength, name, version);
  const result = await runInference(models, request, { signal, deadline: Infinity }, log ? { log, protocol: 'http' } : undefined);
  return encodeInferResponse(result, wants);
}

/** POST /v2/repository/models/{m}/load|unload: Triton answers 200 with an empty body. */
export async function repositoryControl(models: ModelManager, name: string, action: 'load' | 'unload', body: Buffer): Promise<void> {
  let parsed: unknown = {};
  if (body.byteLength > 0) {
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw invalidArgument(`failed to parse the repository ${action} request JSON`);
    }
  }
  if (action === 'load') await models.load(name, loadParametersFromJson(parsed));
  else await models.unload(name);
}
