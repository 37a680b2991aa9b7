// `fabriek bench profile`: where a request's CPU goes in the server (issue
// #12). Starts `fabriek serve` with V8's sampling profiler in every process
// and thread (`node --cpu-prof`: the workers the gateway forks inherit it),
// loads it with a closed loop of ModelInfer calls (gRPC, or HTTP's binary
// tensor extension: the path of the Ray Serve comparison), stops it
// so that each process writes its profile, and charges the samples taken
// during the measured load to the stages of the request path
// (cpu-profile.ts), per request. The profiler itself costs CPU: compare the
// busy total with the process tree's CPU from /proc, printed beside it.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createClient } from '../../client/index.js';
import { type PreparedInfer } from '../../client/inference-client.js';
import { treeCpuSeconds } from '../../core/process-cpu.js';
import { httpUrlOf, startGateway } from '../load/child-server.js';
import { closedLoop } from '../load/closed-loop.js';
import { H2GrpcInfer } from '../load/h2-grpc-infer.js';
import { parseShapeFlag, planInputs } from '../load/input-data.js';
import { parsed, splitServeFlags } from '../options.js';
import { UsageError } from '../bench-errors.js';
import { mdTable } from '../report/format.js';
import { type CpuProfile, STAGES, type StageTimes, addStageTimes, profileFileInfo, stageTimes } from './cpu-profile.js';

export const PROFILE_USAGE = `Usage: fabriek bench profile -m MODEL --model-repository DIR [options] [-- SERVE FLAGS]

Where a request's CPU goes in the server: starts 'fabriek serve' with V8's CPU profiler in
the gateway and every worker (node --cpu-prof), sends ModelInfer calls (zeros, batch 1)
from a closed loop, and charges the CPU sampled during the measured load to the stages of
the request path: µs per request, per process.
  -m, --model NAME          the model to call (required)
  --model-repository DIR    the repository the server loads (required)
  -i, --protocol grpc|http  gRPC, or HTTP with the binary tensor extension (default grpc)
  -c, --concurrency N       calls in flight (default 16)
  --duration S              seconds of measured load, after 2 s of warm-up (default 10)
  --shape NAME:D1,D2        dims of a variable-size input (without the batch dim); repeatable
  --profile-dir DIR         keep the .cpuprofile files there (default: a temp dir, removed)
  -- FLAGS                  more 'fabriek serve' flags, e.g. -- --local-workers in-process
`;

const WARMUP_MS = 2_000;

export interface ProfileOptions {
  readonly model: string;
  readonly repository: string;
  readonly concurrency: number;
  readonly durationMs: number;
  readonly protocol: 'grpc' | 'http';
  /** --shape: dims of variable-size inputs (without the batch dim). */
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  readonly profileDir?: string;
  readonly serveFlags: readonly string[];
}

/** One process's part: its role and its threads' stage times over the measured load. */
export interface ProcessPart {
  readonly pid: number;
  readonly role: 'gateway' | 'worker';
  readonly threads: number;
  readonly times: StageTimes;
}

export interface ProfileResult {
  readonly requests: number;
  readonly errors: number;
  readonly seconds: number;
  /** The server's process tree's CPU during the measured load (/proc), µs per request. */
  readonly treeUsPerRequest: number;
  readonly parts: readonly ProcessPart[];
}

export function parseProfileArgs(argv: readonly string[]): ProfileOptions | { help: true } {
  const { own, serveFlags } = splitServeFlags(argv);
  const { values } = parsed(() =>
    parseArgs({
      args: [...own],
      options: {
        model: { type: 'string', short: 'm' },
        'model-repository': { type: 'string' },
        concurrency: { type: 'string', short: 'c', default: '16' },
        protocol: { type: 'string', short: 'i', default: 'grpc' },
        duration: { type: 'string', default: '10' },
        shape: { type: 'string', multiple: true },
        'profile-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (values.help) return { help: true };
  if (values.model === undefined) throw new UsageError('profile: -m MODEL is required');
  if (values['model-repository'] === undefined) throw new UsageError('profile: --model-repository DIR is required');
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1024) throw new UsageError(`--concurrency: expected an integer from 1 to 1024, got '${values.concurrency}'`);
  const protocol = values.protocol;
  if (protocol !== 'grpc' && protocol !== 'http') throw new UsageError(`-i/--protocol: expected grpc or http, got '${protocol}'`);
  const seconds = Number(values.duration);
  if (!(seconds >= 1 && seconds <= 600)) throw new UsageError(`--duration: expected 1 to 600 seconds, got '${values.duration}'`);
  return {
    model: values.model,
    repository: resolve(values['model-repository']),
    concurrency,
    durationMs: seconds * 1_000,
    protocol,
    shapes: parsed(() => new Map((values.shape ?? []).map(parseShapeFlag))),
    ...(values['profile-dir'] !== undefined ? { profileDir: resolve(values['profile-dir']) } : {}),
    serveFlags,
  };
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1_000n);

export async function runProfile(o: ProfileOptions, log: (line: string) => void): Promise<ProfileResult> {
  const dir = o.profileDir ?? mkdtempSync(join(tmpdir(), 'fabriek-profile-'));
  try {
    // Node refuses --cpu-prof in NODE_OPTIONS; as an option of node itself the workers inherit it (fork's execArgv).
    const server = await startGateway(o.repository, ['--log-level', 'error', ...o.serveFlags], { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
    let load: { requests: number; errors: number; fromUs: number; toUs: number; treeSeconds: number };
    try {
      const url = o.protocol === 'http' ? httpUrlOf(server) : server.address;
      if (url === undefined) throw new Error('the server did not say its HTTP port');
      const admin = createClient(url, o.protocol);
      const [md, config] = await Promise.all([
        admin.getModelMetadata(o.model, '', { timeoutMs: 30_000 }),
        admin.getModelConfig(o.model, '', { timeoutMs: 10_000 }),
      ]).finally(() => admin.close());
      const inputs = planInputs(md, config.maxBatchSize, { batchSize: 1, shapes: o.shapes, data: { kind: 'zero' }, poolSize: 1 }).sets[0] ?? [];
      // gRPC through frames written on node:http2 (grpc-js's client would take the cores the server is measured on).
      const client = o.protocol === 'http' ? createClient(url, 'http') : new H2GrpcInfer(server.address);
      try {
        const prepared: PreparedInfer = client.prepareInfer(o.model, inputs);
        log(`profiling ${o.model} over ${o.protocol === 'http' ? 'HTTP' : 'gRPC'} at ${o.concurrency} calls in flight: ${WARMUP_MS / 1000} s warm-up, ${o.durationMs / 1000} s measured…`);
        // One window: its boundaries bound the samples counted and the tree's CPU read from /proc.
        const at: number[] = [];
        const tree: number[] = [];
        const measured = await closedLoop({
          concurrency: o.concurrency,
          warmupMs: WARMUP_MS,
          send: (_seq, signal) => client.inferPrepared(prepared, { timeoutMs: 30_000, signal }),
          windows: { intervalMs: o.durationMs, maxTrials: 1 },
          hooks: {
            onBoundary: (i) => {
              at[i] = nowUs();
              tree[i] = treeCpuSeconds(server.pid);
            },
          },
        });
        const errors = Object.values(measured.errors).reduce((n, k) => n + k, 0);
        load = { requests: measured.requests, errors, fromUs: at[0] ?? 0, toUs: at[1] ?? 0, treeSeconds: (tree[1] ?? 0) - (tree[0] ?? 0) };
      } finally {
        client.close();
      }
    } finally {
      // Each process writes its profile as it exits: the gateway on SIGTERM, the workers as it stops them.
      await server.stop();
    }
    const parts = readParts(dir, server.pid, load.fromUs, load.toUs);
    if (parts.every((p) => p.times.busyUs + p.times.idleUs === 0)) {
      throw new Error(`no profile samples fell within the measured load (${dir}): the profiles' clock is not this process's monotonic clock`);
    }
    return {
      requests: load.requests,
      errors: load.errors,
      seconds: (load.toUs - load.fromUs) / 1e6,
      treeUsPerRequest: load.requests > 0 ? (load.treeSeconds * 1e6) / load.requests : 0,
      parts,
    };
  } finally {
    if (o.profileDir === undefined) rmSync(dir, { recursive: true, force: true });
  }
}

/** The profiles in `dir`, one part per process: the gateway (`gatewayPid`), and workers (a profile with the worker's entry). */
function readParts(dir: string, gatewayPid: number, fromUs: number, toUs: number): ProcessPart[] {
  const byPid = new Map<number, { worker: boolean; times: StageTimes[] }>();
  for (const file of readdirSync(dir)) {
    const info = profileFileInfo(file);
    if (info === undefined) continue;
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
    let entry = byPid.get(info.pid);
    if (entry === undefined) byPid.set(info.pid, (entry = { worker: false, times: [] }));
    if (profile.nodes.some((n) => n.callFrame.url.endsWith('/worker/main.js'))) entry.worker = true;
    entry.times.push(stageTimes(profile, fromUs, toUs));
  }
  return [...byPid].map(([pid, e]) => ({
    pid,
    role: pid === gatewayPid || !e.worker ? 'gateway' : 'worker',
    threads: e.times.length,
    times: addStageTimes(e.times),
  }));
}

const us = (x: number): string => (x >= 10 ? x.toFixed(0) : x.toFixed(1));

/** The breakdown as a markdown table: a column per role (processes of a role added), µs per request. */
export function profileTable(r: ProfileResult): string {
  const roles = (['gateway', 'worker'] as const).filter((role) => r.parts.some((p) => p.role === role));
  const byRole = new Map(roles.map((role) => [role, addStageTimes(r.parts.filter((p) => p.role === role).map((p) => p.times))]));
  const total = addStageTimes([...byRole.values()]);
  const per = (t: number): number => (r.requests > 0 ? t / r.requests : 0);
  const rows: string[][] = [];
  for (const stage of STAGES) {
    const all = total.stages.get(stage) ?? 0;
    if (per(all) < 0.05) continue;
    rows.push([stage, ...roles.map((role) => us(per(byRole.get(role)?.stages.get(stage) ?? 0))), us(per(all)), `${((100 * all) / Math.max(1, total.busyUs)).toFixed(1)} %`]);
  }
  rows.push(['**busy (profiled)**', ...roles.map((role) => `**${us(per(byRole.get(role)?.busyUs ?? 0))}**`), `**${us(per(total.busyUs))}**`, '100 %']);
  const header = ['stage (µs of CPU per request)', ...roles.map((role) => `${role} (${r.parts.filter((p) => p.role === role).reduce((n, p) => n + p.threads, 0)} threads)`), 'server', 'share'];
  return [
    mdTable(header, rows),
    '',
    `${r.requests} requests in ${r.seconds.toFixed(1)} s (${(r.requests / Math.max(r.seconds, 1e-9)).toFixed(0)}/s), ${r.errors} errors. ` +
      `The server's process tree used ${us(r.treeUsPerRequest)} µs of CPU per request by /proc (the profiler's own sampling included; without it, less). ` +
      'A sample counts for the nearest frame up its stack that is a Fabriek module or a package; Node internals (HTTP/2, streams, buffers) count for the code that called them, or as Node HTTP/2 and sockets when nothing of ours or of a package is on the stack (a socket read, a timer).',
  ].join('\n');
}

export async function profileCommand(argv: readonly string[], log: (line: string) => void, watchdog: (ms: number) => void): Promise<number> {
  const o = parseProfileArgs(argv);
  if ('help' in o) {
    process.stdout.write(PROFILE_USAGE);
    return 0;
  }
  watchdog(o.durationMs + WARMUP_MS + 300_000);
  const result = await runProfile(o, log);
  process.stdout.write(`\n${profileTable(result)}\n`);
  return result.requests > 0 && result.errors === 0 ? 0 : 1;
}
