// The REST endpoints' logic: the same ModelManager calls and semantics as
// the gRPC handlers in gateway/grpc/inference-service.ts, answering JSON.
import { type ServerInfo } from '../grpc/inference-service.js';
import { runInference, type PipelineOptions } from '../inference/infer-pipeline.js';
import * as queries from '../inference/model-queries.js';
import { loadParametersFromJson, unloadParametersFromJson } from '../repository/model-loader.js';
import { type ModelManager } from '../repository/model-manager.js';
import { type Tenant } from '../tenants/tenant.js';
import { encodeInferResponse, type EncodedInferResponse } from './json-tensors.js';
import { type InferHeaderMemo } from './infer-header-memo.js';
import { outputRefsOf, readSharedInputs, type SharedMemoryRef, writeOutputs } from '../shared-memory/shared-memory-tensors.js';
import { type Tensor } from '../../core/tensor.js';
import { type InferRequest } from '../inference/infer-request.js';
import { type SystemSharedMemory } from '../shared-memory/system-shared-memory.js';
import { modelConfigJson, modelStatisticsJson } from './model-json.js';
import { parseClientJson } from '../parse-json.js';
import { type CancelSignal } from '../../core/cancellation.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export function serverMetadata(info: ServerInfo): Json {
  return { name: info.name, version: info.version, extensions: [...info.extensions] };
}

export function modelMetadata(models: ModelManager, name: string, version: string): Json {
  const md = queries.modelMetadata(models, name, version);
  const tensor = (t: queries.TensorMetadata): Json => ({ name: t.name, datatype: t.datatype, shape: [...t.shape] });
  return { name: md.name, versions: [...md.versions], platform: md.platform, inputs: md.inputs.map(tensor), outputs: md.outputs.map(tensor) };
}

export function modelConfig(models: ModelManager, name: string, version: string): Json {
  const config = queries.servedConfig(models, name, version);
  return config ? modelConfigJson(config) : {};
}

/** GET /v2/models[/{m}[/versions/{v}]]/stats: every model when `name` is empty (that the tenant may use), as Triton. */
export async function modelStatistics(models: ModelManager, name: string, version: string, tenant?: Tenant): Promise<Json> {
  const all = models.clusterStatistics ? await models.clusterStatistics(name, version) : queries.modelStatistics(models, name, version);
  const stats = all.filter((s) => !tenant || tenant.models.allows(s.name));
  return { model_stats: stats.map(modelStatisticsJson) };
}

/** POST /v2/repository/index: Triton's array of {name, version, state, reason}, of the models the tenant may use. */
export function repositoryIndex(models: ModelManager, readyOnly: boolean, tenant?: Tenant): Json {
  return queries
    .repositoryIndex(models, readyOnly)
    .filter((e) => !tenant || tenant.models.allows(e.name))
    .map((e) => ({ ...e }));
}

export interface HttpInferCall {
  readonly name: string;
  readonly version: string;
  readonly body: Buffer;
  readonly headerLength: number | undefined;
  readonly signal: CancelSignal;
  /** Absolute, ms since the epoch (the Timeout-Ms header); Infinity when none. */
  readonly deadline?: number;
  readonly tenant?: Tenant;
  /**
   * The pipeline's options as the server builds them for every request (its
   * log, protocol 'http', admission and note): passed on as they are. Merged
   * here with a conditional spread, the line stood out in the profile of the
   * Ray Serve comparison's load: V8 spreads `{}` or `{ log }` on a slow path,
   * about 2.5 µs an operation in a micro-benchmark.
   */
  readonly pipeline: PipelineOptions;
  /** --system-shared-memory: the regions this gateway process has registered. */
  readonly sharedMemory?: SystemSharedMemory | undefined;
  /** The request's hold on the in-flight gate: told the bytes its inputs in shared memory add to the body. */
  readonly hold?: { settle(bytes: number): void } | undefined;
  /** The server's memo of each model's last binary-request header and its decoding. */
  readonly headers: InferHeaderMemo;
}

export async function infer(models: ModelManager, call: HttpInferCall): Promise<EncodedInferResponse> {
  const decoded = call.headers.decode(call.body, call.headerLength, call.name, call.version);
  const shm = call.sharedMemory;
  // Inputs and outputs in system shared memory (only requests that name a region take these branches).
  const r = decoded.request;
  const inputs = decoded.sharedInputs === undefined ? r.inputs : await sharedInputs(call, r.inputs, decoded.sharedInputs);
  // A literal, not `{ ...r, tenant }`: an object spread took about 0.7 µs in a micro-benchmark, on every request.
  const request: InferRequest = { modelName: r.modelName, modelVersion: r.modelVersion, id: r.id, inputs, outputs: r.outputs, parameters: r.parameters, tenant: call.tenant, classifications: r.classifications };
  const toShared = decoded.sharedOutputs && outputRefsOf(decoded.sharedOutputs, shm, call.name);
  const note = call.pipeline.note;
  if (note) note.bytesIn = request.inputs.reduce((n, t) => n + t.data.byteLength, 0);
  const result = await runInference(
    models,
    request,
    { signal: call.signal, deadline: call.deadline ?? Infinity },
    call.pipeline,
  );
  if (note) note.bytesOut = result.outputs.reduce((n, t) => n + t.data.byteLength, 0);
  if (toShared === undefined || shm === undefined) return encodeInferResponse(result, decoded);
  const outputs = await writeOutputs(result.outputs, toShared, shm, result.modelName);
  return encodeInferResponse({ ...result, outputs }, { ...decoded, sharedOutputNames: new Set(toShared.keys()) });
}

/** The request's inputs with those in shared memory read, their bytes first counted as held on the in-flight gate. */
async function sharedInputs(call: HttpInferCall, inputs: readonly Tensor[], refs: ReadonlyMap<number, SharedMemoryRef>): Promise<Tensor[]> {
  let shared = 0;
  for (const ref of refs.values()) shared += ref.byteSize;
  call.hold?.settle(call.body.byteLength + shared);
  return readSharedInputs(inputs, refs, call.sharedMemory, call.name);
}

/** POST /v2/repository/models/{m}/load|unload: Triton answers 200 with an empty body. */
export async function repositoryControl(models: ModelManager, name: string, action: 'load' | 'unload', body: Buffer): Promise<void> {
  let parsed: unknown = {};
  if (body.byteLength > 0) parsed = parseClientJson(body, `the repository ${action} request JSON`);
  if (action === 'load') await models.load(name, loadParametersFromJson(parsed));
  else await models.unload(name, unloadParametersFromJson(parsed));
}
