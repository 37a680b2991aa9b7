// `fabriek bench scaling` (issue #12): identity_fp32's throughput with 1, 2,
// 4, 8 gateway processes, loaded by clients in processes of their own, and
// the server's CPU per request and the rows per ONNX Runtime run for each.
// The question it answers: does the gateway use every core it is given, and
// do the worker's merged runs keep batches whole across the processes?
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as hdr from 'hdr-histogram-js';
import { buildModels } from '../../models/build/test-models.js';
import { machineBusySeconds, treeCpuSeconds } from '../../core/process-cpu.js';
import { usableCores } from '../../gateway/cluster/gateway-processes.js';
import { parseExposition } from '../../gateway/top/exposition.js';
import { describeRun, runInfo, saveRun } from '../history.js';
import { type ChildServer, removeAtExit, startGateway } from '../load/child-server.js';
import { mergeHistograms, summarize, type LatencySummary } from '../load/histogram.js';
import { type LoadProcessPlan, type LoadProcessResult } from '../load/load-process.js';
import { number, parsed, splitServeFlags } from '../options.js';
import { UsageError } from '../bench-errors.js';

const MODEL = 'identity_fp32';
const LOAD_PROCESS = fileURLToPath(new URL('../load/load-process-main.js', import.meta.url));

export const SCALING_USAGE = `Usage: fabriek bench scaling [options] [-- SERVE_FLAGS…]

Starts \`fabriek serve --gateway-processes N\` for each N on a fresh repository holding
${MODEL} (CPU workers only: --gpus ''), loads it from client processes of their own
(closed loop, each on its own HTTP/2 connections, every answer checked), and reports
req/s, its ratio to N = 1 and to N (the goal is ≥ 0.8 × N), the server's CPU per
request (its whole process tree, from /proc) and the rows per ONNX Runtime run.
  --processes LIST         gateway process counts (default 1,2,4,8, those ≤ the usable cores, and 1,2 at least)
  --client-processes K     load processes (default max(2, cores / 4))
  --connections C          HTTP/2 connections per load process (default 4)
  --concurrency Q          calls in flight per connection (default 8)
  --workers M              local worker processes (default 1)
  --duration S             measured window per N (default 8)
  --warmup S               load before the window (default 2)
  --results-dir DIR        history folder (default bench/results); --no-save to skip it
`;

export interface ScalingOptions {
  readonly processes: readonly number[];
  readonly clientProcesses: number;
  readonly connections: number;
  readonly concurrency: number;
  readonly workers: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly serveArgs: readonly string[];
  readonly log: (line: string) => void;
}

export interface ScalingLevel {
  readonly gatewayProcesses: number;
  readonly answered: number;
  readonly failed: number;
  readonly wrong: number;
  readonly firstError: string;
  readonly perSecond: number;
  readonly latency: LatencySummary;
  /** Server process tree CPU per answer, µs. */
  readonly serverCpuUsPerRequest: number;
  /** Cores the server tree, the load processes and everything else kept busy. */
  readonly serverCores: number;
  readonly clientCores: number;
  readonly otherCores: number;
  /** Requests per gateway execution and per ONNX Runtime run in the worker (NaN where not reported). */
  readonly rowsPerExecution: number;
  readonly rowsPerRun: number;
}

function positiveList(flag: string, raw: string): number[] {
  const values = raw.split(',').map((v) => (/^\d+$/.test(v.trim()) ? Number(v) : NaN));
  if (values.some((v) => !Number.isInteger(v) || v < 1 || v > 64)) throw new UsageError(`--${flag}: expected integers from 1 to 64, got '${raw}'`);
  return values;
}

const positive = (flag: string, raw: string | undefined, fallback: number, max: number): number =>
  raw === undefined ? fallback : number(flag, raw, { min: 1, max, integer: true });

const seconds = (flag: string, raw: string | undefined, fallback: number): number => 1000 * (raw === undefined ? fallback : number(flag, raw, { min: 0.001, max: 600 }));

/** The command line, parsed; undefined for --help. Pure, so it is unit-tested. */
export function parseScalingArgs(argv: readonly string[], cores: number): Omit<ScalingOptions, 'log'> & { resultsDir?: string; save: boolean } | undefined {
  const { own, serveFlags: serveArgs } = splitServeFlags(argv);
  const { values } = parsed(() =>
    parseArgs({
      args: own,
      options: {
        processes: { type: 'string' },
        'client-processes': { type: 'string' },
        connections: { type: 'string' },
        concurrency: { type: 'string' },
        workers: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        'results-dir': { type: 'string' },
        'no-save': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (values.help) return undefined;
  const fitting = [1, 2, 4, 8].filter((n) => n <= 2 || n <= cores);
  return {
    processes: values.processes === undefined ? fitting : positiveList('processes', values.processes),
    clientProcesses: positive('client-processes', values['client-processes'], Math.max(2, Math.floor(cores / 4)), 64),
    connections: positive('connections', values.connections, 4, 256),
    concurrency: positive('concurrency', values.concurrency, 8, 1024),
    workers: positive('workers', values.workers, 1, 64),
    durationMs: seconds('duration', values.duration, 8),
    warmupMs: seconds('warmup', values.warmup, 2),
    serveArgs,
    save: !values['no-save'],
    ...(values['results-dir'] !== undefined ? { resultsDir: values['results-dir'] } : {}),
  };
}

/** Sums of the counters a scaling level reads from /metrics. */
interface Counters {
  readonly inferences: number;
  readonly executions: number;
  readonly workerRuns: number;
}

async function scrape(url: string | undefined): Promise<Counters> {
  const none = { inferences: NaN, executions: NaN, workerRuns: NaN };
  if (url === undefined) return none;
  try {
    const samples = parseExposition(await (await fetch(url, { signal: AbortSignal.timeout(10_000) })).text());
    const sum = (name: string): number => {
      const matching = samples.filter((s) => s.name === name && (s.labels.model === undefined || s.labels.model === MODEL));
      return matching.length === 0 ? NaN : matching.reduce((n, s) => n + s.value, 0);
    };
    return { inferences: sum('nv_inference_count'), executions: sum('nv_inference_exec_count'), workerRuns: sum('fabriek_worker_runs_total') };
  } catch {
    return none;
  }
}

const metricsUrlOf = (server: ChildServer): string | undefined => {
  const port = / metrics on [^ ;]+:(\d+)/.exec(server.readyLine)?.[1];
  return port === undefined ? undefined : `http://127.0.0.1:${port}/metrics`;
};

function startLoadProcess(plan: LoadProcessPlan): { child: ChildProcess; result: Promise<LoadProcessResult> } {
  const child = spawn(process.execPath, [LOAD_PROCESS, JSON.stringify(plan)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4096)));
  const result = new Promise<LoadProcessResult>((resolve, reject) =>
    child.once('exit', (code) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      if (code === 0 && line.startsWith('{')) resolve(JSON.parse(line) as LoadProcessResult);
      else reject(new Error(`load process exited with ${code}: ${stderr || stdout}`));
    }),
  );
  return { child, result };
}

async function measureLevel(repository: string, n: number, o: ScalingOptions): Promise<ScalingLevel> {
  const server = await startGateway(repository, ['--gateway-processes', String(n), '--gpus', '', '--workers', String(o.workers), ...o.serveArgs]);
  const children: ChildProcess[] = [];
  try {
    const metrics = metricsUrlOf(server);
    // The load processes start together and warm up until the window, which they all share.
    const windowStartMs = Date.now() + 1_000 + o.warmupMs;
    const plan = { address: server.address, model: MODEL, connections: o.connections, concurrency: o.concurrency, windowStartMs, windowMs: o.durationMs, deadlineMs: 30_000 };
    const loads = Array.from({ length: o.clientProcesses }, () => startLoadProcess(plan));
    children.push(...loads.map((l) => l.child));
    const settled = Promise.allSettled(loads.map((l) => l.result));
    await new Promise((r) => setTimeout(r, windowStartMs - Date.now()));
    const before = { server: treeCpuSeconds(server.pid), machine: machineBusySeconds(), counters: await scrape(metrics) };
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, windowStartMs + o.durationMs - Date.now()));
    const windowSeconds = (performance.now() - t0) / 1000;
    const after = { server: treeCpuSeconds(server.pid), machine: machineBusySeconds() };
    const outcomes = await settled;
    const counters = { before: before.counters, after: await scrape(metrics) };
    const failures = outcomes.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failures.length > 0) throw new Error(`${failures.length} load process(es) failed: ${String(failures[0]?.reason)}`);
    const results = outcomes.map((r) => (r as PromiseFulfilledResult<LoadProcessResult>).value);
    const answered = results.reduce((s, r) => s + r.answered, 0);
    const clientCpu = results.reduce((s, r) => s + r.cpuSeconds, 0);
    const serverCpu = after.server - before.server;
    const machine = after.machine - before.machine;
    const histogram = mergeHistograms(results.map((r) => hdr.decodeFromCompressedBase64(r.histogram)));
    const rows = counters.after.inferences - counters.before.inferences;
    return {
      gatewayProcesses: n,
      answered,
      failed: results.reduce((s, r) => s + r.failed, 0),
      wrong: results.reduce((s, r) => s + r.wrong, 0),
      firstError: results.find((r) => r.firstError !== '')?.firstError ?? '',
      perSecond: answered / (o.durationMs / 1000),
      latency: summarize(histogram),
      serverCpuUsPerRequest: (serverCpu / answered) * 1e6,
      serverCores: serverCpu / windowSeconds,
      clientCores: clientCpu / windowSeconds,
      otherCores: Math.max(0, (machine - serverCpu - clientCpu) / windowSeconds),
      rowsPerExecution: rows / (counters.after.executions - counters.before.executions),
      rowsPerRun: rows / (counters.after.workerRuns - counters.before.workerRuns),
    };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await server.stop();
  }
}

const fixed = (v: number, digits: number): string => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');

export function scalingMarkdown(levels: readonly ScalingLevel[], o: Omit<ScalingOptions, 'log'>, cores: number): string {
  const base = levels.find((l) => l.gatewayProcesses === 1)?.perSecond ?? NaN;
  const rows = levels.map((l) => {
    const ratio = l.perSecond / base;
    // Without N = 1 in the run there is nothing to divide by.
    const times = Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : '–';
    return `| ${l.gatewayProcesses} | ${Math.round(l.perSecond)} | ${times} | ${Number.isFinite(ratio) ? fixed(ratio / l.gatewayProcesses, 2) : '–'} | ${Math.round(l.serverCpuUsPerRequest)} | ${fixed(l.latency.p50Us / 1000, 2)} / ${fixed(l.latency.p99Us / 1000, 2)} | ${fixed(l.serverCores, 1)} / ${fixed(l.clientCores, 1)} / ${fixed(l.otherCores, 1)} | ${fixed(l.rowsPerExecution, 1)} / ${fixed(l.rowsPerRun, 1)} | ${l.failed + l.wrong} |`;
  });
  const problems = levels.filter((l) => l.failed + l.wrong > 0).map((l) => `- N = ${l.gatewayProcesses}: ${l.failed} failed, ${l.wrong} wrong; first error: ${l.firstError}`);
  return [
    `${MODEL}, ${o.clientProcesses} load processes × ${o.connections} connections × ${o.concurrency} calls in flight (${o.clientProcesses * o.connections * o.concurrency} in all), ${o.workers} CPU worker process(es), ${o.durationMs / 1000} s window after ${o.warmupMs / 1000} s of warm-up; ${cores} usable cores.`,
    '',
    '| gateway processes N | req/s | vs N = 1 | per process (goal ≥ 0.8) | server CPU µs/req | p50 / p99 ms | cores: server / clients / other | rows per gateway execution / per ORT run | errors |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    ...(problems.length > 0 ? ['', ...problems] : []),
    '',
  ].join('\n');
}

export async function runScaling(o: ScalingOptions): Promise<ScalingLevel[]> {
  const repository = await mkdtemp(join(tmpdir(), 'fabriek-bench-scaling-'));
  removeAtExit(repository);
  await buildModels(repository, [MODEL]);
  const levels: ScalingLevel[] = [];
  for (const n of o.processes) {
    o.log(`${n} gateway process(es)…`);
    const level = await measureLevel(repository, n, o);
    o.log(`  ${Math.round(level.perSecond)} req/s, ${Math.round(level.serverCpuUsPerRequest)} µs server CPU/req, server ${fixed(level.serverCores, 1)} cores, clients ${fixed(level.clientCores, 1)}`);
    levels.push(level);
  }
  return levels;
}

export async function scalingCommand(argv: readonly string[], log: (line: string) => void, watchdog: (ms: number) => void): Promise<number> {
  const cores = usableCores();
  const o = parseScalingArgs(argv, cores);
  if (o === undefined) {
    process.stdout.write(SCALING_USAGE);
    return 0;
  }
  watchdog(o.processes.length * (o.durationMs + o.warmupMs + 120_000) + 120_000);
  const info = runInfo();
  log(describeRun(info));
  const levels = await runScaling({ ...o, log });
  const markdown = `# Gateway processes: scaling over the cores (issue #12)\n\n${describeRun(info)}\n\n${scalingMarkdown(levels, o, cores)}`;
  process.stdout.write(markdown);
  if (o.save) {
    const record = { format: 'fabriek-bench/1' as const, kind: 'scaling', info, options: {}, levels: [], scenario: { options: { ...o, serveArgs: [...o.serveArgs] }, levels } };
    const saved = saveRun(record, { markdown }, { ...(o.resultsDir !== undefined ? { dir: o.resultsDir } : {}), name: 'scaling', latest: 'latest-scaling' });
    log(`saved ${saved.join(', ')}`);
  }
  return levels.every((l) => l.failed + l.wrong === 0 && l.answered > 0) ? 0 : 1;
}
