import { type HostedModel } from '../../core/worker-record.js';
import { ConfigError, parseModelConfig } from '../../models/config/model-config.js';
import { type ModelEntry } from '../../models/repository/scan.js';
import { modelKey, type ModelVersion } from '../repository/model-version.js';

// A gateway started with --registry and no --model-repository knows its
// models from the workers' registry records: each record carries the
// config.pbtxt its worker loaded the model with, and the signature ONNX
// Runtime reported. Completion, batching and limits then work as they do
// from a repository. There is no directory: nothing is read from disk.

/** Where a record's config is said to come from, in errors and the model's config file name. */
export function recordConfigFile(model: HostedModel, workerId: string): string {
  return `${model.name}/config.pbtxt (from registered worker ${workerId})`;
}

/** The model's entry as a worker publishes it; a config that does not parse gives an entry with `error`. */
export function entryFromRecord(model: HostedModel, workerId: string): ModelEntry {
  const base = { name: model.name, directory: '', warnings: [] as string[], versions: [] };
  if (model.config === undefined) return { ...base, configFile: undefined, config: undefined, present: new Set() };
  const configFile = recordConfigFile(model, workerId);
  try {
    const parsed = parseModelConfig(model.config, configFile);
    return { ...base, configFile, config: parsed.config, configText: model.config, present: parsed.present };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return { ...base, configFile, config: undefined, configText: model.config, present: new Set(), error: error.message };
  }
}

/** Does a worker's record describe the model with the config the gateway took from the first one? */
export function sameConfig(entry: ModelEntry, model: HostedModel): boolean {
  return entry.configText === model.config;
}

/** A version first seen in a record: not loaded (made ready from the record), or unavailable with the entry's error. */
export function versionFromRecord(model: HostedModel, entry: ModelEntry): ModelVersion {
  return {
    name: model.name,
    version: model.version,
    key: modelKey(model.name, model.version),
    modelPath: '',
    state: entry.error === undefined ? 'UNKNOWN' : 'UNAVAILABLE',
    reason: entry.error ?? '',
    serving: undefined,
  };
}

/** `versions` with `v` in version order (a new array). */
export function withVersion(versions: readonly ModelVersion[], v: ModelVersion): ModelVersion[] {
  return [...versions, v].sort((a, b) => a.version - b.version);
}
