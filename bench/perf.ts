// `fabriek bench -m MODEL …`: perf_analyzer's measurement against one
// server (the address given, or one it starts on --model-repository), with
// the baselines asked for measured in the same run.
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InferenceGrpcClient } from '../client/grpc-client.js';
import { createClient } from '../client/index.js';
import { type InferenceClient } from '../client/inference-client.js';
import { withBatchingOff } from './baselines/batching-off.js';
import { withCacheOff } from './baselines/cache-off.js';
import { spawnEchoServer } from './baselines/grpc-echo.js';
import { type RawOrtLevel, type RawOrtProvider, rawOrtBaseline } from './baselines/raw-ort.js';
import { type RunRecord, describeRun, runInfo, saveRun } from './history.js';
import { type ChildServer, disturbedNote, httpUrlOf, startGateway } from './load/child-server.js';
import { H2GrpcInfer } from './load/h2-grpc-infer.js';
import { HOT_SETS, type InputDataSource, type InputPlan, planInputs } from './load/input-data.js';
import { type LevelResult, type LoadLevel, inferSender, runLevel } from './load/level.js';
import { cacheHitRate, readModelStats } from './load/server-stats.js';
import { type StabilityRule } from './load/stability.js';
import { type WindowOptions } from './load/windows.js';
import { BenchError } from './bench-errors.js';
import { toCsv } from './report/csv.js';
import { mdTable, textTable } from './report/format.js';
import { CACHE_OFF_SERIES, ECHO_SERIES, OFF_SERIES, SERVER_SERIES, levelTable, loadLabel, rawOrtTable, roundMedians } from './report/levels-table.js';
import { Progress } from './report/progress.js';
import { throughputLatencySvg } from './report/svg-chart.js';

export type Baseline = 'raw-ort' | 'grpc-echo' | 'batching-off' | 'cache-off';
export const LOAD_CLIENTS = ['h2', 'grpc-js'] as const;
export type LoadClient = (typeof LOAD_CLIENTS)[number];

export interface PerfOptions {
  readonly model: string;
  readonly version: string;
  /** The server to measure; absent with modelRepository: start one. */
  readonly url?: string;
  readonly protocol: 'grpc' | 'http';
  /** Sent with every request as gRPC metadata or HTTP headers (perf_analyzer's -H), e.g. authorization. */
  readonly headers: Readonly<Record<string, string>>;
  readonly modelRepository?: string;
  /** The ONNX file for --baseline raw-ort (default: <repository>/<model>/<latest version>/model.onnx). */
  readonly modelFile?: string;
  /** Extra `fabriek serve` flags for the server the bench starts (--cache-config). */
  readonly serveArgs?: readonly string[];
  readonly levels: readonly LoadLevel[];
  readonly batchSize: number;
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  readonly inputData: InputDataSource;
  readonly stringLength: number;
  readonly intervalMs: number;
  readonly requestCount?: number;
  readonly maxTrials: number;
  /** Times the baselines and the server are measured in turn (raw ORT once); ratios compare rows of one round. */
  readonly rounds: number;
  readonly stability: StabilityRule;
  readonly percentile?: number;
  readonly sloMs?: number;
  readonly maxOutstanding: number;
  /** A stateful model: sequences of this many requests per closed-loop client (0 or absent: none). */
  readonly sequenceLength?: number;
  readonly warmupMs: number;
  readonly timeoutMs: number;
  /** gRPC load through frames written on node:http2 (h2), or through grpc-js. */
  readonly loadClient: LoadClient;
  readonly seed: number;
  /** --cache-hit-ratio: the share of requests that repeat a hot input. */
  readonly cacheHitRatio?: number;
  readonly baselines: ReadonlySet<Baseline>;
  /** --raw-ort-provider (default cpu). */
  readonly rawOrtProvider?: RawOrtProvider;
  readonly csvFile?: string;
  readonly jsonFile?: string;
  readonly svgFile?: string;
  readonly resultsDir?: string;
  readonly save: boolean;
}

export interface PerfOutcome {
  readonly record: RunRecord;
  readonly text: string;
  readonly files: readonly string[];
  /** False when any request failed. */
  readonly ok: boolean;
}

/** <repository>/<model>/<version or the highest numeric one>/model.onnx, if it exists. */
export function modelFileIn(repository: string, model: string, version: string): string | undefined {
  const dir = join(repository, model);
  if (!existsSync(dir)) return undefined;
  const versions = version ? [version] : readdirSync(dir).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const path = join(dir, v, 'model.onnx');
    if (existsSync(path)) return path;
  }
  return undefined;
}

/** Raw ORT batch sizes: -b, and the batch each closed-loop level could form (c·b, capped at max_batch_size). */
export function rawBatchSizes(levels: readonly LoadLevel[], batchSize: number, maxBatchSize: number): number[] {
  const cap = maxBatchSize > 0 ? maxBatchSize : batchSize;
  const sizes = new Set([batchSize, ...levels.filter((l) => l.mode === 'concurrency').map((l) => Math.min(l.value * batchSize, cap))]);
  if (levels.some((l) => l.mode === 'request-rate')) sizes.add(cap);
  return [...sizes].sort((a, b) => a - b);
}

export async function runPerf(o: PerfOptions, log: (line: string) => void): Promise<PerfOutcome> {
  const info = runInfo();
  const progress = new Progress();
  const notes: string[] = [];
  let own: ChildServer | undefined;
  let url = o.url;
  if (url === undefined && o.modelRepository !== undefined) {
    log(`starting fabriek serve on ${o.modelRepository}…`);
    own = await startGateway(o.modelRepository, o.serveArgs ?? []);
    url = o.protocol === 'http' ? httpUrlOf(own) : own.address;
  }
  url ??= o.protocol === 'http' ? 'http://localhost:8000' : 'localhost:8001';
  const clientOptions = { metadata: o.headers, headers: o.headers };
  const client = createClient(url, o.protocol, clientOptions);
  // Statistics and repository calls on their own connection, apart from the load.
  const control = createClient(url, o.protocol, clientOptions);
  const levels: LevelResult[] = [];
  let raw: RawOrtLevel[] | undefined;
  let maxBatchSize = 0;
  try {
    if (!(await client.isModelReady(o.model, o.version, { timeoutMs: 10_000 }))) {
      // The server says why when it does not know the model (NOT_FOUND, printed as its refusal).
      await client.getModelMetadata(o.model, o.version, { timeoutMs: 10_000 });
      throw new BenchError(`model '${o.model}' is in the repository at ${client.address} but not ready (still loading, or its load failed: see the server's log)`);
    }
    const md = await client.getModelMetadata(o.model, o.version, { timeoutMs: 10_000 });
    const config = await client.getModelConfig(o.model, o.version, { timeoutMs: 10_000 });
    maxBatchSize = config.maxBatchSize;
    const plan = planInputs(md, maxBatchSize, {
      batchSize: o.batchSize,
      shapes: o.shapes,
      data: o.inputData,
      stringLength: o.stringLength,
      ...(o.cacheHitRatio !== undefined ? { cacheHitRatio: o.cacheHitRatio } : {}),
    });
    log(`${o.model}: ${md.inputs.map((t) => `${t.name} ${t.datatype} [${(plan.shapes[t.name] ?? []).join(',')}]`).join(', ')}; max_batch_size ${maxBatchSize}${config.dynamicBatching ? ', dynamic batching' : ''}; ${o.cacheHitRatio !== undefined ? `cache hit ratio ${o.cacheHitRatio}: ${HOT_SETS} hot inputs, the rest never repeated` : `${plan.sets.length} distinct input set(s)`}`);
    const windows: WindowOptions = {
      intervalMs: o.intervalMs,
      ...(o.requestCount !== undefined ? { requestCount: o.requestCount } : {}),
      maxTrials: o.maxTrials,
      stability: o.stability,
      ...(o.percentile !== undefined ? { percentile: o.percentile } : {}),
      ...(o.sloMs !== undefined ? { sloUs: o.sloMs * 1000 } : {}),
    };
    const measureAll = async (series: string, c: InferenceClient, pid: number | undefined, stats: InferenceClient | undefined): Promise<void> => {
      const h2 = c.protocol === 'grpc' && o.loadClient === 'h2' ? new H2GrpcInfer(c.address, o.headers) : undefined;
      try {
        await measureLevels(series, c, pid, stats, h2);
      } finally {
        h2?.close();
      }
    };
    // With --rounds above 1, every row says its round and a label says it too.
    let round: number | undefined;
    const measureLevels = async (series: string, c: InferenceClient, pid: number | undefined, stats: InferenceClient | undefined, h2: H2GrpcInfer | undefined): Promise<void> => {
      for (const level of o.levels) {
        const label = `${series} ${loadLabel(level)}${round === undefined ? '' : ` (round ${round})`}`;
        const result = await runLevel(level, {
          series,
          model: o.model,
          protocol: c.protocol,
          batchSize: o.batchSize,
          send: inferSender(c, o.model, plan, { timeoutMs: o.timeoutMs, version: o.version, ...(h2 ? { prepared: h2 } : {}), ...(o.sequenceLength ? { sequenceLength: o.sequenceLength } : {}) }),
          warmupMs: o.warmupMs,
          windows,
          ...(stats ? { stats: () => readModelStats(stats, o.model) } : {}),
          ...(pid !== undefined ? { serverPid: pid } : {}),
          seed: o.seed,
          maxOutstanding: o.maxOutstanding,
          onWindow: (t, w, stable) => progress.window(label, t, o.maxTrials, w, stable),
        });
        levels.push(round === undefined ? result : { ...result, round });
        progress.line(summaryLine(label, result));
      }
    };

    if (o.baselines.has('raw-ort')) {
      const file = o.modelFile ?? (o.modelRepository !== undefined ? modelFileIn(o.modelRepository, o.model, o.version) : undefined);
      if (file === undefined) notes.push('raw-ort baseline skipped: give --model-file or --model-repository so the bench can find the ONNX file.');
      else raw = await measureRawOrt(file, md, maxBatchSize, plan, o, log);
    }
    // grpc-echo runs the whole time, so its rounds alternate with the server's.
    let echo: ChildServer | undefined;
    let echoClient: InferenceGrpcClient | undefined;
    if (o.baselines.has('grpc-echo') && o.protocol !== 'grpc') notes.push('grpc-echo baseline skipped: it speaks gRPC only; use -i grpc.');
    try {
      if (o.baselines.has('grpc-echo') && o.protocol === 'grpc') {
        echo = await spawnEchoServer();
        echoClient = new InferenceGrpcClient(echo.address);
      }
      for (let r = 1; r <= o.rounds; r++) {
        round = o.rounds > 1 ? r : undefined;
        if (echo && echoClient) {
          log(`grpc-echo baseline${round === undefined ? '' : `, round ${round}`}…`);
          await measureAll(ECHO_SERIES, echoClient, echo.pid, undefined);
        }
        log(`${SERVER_SERIES} at ${client.address} (${o.protocol})…`);
        await measureAll(SERVER_SERIES, client, own?.pid, control);
        if (o.baselines.has('batching-off')) {
          log('the same server with batching off (config override through the repository API)…');
          const done = await withBatchingOff(control, o.model, async () => {
            await measureAll(OFF_SERIES, client, own?.pid, control);
            return true;
          });
          if (done === undefined && r === 1) notes.push(`batching-off baseline skipped: '${o.model}' has no dynamic_batching.`);
        }
        if (o.baselines.has('cache-off')) {
          log('the same model with its response cache off (config override through the repository API)…');
          const done = await withCacheOff(control, o.model, async () => {
            await measureAll(CACHE_OFF_SERIES, client, own?.pid, control);
            return true;
          });
          if (done === undefined && r === 1) notes.push(`cache-off baseline skipped: '${o.model}' has no response_cache { enable: true }.`);
        }
      }
    } finally {
      echoClient?.close();
      await echo?.stop();
    }
  } finally {
    client.close();
    control.close();
    if (own) await own.stop();
  }

  const record: RunRecord = {
    format: 'fabriek-bench/1',
    kind: 'perf',
    info,
    options: { ...o, shapes: Object.fromEntries(o.shapes), baselines: [...o.baselines], url: url },
    levels,
    ...(raw ? { rawOrt: [{ model: o.model, levels: raw }] } : {}),
    notes,
  };
  const tableOptions = { ...(o.percentile !== undefined ? { percentile: o.percentile } : {}), ...(o.sloMs !== undefined ? { sloMs: o.sloMs } : {}), ...(raw ? { rawOrt: raw } : {}), maxBatchSize };
  const table = levelTable(levels, tableOptions);
  const medians = roundMedians(levels);
  const rawTable = raw ? rawOrtTable(raw) : undefined;
  const text = [
    describeRun(info),
    '',
    textTable(table.headers, table.rows, 4),
    ...medians,
    ...(rawTable ? [`raw ONNX Runtime, in-process (${o.rawOrtProvider ?? 'cpu'}):`, textTable(rawTable.headers, rawTable.rows, 1)] : []),
    ...notes,
  ].join('\n');
  const markdown = [
    `# fabriek bench: ${o.model}`,
    '',
    describeRun(info),
    '',
    `${o.protocol} to ${url}; ${o.levels.map(loadLabel).join(', ')}; -b ${o.batchSize}; ${o.intervalMs} ms windows, stable within ±${o.stability.stabilityPercent} % over ${o.stability.windows}, at most ${o.maxTrials} trials${o.rounds > 1 ? `; ${o.rounds} rounds, the baselines and the server in turn` : ''}.`,
    '',
    mdTable(table.headers, table.rows, 4),
    ...(medians.length > 0 ? ['', ...medians.map((m) => `- ${m}`)] : []),
    ...(rawTable ? [`Raw ONNX Runtime, in-process (one session on ${o.rawOrtProvider ?? 'cpu'}, intra-op threads = cores, no spinning):`, '', mdTable(rawTable.headers, rawTable.rows, 1)] : []),
    ...notes.map((n) => `- ${n}`),
    '',
  ].join('\n');
  const modes = new Set(levels.map((l) => l.mode));
  const csv = toCsv(levels, modes.has('concurrency') ? 'concurrency' : 'request-rate');
  const svg = chartOf(levels, `${o.model}: throughput against p99 latency`);
  const files: string[] = [];
  if (o.csvFile !== undefined) {
    writeFileSync(o.csvFile, toCsv(levels.filter((l) => l.series === SERVER_SERIES), modes.has('concurrency') ? 'concurrency' : 'request-rate'));
    files.push(o.csvFile);
  }
  if (o.jsonFile !== undefined) {
    writeFileSync(o.jsonFile, JSON.stringify(record, null, 2) + '\n');
    files.push(o.jsonFile);
  }
  if (o.svgFile !== undefined) {
    writeFileSync(o.svgFile, svg);
    files.push(o.svgFile);
  }
  if (o.save) files.push(...saveRun(record, { markdown, csv, svg }, { ...(o.resultsDir !== undefined ? { dir: o.resultsDir } : {}), name: `perf-${o.model}` }));
  const ok = levels.every((l) => l.errorCount === 0 && l.requests > 0);
  return { record, text, files, ok };
}

export function summaryLine(label: string, r: LevelResult): string {
  const errors = r.errorCount > 0 ? `, ${r.errorCount} errors (${Object.keys(r.errors).join(', ')})` : '';
  const cpu = disturbedNote(r.cpu);
  const perRequest = r.serverCpuUsPerRequest !== undefined ? `, server CPU ${r.serverCpuUsPerRequest.toFixed(0)} µs/req` : '';
  return `  ${label}: ${r.inferPerSecond.toFixed(0)} infer/s, p50 ${(r.latency.p50Us / 1000).toFixed(2)} ms, p99 ${(r.latency.p99Us / 1000).toFixed(2)} ms${r.server ? `, avg batch ${r.server.avgBatchSize.toFixed(1)}` : ''}${perRequest}${r.server && r.server.cacheHits + r.server.cacheMisses > 0 ? `, cache hits ${(100 * cacheHitRate(r.server)).toFixed(1)} %` : ''}${errors}${r.stable ? '' : `, not stable after ${r.trials} windows`}${cpu}`;
}

export function chartOf(levels: readonly LevelResult[], title: string): string {
  const names = [...new Set(levels.map((l) => `${l.series} ${l.model}`))];
  return throughputLatencySvg(
    names.map((name) => ({
      name,
      points: levels.filter((l) => `${l.series} ${l.model}` === name).map((l) => ({ x: l.inferPerSecond, y: l.latency.p99Us / 1000, label: loadLabel(l) })),
    })),
    title,
  );
}

async function measureRawOrt(file: string, md: Parameters<typeof planInputs>[0], maxBatchSize: number, plan: InputPlan, o: PerfOptions, log: (line: string) => void): Promise<RawOrtLevel[]> {
  const sizes = maxBatchSize > 0 ? rawBatchSizes(o.levels, o.batchSize, maxBatchSize) : [1];
  const provider = o.rawOrtProvider ?? 'cpu';
  log(`raw ONNX Runtime in-process on ${file} (${provider}), batch ${sizes.join('/')}…`);
  const inputsAt = (b: number): InferInputs => (b === plan.batchSize ? (plan.sets[0] ?? []) : (planInputs(md, maxBatchSize, { batchSize: b, shapes: o.shapes, data: o.inputData, stringLength: o.stringLength, poolSize: 1 }).sets[0] ?? []));
  const raw = await rawOrtBaseline({ modelPath: file, inputs: inputsAt, batchSizes: sizes, durationMs: o.intervalMs, maxTrials: o.maxTrials, stability: o.stability, provider });
  for (const r of raw) log(`  batch ${r.batchSize}: ${r.rowsPerSecond.toFixed(0)} infer/s, p50 ${(r.latency.p50Us / 1000).toFixed(2)} ms`);
  return raw;
}

type InferInputs = InputPlan['sets'][number];
