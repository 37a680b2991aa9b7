import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type ModelConfig } from '../../proto/gen/model_config.js';
import { ConfigError, formatConfigMessage } from '../config/config-error.js';
import { parseModelConfig, type ParsedModelConfig } from '../config/model-config.js';
import { RepositoryError } from './repository-error.js';
import { selectVersions } from './version-policy.js';

export { RepositoryError } from './repository-error.js';

export const CONFIG_FILENAME = 'config.pbtxt';
export const DEFAULT_MODEL_FILENAME = 'model.onnx';
/** Triton's platform of a model made of other models' steps. */
export const ENSEMBLE_PLATFORM = 'ensemble';

export interface ModelVersionEntry {
  readonly version: number;
  /** `<repo>/<model>/<version>/<default_model_filename or model.onnx>`. */
  readonly path: string;
}

export interface ModelEntry {
  /** The directory name, which is the model's name. */
  readonly name: string;
  readonly directory: string;
  /** Path of config.pbtxt when the model has one. */
  readonly configFile: string | undefined;
  /** Parsed config.pbtxt; undefined when there is none or it does not parse. */
  readonly config: ModelConfig | undefined;
  /** config.pbtxt as read, when it parsed (a registered worker publishes it). */
  readonly configText?: string;
  /** Fields config.pbtxt writes: pass to completeConfig as `present`. */
  readonly present: ReadonlySet<string>;
  /** Accepted-but-ignored config fields, skipped directories: for the log. */
  readonly warnings: readonly string[];
  /**
   * The versions the version_policy selects, ascending, as far as they can
   * be known; with `error` set, none of them should be loaded.
   */
  readonly versions: readonly ModelVersionEntry[];
  /** Why the model cannot be served (file and field for config errors). */
  readonly error?: string;
}

export interface RepositoryScan {
  readonly directory: string;
  /** Sorted by name. */
  readonly models: readonly ModelEntry[];
}

const errnoOf = (error: unknown): string | undefined =>
  error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;

/**
 * Reads `<dir>/<model>/[config.pbtxt]` and `<dir>/<model>/<version>/<file>`.
 * Throws RepositoryError only when `dir` itself is unusable; a bad model
 * becomes an entry with `error` so the others still serve.
 */
export async function scanRepository(directory: string): Promise<RepositoryScan> {
  try {
    if (!(await stat(directory)).isDirectory()) {
      throw new RepositoryError(directory, `model repository ${directory}: expected a directory, got a file`);
    }
  } catch (error) {
    if (error instanceof RepositoryError) throw error;
    const what = errnoOf(error) === 'ENOENT' ? 'does not exist' : `cannot be read (${String(error)})`;
    throw new RepositoryError(directory, `model repository ${directory} ${what}`, { cause: error });
  }
  const names = (await readdir(directory)).filter((n) => !n.startsWith('.')).sort();
  // Several models at once (a few file-system calls each, one after another):
  // a thousand models one at a time took over a second. In name order still.
  const scanned: Array<ModelEntry | undefined> = new Array<ModelEntry | undefined>(names.length);
  let next = 0;
  const scanNext = async (): Promise<void> => {
    for (let i = next++; i < names.length; i = next++) {
      const path = join(directory, names[i] as string);
      if (await isDirectory(path)) scanned[i] = await scanModel(path);
    }
  };
  await Promise.all(Array.from({ length: Math.min(SCAN_CONCURRENCY, names.length) }, scanNext));
  return { directory, models: scanned.filter((m): m is ModelEntry => m !== undefined) };
}

/** Model directories read at once by scanRepository. */
const SCAN_CONCURRENCY = 16;

/** One model directory; never throws for what is in it. */
export async function scanModel(directory: string): Promise<ModelEntry> {
  const name = basename(directory);
  const warnings: string[] = [];
  const base = { name, directory, warnings };
  const configFile = join(directory, CONFIG_FILENAME);
  let text: string | undefined;
  try {
    text = await readFile(configFile, 'utf8');
  } catch (error) {
    if (errnoOf(error) !== 'ENOENT') {
      const unreadable = `${configFile}: cannot be read (${String(error)})`;
      return { ...base, configFile, config: undefined, present: new Set(), versions: [], error: unreadable };
    }
  }
  if (text === undefined) {
    const versions = await findVersions(directory, undefined, warnings);
    return { ...base, configFile: undefined, config: undefined, present: new Set(), ...versions };
  }
  let parsed: ParsedModelConfig;
  try {
    parsed = parseModelConfig(text, configFile);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return { ...base, configFile, config: undefined, present: new Set(), versions: [], error: error.message };
  }
  const { config, present } = parsed;
  warnings.push(...parsed.warnings);
  const found = await findVersions(directory, config, warnings, configFile);
  const nameReason = `expected ${JSON.stringify(name)} (the model's directory name), got ${JSON.stringify(config.name)}`;
  const nameError = config.name !== '' && config.name !== name ? formatConfigMessage(configFile, 'name', nameReason) : undefined;
  const error = nameError ?? found.error;
  return { ...base, configFile, config, configText: text, present, versions: found.versions, ...(error === undefined ? {} : { error }) };
}

async function findVersions(
  directory: string,
  config: ModelConfig | undefined,
  warnings: string[],
  configFile = join(directory, CONFIG_FILENAME),
): Promise<{ versions: ModelVersionEntry[]; error?: string }> {
  const filename = config?.defaultModelFilename || DEFAULT_MODEL_FILENAME;
  if (filename !== basename(filename) || filename === '.' || filename === '..') {
    const reason = `expected a file name inside each version directory, got ${JSON.stringify(filename)}`;
    return { versions: [], error: formatConfigMessage(configFile, 'default_model_filename', reason) };
  }
  let entries: string[];
  try {
    entries = (await readdir(directory)).filter((n) => !n.startsWith('.'));
  } catch (error) {
    return { versions: [], error: `${directory}: cannot be read (${String(error)})` };
  }
  const available: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    if (!(await isDirectory(join(directory, entry)))) continue;
    const version = Number(entry);
    if (!Number.isSafeInteger(version) || String(version) !== entry) {
      const reason = `ignored: expected a version number without leading zeros, got ${JSON.stringify(entry)}`;
      warnings.push(`${join(directory, entry)}: ${reason}`);
      continue;
    }
    available.push(version);
  }
  const { selected, missing } = selectVersions(config?.versionPolicy, available);
  const versions = selected.map((version) => ({ version, path: join(directory, String(version), filename) }));
  if (missing.length > 0) {
    const dirs = missing.map((v) => join(directory, String(v))).join(', ');
    const reason = `expected a version directory for every listed version, got none for ${missing.join(', ')} (${dirs})`;
    return { versions, error: formatConfigMessage(configFile, 'version_policy.specific.versions', reason) };
  }
  if (versions.length === 0) {
    const reason =
      available.length === 0
        ? `expected at least one version directory such as ${join(directory, '1', filename)}, got none`
        : 'expected version_policy to select at least one version, got none';
    return { versions, error: `${directory}: ${reason}` };
  }
  // An ensemble's version directories are empty: its steps are other models.
  if (config?.platform === ENSEMBLE_PLATFORM) return { versions };
  const absent: string[] = [];
  for (const v of versions) {
    if (!(await isFile(v.path))) absent.push(v.path);
  }
  if (absent.length > 0) {
    return { versions, error: `${directory}: expected a model file at ${absent.join(', ')}, got none` };
  }
  return { versions };
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() ?? false;
}
