// Every run is kept under bench/results/ as JSON (with its CSV, SVG and
// Markdown beside it), stamped with the commit, the date and the machine,
// so that `fabriek bench compare A B` can tell what changed.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { arch, availableParallelism, cpus, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RawOrtLevel } from './baselines/raw-ort.js';
import { type LevelResult } from './load/level.js';

/** bench/results/ in the source tree (this file runs from dist/bench/). */
export const RESULTS_DIR = fileURLToPath(new URL('../../bench/results', import.meta.url));

export interface MachineInfo {
  /** e.g. "linux 6.8.0-45-generic" */
  readonly os: string;
  readonly arch: string;
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
}

export interface RunInfo {
  readonly date: string;
  readonly commit: string;
  /** Uncommitted changes to tracked files other than bench/results/ when the run started. */
  readonly dirty: boolean;
  readonly machine: MachineInfo;
}

/** A figure a run stands or falls by (the suite's P1–P4), and which way is better. */
export interface Metric {
  readonly id: string;
  readonly label: string;
  readonly value: number;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
}

export interface RawOrtSeries {
  readonly model: string;
  readonly levels: readonly RawOrtLevel[];
}

export interface RunRecord {
  readonly format: 'fabriek-bench/1';
  readonly kind: string;
  readonly info: RunInfo;
  readonly options: Readonly<Record<string, unknown>>;
  readonly levels: readonly LevelResult[];
  readonly rawOrt?: readonly RawOrtSeries[];
  readonly metrics?: readonly Metric[];
  readonly notes?: readonly string[];
}

function git(args: readonly string[]): string | undefined {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000, cwd: fileURLToPath(new URL('.', import.meta.url)) }).trim();
  } catch {
    return undefined; // not a git checkout, or no git
  }
}

export function runInfo(): RunInfo {
  const status = git(['status', '--porcelain', '--untracked-files=no', '--', '.', ':(exclude)bench/results']);
  return {
    date: new Date().toISOString(),
    commit: git(['rev-parse', '--short', 'HEAD']) ?? 'unknown',
    dirty: status !== undefined && status !== '',
    machine: {
      os: `${platform()} ${release()}`,
      arch: arch(),
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: availableParallelism(),
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
    },
  };
}

export const describeRun = (i: RunInfo): string =>
  `${i.date} · commit ${i.commit}${i.dirty ? ' (with uncommitted changes)' : ''} · ${i.machine.cpu} × ${i.machine.cores} cores, ${i.machine.memoryGiB} GiB, ${i.machine.os} ${i.machine.arch} · Node ${i.machine.node}`;

/** The files one run is kept as. */
export interface RunFiles {
  readonly json: string;
  readonly markdown: string;
  readonly csv?: string;
  readonly svg?: string;
}

/**
 * Writes `<dir>/<stamp>-<name>.{json,md,csv,svg}` (csv/svg when given) and,
 * with `latest`, the same under `<dir>/<latest>.{…}`. Returns the paths.
 */
export function saveRun(
  record: RunRecord,
  content: { readonly markdown: string; readonly csv?: string; readonly svg?: string },
  o: { readonly dir?: string; readonly name: string; readonly latest?: string },
): string[] {
  const dir = o.dir ?? RESULTS_DIR;
  mkdirSync(dir, { recursive: true });
  const stamp = record.info.date.replace(/[:.]/g, '-');
  const written: string[] = [];
  const write = (base: string): void => {
    const files: [string, string][] = [[`${base}.json`, JSON.stringify(record, null, 2) + '\n'], [`${base}.md`, content.markdown]];
    if (content.csv !== undefined) files.push([`${base}.csv`, content.csv]);
    if (content.svg !== undefined) files.push([`${base}.svg`, content.svg]);
    for (const [path, text] of files) {
      writeFileSync(path, text);
      written.push(path);
    }
  };
  write(join(dir, `${stamp}-${o.name}`));
  if (o.latest !== undefined) write(join(dir, o.latest));
  return written;
}

export class HistoryError extends Error {
  override name = 'HistoryError';
}

/** Reads a run saved by saveRun; throws HistoryError when the file is not one. */
export function loadRun(path: string): RunRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new HistoryError(`${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const r = parsed as Partial<RunRecord> | null;
  if (r === null || typeof r !== 'object' || r.format !== 'fabriek-bench/1' || !Array.isArray(r.levels)) {
    throw new HistoryError(`${path}: not a fabriek bench result (expected "format": "fabriek-bench/1" and "levels")`);
  }
  return r as RunRecord;
}
