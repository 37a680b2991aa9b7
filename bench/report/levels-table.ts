// The per-level table every report shows (console and Markdown), with the
// ratios of the server under test to the baselines measured in the same run.
import { medianOf } from '../../core/median.js';
import { type RawOrtLevel } from '../baselines/raw-ort.js';
import { type LevelResult } from '../load/level.js';
import { cacheHitRate } from '../load/server-stats.js';
import { errorText, ms, num, percent, ratio } from './format.js';

export const SERVER_SERIES = 'fabriek';
export const ECHO_SERIES = 'grpc-echo';
export const OFF_SERIES = 'batching off';
export const CACHE_OFF_SERIES = 'cache off';

export interface TableOptions {
  readonly percentile?: number;
  readonly sloMs?: number;
  /** Raw ORT levels of the model, and the model's max_batch_size (to pick the batch that c clients could form). */
  readonly rawOrt?: readonly RawOrtLevel[];
  readonly maxBatchSize?: number;
  /** The model raw ORT ran; rows of other models leave its columns empty (the suite runs two models). Undefined: every row's. */
  readonly rawOrtModel?: string;
}

export const loadLabel = (l: { readonly mode: LevelResult['mode']; readonly value: number; readonly distribution?: string | undefined }): string =>
  l.mode === 'concurrency' ? `c=${l.value}` : `${num(l.value)}/s ${l.distribution ?? ''}`.trim();

const sameLoad = (a: LevelResult, b: LevelResult): boolean => a.mode === b.mode && a.value === b.value && a.batchSize === b.batchSize && a.model === b.model;
/** The same load in the same round: a ratio compares the server with the baseline measured next to it. */
const sameRun = (a: LevelResult, b: LevelResult): boolean => sameLoad(a, b) && a.round === b.round;

/** Raw ORT rows/s at the batch `c` clients of batch `b` could form at most (c·b, capped at max_batch_size), and the best of all. */
export function rawOrtFor(l: LevelResult, raw: readonly RawOrtLevel[] | undefined, maxBatchSize: number | undefined): { at: number; batch: number; best: number } {
  if (!raw || raw.length === 0) return { at: NaN, batch: NaN, best: NaN };
  const want = l.mode === 'concurrency' ? l.value * l.batchSize : l.batchSize;
  const capped = maxBatchSize !== undefined && maxBatchSize > 0 ? Math.min(want, maxBatchSize) : want;
  // The largest measured batch not above what could form.
  const fit = [...raw].filter((r) => r.batchSize <= capped).sort((a, b) => b.batchSize - a.batchSize)[0] ?? raw[0];
  return { at: fit?.rowsPerSecond ?? NaN, batch: fit?.batchSize ?? NaN, best: Math.max(...raw.map((r) => r.rowsPerSecond)) };
}

/** Server CPU per request of `l` as a multiple of the baseline's, e.g. "2.10×"; "–" when either is unknown. */
export const cpuRatio = (l: LevelResult, base: LevelResult): string => ratio(l.serverCpuUsPerRequest ?? NaN, base.serverCpuUsPerRequest ?? NaN);

export function levelTable(levels: readonly LevelResult[], o: TableOptions = {}): { headers: string[]; rows: string[][] } {
  const hasEcho = levels.some((l) => l.series === ECHO_SERIES);
  const hasOff = levels.some((l) => l.series === OFF_SERIES);
  const hasCacheOff = levels.some((l) => l.series === CACHE_OFF_SERIES);
  const hasCache = levels.some((l) => (l.server?.cacheHits ?? 0) + (l.server?.cacheMisses ?? 0) > 0);
  const hasRaw = (o.rawOrt?.length ?? 0) > 0;
  const headers = ['series', 'model', 'load', 'b', 'infer/s', 'avg ms', 'p50 ms', 'p90 ms', 'p95 ms', 'p99 ms'];
  if (o.percentile !== undefined) headers.push(`p${o.percentile} ms`);
  headers.push('errors');
  if (o.sloMs !== undefined) headers.push(`goodput ≤${o.sloMs} ms`);
  headers.push('queue ms', 'compute ms', 'avg batch', 'CPU client+server+other', 'server CPU µs/req', 'stable');
  if (hasEcho) headers.push('vs grpc-echo', 'p50 added µs', 'CPU/req × grpc-echo');
  if (hasOff) headers.push('vs batching off');
  if (hasCache) headers.push('cache hits');
  if (hasCacheOff) headers.push('vs cache off');
  if (hasRaw) headers.push('vs raw ORT (batch)', 'vs raw ORT best');
  const rows = levels.map((l) => {
    const s = l.server;
    const compute = s ? s.computeInputUs + s.computeInferUs + s.computeOutputUs : NaN;
    const row = [l.round === undefined ? l.series : `${l.series} (${l.round})`, l.model, loadLabel(l), String(l.batchSize), num(l.inferPerSecond), ms(l.latency.avgUs), ms(l.latency.p50Us), ms(l.latency.p90Us), ms(l.latency.p95Us), ms(l.latency.p99Us)];
    if (o.percentile !== undefined) row.push(ms(l.latency.pxUs ?? NaN));
    row.push(errorText(l.errors));
    if (o.sloMs !== undefined) row.push(num(l.goodputPerSecond));
    row.push(ms(s?.queueUs ?? NaN), ms(compute), num(s?.avgBatchSize ?? NaN, 1), l.cpu ? `${num(l.cpu.client, 2)}+${num(l.cpu.server, 2)}+${num(l.cpu.other, 2)}` : '–', num(l.serverCpuUsPerRequest ?? NaN), l.stable ? 'yes' : `no (${l.trials})`);
    const main = l.series !== ECHO_SERIES && l.series !== OFF_SERIES && l.series !== CACHE_OFF_SERIES;
    const echo = levels.find((x) => x.series === ECHO_SERIES && sameRun(x, l));
    const off = levels.find((x) => x.series === OFF_SERIES && sameRun(x, l));
    if (hasEcho) {
      row.push(
        main && echo ? percent(l.inferPerSecond, echo.inferPerSecond) : '',
        main && echo ? num(l.latency.p50Us - echo.latency.p50Us) : '',
        main && echo ? cpuRatio(l, echo) : '',
      );
    }
    if (hasOff) row.push(main && off ? ratio(l.inferPerSecond, off.inferPerSecond) : '');
    if (hasCache) row.push(s && s.cacheHits + s.cacheMisses > 0 ? `${num(100 * cacheHitRate(s), 1)} %` : '');
    const cacheOff = levels.find((x) => x.series === CACHE_OFF_SERIES && sameRun(x, l));
    if (hasCacheOff) row.push(main && cacheOff ? ratio(l.inferPerSecond, cacheOff.inferPerSecond) : '');
    if (hasRaw) {
      const r = rawOrtFor(l, o.rawOrt, o.maxBatchSize);
      const server = l.series !== ECHO_SERIES && (o.rawOrtModel === undefined || l.model === o.rawOrtModel);
      // A closed loop of c clients can form batches up to c·b; an open loop's batches have no such bound.
      row.push(server && l.mode === 'concurrency' ? `${percent(l.inferPerSecond, r.at)} (${num(r.batch)})` : '', server ? percent(l.inferPerSecond, r.best) : '');
    }
    return row;
  });
  return { headers, rows };
}

/**
 * With rounds (`--rounds N`), one line per load of the server: each ratio to
 * grpc-echo by round, and its median. A shared machine drifts between
 * series; the rounds put the drift on both sides.
 */
export function roundMedians(levels: readonly LevelResult[]): string[] {
  const lines: string[] = [];
  const served = levels.filter((l) => l.series === SERVER_SERIES && l.round !== undefined);
  const loads = served.filter((l, i) => served.findIndex((x) => sameLoad(x, l)) === i);
  for (const load of loads) {
    const pairs = served
      .filter((l) => sameLoad(l, load))
      .map((l) => ({ l, echo: levels.find((x) => x.series === ECHO_SERIES && sameRun(x, l)) }))
      .filter((p): p is { l: LevelResult; echo: LevelResult } => p.echo !== undefined);
    if (pairs.length === 0) continue;
    const cpu = pairs.map((p) => (p.l.serverCpuUsPerRequest ?? NaN) / (p.echo.serverCpuUsPerRequest ?? NaN));
    const added = pairs.map((p) => p.l.latency.p50Us - p.echo.latency.p50Us);
    const share = pairs.map((p) => p.l.inferPerSecond / p.echo.inferPerSecond);
    const list = (xs: number[], f: (x: number) => string): string => `${xs.map(f).join(', ')} (median ${f(finiteMedian(xs))})`;
    lines.push(
      `${load.model} ${loadLabel(load)}, ${pairs.length} rounds against grpc-echo: CPU/req × ${list(cpu, (x) => ratio(x, 1))}; p50 added µs ${list(added, (x) => num(x))}; infer/s ${list(share, (x) => percent(x, 1))}`,
    );
  }
  return lines;
}

/** The median of the finite values (a CPU ratio is NaN where a server's CPU was not metered); NaN when none is. */
function finiteMedian(xs: readonly number[]): number {
  const finite = xs.filter(Number.isFinite);
  return finite.length === 0 ? NaN : medianOf(finite, finite.length, new Float64Array(finite.length));
}

/** Raw ORT's own table. */
export function rawOrtTable(raw: readonly RawOrtLevel[]): { headers: string[]; rows: string[][] } {
  const base = raw.find((r) => r.batchSize === 1)?.rowsPerSecond ?? raw[0]?.rowsPerSecond ?? NaN;
  return {
    headers: ['batch', 'runs/s', 'infer/s (rows)', 'p50 ms', 'p99 ms', '× smallest batch', 'CPU ORT+other', 'stable'],
    rows: raw.map((r) => [
      String(r.batchSize),
      num(r.runsPerSecond),
      num(r.rowsPerSecond),
      ms(r.latency.p50Us),
      ms(r.latency.p99Us),
      ratio(r.rowsPerSecond, base),
      `${num(r.cpu.client, 2)}+${num(r.cpu.other, 2)}`,
      r.windows <= 1 ? '–' : r.stable ? 'yes' : `no (${r.windows})`,
    ]),
  };
}
