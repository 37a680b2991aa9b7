import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const RESULTS_DIR = fileURLToPath(new URL('../../../bench/results', import.meta.url));

export interface RunInfo {
  readonly date: string;
  readonly commit: string;
  readonly node: string;
  readonly cpu: string;
  readonly cores: number;
}

export function runInfo(): RunInfo {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout
  }
  return { date: new Date().toISOString(), commit, node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length };
}

/** Writes `<name>-<timestamp>.json/.md` and `latest-<name>.md` under bench/results/. */
export function saveResults(name: string, json: unknown, markdown: string): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(join(RESULTS_DIR, `${name}-${stamp}.json`), JSON.stringify(json, null, 2) + '\n');
  writeFileSync(join(RESULTS_DIR, `${name}-${stamp}.md`), markdown);
  writeFileSync(join(RESULTS_DIR, `latest-${name}.md`), markdown);
  return join(RESULTS_DIR, `latest-${name}.md`);
}

export const fmt = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : '–');
export const ms = (us: number): string => fmt(us / 1000, 2);
