// What RepositoryModelLoad/Unload need besides the manager's own state:
// turning the request's parameters into a ModelEntry (a rescan of the
// model's directory, Triton's `config` override, `file:` uploads written to a
// temp dir), and draining a version's scheduler before it goes away.
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, normalize, sep } from 'node:path';
import { invalidArgument, notFound } from '../../core/errors.js';
import { DEFAULT_MODEL_FILENAME, type ModelEntry, scanModel } from '../../models/repository/scan.js';
import { selectVersions } from '../../models/repository/version-policy.js';
import { type ModelRepositoryParameter } from '../../proto/gen/inference.js';
import { ModelConfig } from '../../proto/gen/model_config.js';
import { type ModelVersion, modelKey } from './model-version.js';
import { checkJsonDepth } from '../parse-json.js';

/** A load request's parameters, protocol-neutral. */
export interface LoadParameters {
  /** Triton's `config`: a ModelConfig as JSON; replaces config.pbtxt. */
  readonly config?: string;
  /** `file:<version>/<file>` → bytes; the model is loaded from these alone. */
  readonly files: ReadonlyMap<string, Uint8Array>;
}

const FILE_PREFIX = 'file:';

export function loadParametersFromProto(parameters: Readonly<Record<string, ModelRepositoryParameter>>): LoadParameters {
  const files = new Map<string, Uint8Array>();
  let config: string | undefined;
  for (const [key, p] of Object.entries(parameters)) {
    const choice = p.parameterChoice;
    if (key === 'config') {
      if (choice?.$case !== 'stringParam') throw invalidArgument(`parameter 'config' must be a string_param holding the model config as JSON`);
      config = choice.value;
    } else if (key.startsWith(FILE_PREFIX)) {
      if (choice?.$case !== 'bytesParam') throw invalidArgument(`parameter '${key}' must be a bytes_param`);
      files.set(key.slice(FILE_PREFIX.length), choice.value);
    }
  }
  return config === undefined ? { files } : { config, files };
}

/** HTTP body `{"parameters": {"config": "...", "file:1/model.onnx": "<base64>"}}`, as Triton's REST API takes it. */
export function loadParametersFromJson(body: unknown): LoadParameters {
  const files = new Map<string, Uint8Array>();
  let config: string | undefined;
  const parameters = typeof body === 'object' && body !== null ? (body as { parameters?: unknown }).parameters : undefined;
  if (parameters === undefined) return { files };
  if (typeof parameters !== 'object' || parameters === null) throw invalidArgument(`'parameters' must be an object`);
  for (const [key, value] of Object.entries(parameters)) {
    if (key === 'config') {
      if (typeof value !== 'string') throw invalidArgument(`parameter 'config' must be a string holding the model config as JSON`);
      config = value;
    } else if (key.startsWith(FILE_PREFIX)) {
      if (typeof value !== 'string') throw invalidArgument(`parameter '${key}' must be a base64 string`);
      files.set(key.slice(FILE_PREFIX.length), Buffer.from(value, 'base64'));
    }
  }
  return config === undefined ? { files } : { config, files };
}

/** RepositoryModelUnload's parameters: Triton's `unload_dependents` (see ModelManager.unload). */
export interface UnloadParameters {
  readonly dependents: boolean;
}

const UNLOAD_DEPENDENTS = 'unload_dependents';

export function unloadParametersFromProto(parameters: Readonly<Record<string, ModelRepositoryParameter>>): UnloadParameters {
  const choice = parameters[UNLOAD_DEPENDENTS]?.parameterChoice;
  if (choice === undefined) return { dependents: false };
  if (choice.$case !== 'boolParam') {
    throw invalidArgument(`parameter '${UNLOAD_DEPENDENTS}' must be a bool_param, got ${choice.$case.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`);
  }
  return { dependents: choice.value };
}

/** HTTP body `{"parameters": {"unload_dependents": true}}`, as Triton's REST API takes it. */
export function unloadParametersFromJson(body: unknown): UnloadParameters {
  const parameters = typeof body === 'object' && body !== null ? (body as { parameters?: unknown }).parameters : undefined;
  if (parameters === undefined) return { dependents: false };
  if (typeof parameters !== 'object' || parameters === null) throw invalidArgument(`'parameters' must be an object`);
  const value = (parameters as Record<string, unknown>)[UNLOAD_DEPENDENTS];
  if (value === undefined) return { dependents: false };
  if (typeof value !== 'boolean') throw invalidArgument(`parameter '${UNLOAD_DEPENDENTS}' must be a boolean, got ${JSON.stringify(value)}`);
  return { dependents: value };
}

/** Upload dirs still in use; removed at exit too, since the user never sees them. */
const liveUploads = new Set<string>();
process.once('exit', () => {
  for (const dir of liveUploads) rmSync(dir, { recursive: true, force: true });
});

export async function removeUpload(dir: string | undefined): Promise<void> {
  if (dir === undefined) return;
  liveUploads.delete(dir);
  await rm(dir, { recursive: true, force: true });
}

export interface LoadSource {
  readonly entry: ModelEntry;
  /** The temp dir holding uploaded files, to remove once the model no longer serves from it. */
  readonly uploadDir?: string;
}

/**
 * The model as a load should see it: `<repository>/<name>` rescanned, or the
 * uploaded files in a fresh temp dir (never the user's repository); with
 * `config`, that config instead of config.pbtxt. Throws NOT_FOUND for an
 * unknown name and INVALID_ARGUMENT for bad parameters; a model that is
 * there but broken comes back as an entry with `error`.
 */
export async function prepareLoad(repository: string, name: string, params: LoadParameters): Promise<LoadSource> {
  if (name === '' || name.startsWith('.') || name.includes('/') || name.includes('\\')) {
    throw invalidArgument(`model name '${name}' is not a valid directory name`);
  }
  const override = params.config === undefined ? undefined : parseConfigOverride(params.config, name);
  if (params.files.size > 0) {
    if (!override) throw invalidArgument(`load of '${name}' with files needs the 'config' parameter too (as in Triton)`);
    const uploadDir = await mkdtemp(join(tmpdir(), 'fabriek-upload-'));
    liveUploads.add(uploadDir);
    try {
      const directory = join(uploadDir, name);
      for (const [path, bytes] of params.files) {
        const target = normalize(join(directory, path));
        if (!target.startsWith(directory + sep) || path.startsWith('/')) {
          throw invalidArgument(`file parameter 'file:${path}' must name a path inside the model directory`);
        }
        await mkdir(dirname(target), { recursive: true });
        await writeFile(target, bytes);
      }
      return { entry: await entryWithConfig(directory, name, override), uploadDir };
    } catch (error) {
      await removeUpload(uploadDir);
      throw error;
    }
  }
  const directory = join(repository, name);
  if (!(await stat(directory).catch(() => undefined))?.isDirectory()) {
    throw notFound(`failed to load '${name}': no model directory ${directory} in the repository`);
  }
  return { entry: override ? await entryWithConfig(directory, name, override) : await scanModel(directory) };
}

interface ConfigOverride {
  readonly config: ModelConfig;
  readonly present: ReadonlySet<string>;
}

function parseConfigOverride(text: string, name: string): ConfigOverride {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw invalidArgument(`parameter 'config' of '${name}' is not valid JSON: ${String(error)}`);
  }
  checkJsonDepth(json, `parameter 'config' of '${name}'`);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw invalidArgument(`parameter 'config' of '${name}' must be a JSON object (a ModelConfig)`);
  }
  let config: ModelConfig;
  try {
    // ts-proto's fromJSON takes Triton's snake_case keys as well as camelCase.
    config = ModelConfig.fromJSON(json);
  } catch (error) {
    throw invalidArgument(`parameter 'config' of '${name}' is not a valid ModelConfig: ${String(error)}`);
  }
  if (config.name !== '' && config.name !== name) {
    throw invalidArgument(`parameter 'config' of '${name}': expected name '${name}', got '${config.name}'`);
  }
  return { config, present: presentPaths(json, '') };
}

/** Field paths the JSON writes, spelled as config.pbtxt's reader records them (`max_batch_size`, `input[0].dims`). */
function presentPaths(value: object, prefix: string): Set<string> {
  const out = new Set<string>();
  for (const [key, child] of Object.entries(value)) {
    const path = `${prefix}${key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`;
    out.add(path);
    if (Array.isArray(child)) {
      child.forEach((item: unknown, i) => {
        out.add(`${path}[${i}]`);
        if (typeof item === 'object' && item !== null) for (const p of presentPaths(item, `${path}[${i}].`)) out.add(p);
      });
    } else if (typeof child === 'object' && child !== null) {
      for (const p of presentPaths(child, `${path}.`)) out.add(p);
    }
  }
  return out;
}

/** scanModel's version discovery, with the override in place of config.pbtxt. */
async function entryWithConfig(directory: string, name: string, override: ConfigOverride): Promise<ModelEntry> {
  const { config, present } = override;
  const base = { name, directory, configFile: undefined, config, present, warnings: [] };
  const filename = config.defaultModelFilename || DEFAULT_MODEL_FILENAME;
  if (filename.includes('/') || filename === '.' || filename === '..') {
    return { ...base, versions: [], error: `config: expected a file name in default_model_filename, got '${filename}'` };
  }
  const available: number[] = [];
  for (const d of await readdir(directory).catch(() => [])) {
    if (/^(0|[1-9]\d*)$/.test(d) && (await stat(join(directory, d)).catch(() => undefined))?.isDirectory()) available.push(Number(d));
  }
  const { selected, missing } = selectVersions(config.versionPolicy, available);
  const versions = selected.map((version) => ({ version, path: join(directory, String(version), filename) }));
  if (missing.length > 0) return { ...base, versions, error: `${directory}: no version directory for ${missing.join(', ')}` };
  if (versions.length === 0) return { ...base, versions, error: `${directory}: expected at least one version directory, got none` };
  const absent: string[] = [];
  for (const v of versions) if (!(await stat(v.path).catch(() => undefined))?.isFile()) absent.push(v.path);
  if (absent.length > 0) return { ...base, versions, error: `${directory}: expected a model file at ${absent.join(', ')}, got none` };
  return { ...base, versions };
}

/** The version records of a scanned model: UNKNOWN (to load), or UNAVAILABLE with the scan's error. */
export function versionsOf(entry: ModelEntry): ModelVersion[] {
  const versions: ModelVersion[] = entry.versions.map((v) => ({
    name: entry.name,
    version: v.version,
    key: modelKey(entry.name, v.version),
    modelPath: v.path,
    state: entry.error ? 'UNAVAILABLE' : 'UNKNOWN',
    reason: entry.error ?? '',
    serving: undefined,
  }));
  if (versions.length === 0) {
    versions.push({
      name: entry.name,
      version: 0,
      key: modelKey(entry.name, 0),
      modelPath: '',
      state: 'UNAVAILABLE',
      reason: entry.error ?? 'no version found',
      serving: undefined,
    });
  }
  return versions;
}

/**
 * Lets what a version's scheduler already holds run to the end, then stops
 * it. The caller has taken the version out of `resolve` first, so nothing new
 * arrives. After `timeoutMs` whatever is still queued fails with `reason`.
 */
export async function drainScheduler(v: ModelVersion, reason: Error, timeoutMs = 60_000): Promise<void> {
  const scheduler = v.serving?.scheduler;
  if (!scheduler) return;
  const until = Date.now() + timeoutMs;
  while (scheduler.pending > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
  await scheduler.stop(reason);
}
