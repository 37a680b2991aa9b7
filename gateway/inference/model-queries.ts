import { notFound } from '../../core/errors.js';
import { batcherJson, directJson, placementsJson } from '../batching/batching-state.js';
import { DynamicBatcher } from '../batching/dynamic-batcher.js';
import { DirectScheduler } from '../scheduling/direct-scheduler.js';
import { batchingSchedulerOf, SequenceScheduler } from '../scheduling/sequence-scheduler.js';
import { type TensorSignature } from '../../core/signature.js';
import { type ModelStatistics } from '../../proto/gen/inference.js';
import { type ModelConfig } from '../../proto/gen/model_config.js';
import { type ModelManager, NOT_LOADED } from '../repository/model-manager.js';
import { type ModelVersion } from '../repository/model-version.js';

// The answers to the non-inference questions both protocols ask (readiness,
// metadata, config, statistics, repository index), computed once here;
// gRPC and HTTP only encode them.

/** What ServerReady / GET /v2/health/ready report. */
export interface ReadinessInfo {
  /** True from the start of shutdown. */
  isDraining(): boolean;
  /** Triton's --strict-readiness: ready only when every model is READY. */
  readonly strictReadiness: boolean;
}

export function serverReady(models: ModelManager, info: ReadinessInfo): boolean {
  if (info.isDraining()) return false;
  // On demand, models load and unload as requests come: the server is ready once it serves.
  if (models.onDemand) return true;
  if (!models.allSettled()) return false;
  // Without a repository the models are the registered workers': none known yet is nothing to serve.
  if (!models.hasRepository && !models.list().some((v) => v.state === 'READY')) return false;
  // Versions that explicit model control left unloaded on purpose do not count (Triton's rule).
  return !info.strictReadiness || models.list().every((v) => v.state === 'READY' || v.reason === NOT_LOADED);
}

/** False, not an error, for an unknown or unavailable model (as Triton). */
export function modelReady(models: ModelManager, name: string, version: string): boolean {
  try {
    return models.resolve(name, version).state === 'READY';
  } catch {
    return false;
  }
}

export interface TensorMetadata {
  readonly name: string;
  readonly datatype: string;
  /** -1 for a dimension of variable size, the batch dimension included. */
  readonly shape: readonly number[];
}

export interface ModelMetadata {
  readonly name: string;
  readonly versions: readonly string[];
  readonly platform: string;
  readonly inputs: readonly TensorMetadata[];
  readonly outputs: readonly TensorMetadata[];
}

function tensorMetadata(t: TensorSignature, batched: boolean): TensorMetadata {
  return { name: t.name, datatype: t.datatype, shape: batched ? [-1, ...t.dims] : [...t.dims] };
}

export function modelMetadata(models: ModelManager, name: string, version: string): ModelMetadata {
  const v = models.resolve(name, version);
  const sig = v.serving?.signature;
  const batched = (sig?.maxBatchSize ?? 0) > 0;
  return {
    name: v.name,
    versions: models
      .versionsOf(v.name)
      .filter((x) => x.state === 'READY')
      .map((x) => String(x.version)),
    platform: v.serving?.config.platform || 'onnxruntime_onnx',
    inputs: (sig?.inputs ?? []).map((t) => tensorMetadata(t, batched)),
    outputs: (sig?.outputs ?? []).map((t) => tensorMetadata(t, batched)),
  };
}

/** The completed config, with where it runs in `parameters.execution_provider`. */
export function servedConfig(models: ModelManager, name: string, version: string): ModelConfig | undefined {
  const serving = models.resolve(name, version).serving;
  if (!serving) return undefined;
  return {
    ...serving.config,
    parameters: { ...serving.config.parameters, execution_provider: { stringValue: serving.executionProvider } },
  };
}

/** Every model when `name` is empty, every version when `version` is empty (Triton). */
export function modelStatistics(models: ModelManager, name: string, version: string): ModelStatistics[] {
  let versions: ModelVersion[];
  if (name === '') {
    versions = models.list();
  } else if (version === '') {
    versions = models.versionsOf(name);
    if (versions.length === 0) throw notFound(`model '${name}' is not in the repository`);
  } else {
    versions = [models.resolve(name, version)];
  }
  return versions.flatMap((v) => (v.serving ? [v.serving.stats.snapshot(v.name, String(v.version))] : []));
}

/**
 * What the version's scheduler has learned and decides by now (batching-state.ts): GET
 * /v2/models/{m}[/versions/{v}]/batching. Of this gateway process: with several, each has its own.
 */
export function batchingState(models: ModelManager, name: string, version: string): Record<string, unknown> {
  const v = models.resolve(name, version);
  const serving = v.serving;
  const outer = serving?.scheduler;
  // A sequence model: its sequences running and waiting, then the scheduler they batch in.
  const sequences = outer instanceof SequenceScheduler ? { sequences: outer.sequences } : {};
  const head = { model: v.name, version: String(v.version), gateway_pid: process.pid, ...sequences };
  const scheduler = outer && batchingSchedulerOf(outer);
  const workers = serving ? { workers: placementsJson(serving.slots.placements()) } : {};
  if (scheduler instanceof DynamicBatcher) return { ...head, ...batcherJson(scheduler.state(), scheduler.costs), ...workers };
  if (scheduler instanceof DirectScheduler) return { ...head, ...directJson(scheduler.state(), scheduler.costs, Math.max(1, serving?.signature.maxBatchSize ?? 1)), ...workers };
  // An ensemble: each step batches in its own model's scheduler.
  return { ...head, scheduler: 'ensemble' };
}

export interface IndexEntry {
  readonly name: string;
  /** "" for a model whose versions could not be read. */
  readonly version: string;
  readonly state: string;
  readonly reason: string;
}

export function repositoryIndex(models: ModelManager, readyOnly: boolean): IndexEntry[] {
  return models
    .list()
    .filter((v) => !readyOnly || v.state === 'READY')
    .map((v) => ({ name: v.name, version: v.version > 0 ? String(v.version) : '', state: v.state, reason: v.reason }));
}
