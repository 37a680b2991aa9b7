import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** bench/results/ in the source tree (this file runs from dist/bench/load/). */
export const RESULTS_DIR = fileURLToPath(new URL('../../../bench/results', import.meta.url));

export interface RunInfo {
  readonly date: string;
  readonly commit: string;
  readonly node: string;
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
}

export function runInfo(): RunInfo {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000 }).trim();
  } catch {
    // Not a git checkout, or no git: the report says 'unknown'.
  }
  return {
    date: new Date().toISOString(),
    commit,
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
  };
}

export const describeRun = (i: RunInfo): string => `${i.date} · commit ${i.commit} · ${i.cpu} × ${i.cores} cores, ${i.memoryGiB} GiB · Node ${i.node}`;

/** Writes `<name>-<timestamp>.json` and `.md`, and `latest-<name>.md`. Returns the paths. */
export function saveResults(name: string, json: unknown, markdown: string): string[] {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const paths = [join(RESULTS_DIR, `${name}-${stamp}.json`), join(RESULTS_DIR, `${name}-${stamp}.md`), join(RESULTS_DIR, `latest-${name}.md`)];
  const [jsonPath, mdPath, latestPath] = paths as [string, string, string];
  writeFileSync(jsonPath, JSON.stringify(json, null, 2) + '\n');
  writeFileSync(mdPath, markdown);
  writeFileSync(latestPath, markdown);
  return paths;
}

export const num = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : '–');
/** µs → ms with 2 decimals. */
export const ms = (us: number): string => num(us / 1000, 2);
export const ratio = (a: number, b: number, digits = 2): string => (Number.isFinite(a / b) ? `${(a / b).toFixed(digits)}×` : '–');
export const percent = (a: number, b: number): string => (Number.isFinite(a / b) ? `${((100 * a) / b).toFixed(0)} %` : '–');
export const errorText = (errors: Readonly<Record<string, number>>): string =>
  Object.entries(errors)
    .map(([code, n]) => `${code} ${n}`)
    .join(', ') || '0';

/** A Markdown table; the first `rightFrom` columns are left-aligned, the rest right-aligned. */
export function mdTable(headers: readonly string[], rows: readonly (readonly string[])[], rightFrom = 1): string {
  const align = headers.map((_, i) => (i < rightFrom ? '---' : '---:'));
  return [headers, align, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n') + '\n';
}
