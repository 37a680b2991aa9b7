// `fabriek bench many-models [--count N]` (issue 13): time to READY, RSS of
// the server's process tree, and one answer checked per model, for a
// repository of N small distinct models (y = x + c_i, no config files) built
// into a temp dir. The server runs with default flags plus any given after
// `--`.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildManyModels } from '../../models/build/many-models.js';
import { httpUrlOf, removeAtExit, startGateway } from '../load/child-server.js';
import { treeCpuSeconds } from '../../core/process-cpu.js';
import { treeRssBytes } from '../load/tree-rss.js';
import { parsed, splitServeFlags } from '../options.js';
import { UsageError } from '../bench-errors.js';
import { checkModel, post } from './many-models-check.js';
import { onDemandText, runManyModelsOnDemand } from './many-models-on-demand.js';

export const MANY_MODELS_USAGE = `Usage: fabriek bench many-models [--count N] [--concurrency C] [--on-demand [--budget B]] [-- SERVE_FLAGS…]

Builds N models y = x + c_i (no configs) into a temp dir, starts \`fabriek serve\` on it
with default flags (plus SERVE_FLAGS), and reports the time until the server is ready,
how many models are READY, the peak and final RSS of the server's process tree, and
calls each model once over HTTP (C at a time), checking its own c_i.
  --count N        models (default 1000, at most 20000)
  --concurrency C  calls in flight while checking answers (default 8)
  --on-demand      serve with --model-control-mode on-demand instead: call every model once in
                   random order with 1 client, then the ones not loaded by then with 8, and report
                   answers right, the most models loaded at once (from /metrics), cold-start
                   p50/p99 of each pass and the RSS peak of the server's process tree
  --budget B       with --on-demand: --model-memory-budget, a count (100 = 100models) or a size
                   with a unit (512MiB) (default 100)
`;

export interface ManyModelsResult {
  readonly count: number;
  readonly readyMs: number;
  /** CPU seconds the server's tree had used when it was ready (steadier than wall time on a shared machine). */
  readonly readyCpuSeconds: number;
  readonly readyModels: number;
  readonly peakRssBytes: number;
  readonly rssBytes: number;
  readonly wrongAnswers: number;
  readonly failedCalls: number;
  readonly checkMs: number;
  readonly firstProblem: string;
}

const MIB = 1024 * 1024;

export function manyModelsText(r: ManyModelsResult): string {
  return [
    `models:           ${r.count}`,
    `ready after:      ${(r.readyMs / 1000).toFixed(2)} s (spawn → ready line), ${r.readyCpuSeconds.toFixed(2)} CPU s in the server's processes`,
    `READY in index:   ${r.readyModels} / ${r.count}`,
    `tree RSS:         peak ${(r.peakRssBytes / MIB).toFixed(0)} MiB while loading, ${(r.rssBytes / MIB).toFixed(0)} MiB after answering (${((r.rssBytes / r.count / MIB) * 1024).toFixed(0)} KiB per model)`,
    `answers checked:  ${r.count - r.wrongAnswers - r.failedCalls} right, ${r.wrongAnswers} wrong, ${r.failedCalls} failed, in ${(r.checkMs / 1000).toFixed(2)} s`,
    ...(r.firstProblem ? [`first problem:    ${r.firstProblem}`] : []),
  ].join('\n');
}

export async function runManyModels(count: number, concurrency: number, serveFlags: readonly string[], log: (line: string) => void): Promise<ManyModelsResult> {
  const dir = await mkdtemp(join(tmpdir(), 'fabriek-many-'));
  const forget = removeAtExit(dir);
  try {
    log(`building ${count} models in ${dir}`);
    const names = await buildManyModels(dir, count);
    const started = Date.now();
    const serverStart = startGateway(dir, serveFlags);
    // Sample the tree's RSS while it loads: the peak is what a host must hold.
    // Its pid is known only once ready, so: this process's tree minus this process.
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, treeRssBytes(process.pid) - process.memoryUsage.rss() || 0);
    }, 100);
    const server = await serverStart.finally(() => clearInterval(sampler));
    const readyMs = Date.now() - started;
    const readyCpuSeconds = treeCpuSeconds(server.pid);
    try {
      const base = httpUrlOf(server);
      if (base === undefined) throw new Error('the server serves no HTTP');
      const index = (await post(`${base}/v2/repository/index`, {})) as Array<{ state?: string }>;
      const readyModels = index.filter((m) => m.state === 'READY').length;
      const checkStart = Date.now();
      let next = 0;
      let wrongAnswers = 0;
      let failedCalls = 0;
      let firstProblem = '';
      const worker = async (): Promise<void> => {
        for (let i = next++; i < names.length; i = next++) {
          try {
            const problem = await checkModel(base, names[i] as string, i);
            if (problem) {
              wrongAnswers++;
              firstProblem ||= problem;
            }
          } catch (error) {
            failedCalls++;
            firstProblem ||= error instanceof Error ? error.message : String(error);
          }
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      const checkMs = Date.now() - checkStart;
      const rssBytes = treeRssBytes(server.pid);
      peak = Math.max(peak, rssBytes);
      return { count, readyMs, readyCpuSeconds, readyModels, peakRssBytes: peak, rssBytes, wrongAnswers, failedCalls, checkMs, firstProblem };
    } finally {
      await server.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
    forget();
  }
}

export async function manyModelsCommand(argv: readonly string[], log: (line: string) => void, watchdog: (ms: number) => void): Promise<number> {
  const { own, serveFlags } = splitServeFlags(argv);
  const { values } = parsed(() =>
    parseArgs({
      args: own,
      options: {
        count: { type: 'string', default: '1000' },
        concurrency: { type: 'string', default: '8' },
        'on-demand': { type: 'boolean' },
        budget: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (values.help) {
    process.stdout.write(MANY_MODELS_USAGE);
    return 0;
  }
  const count = Number(values.count);
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(count) || count < 1 || count > 20_000) throw new UsageError(`--count: expected an integer from 1 to 20000, got '${values.count}'`);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new UsageError(`--concurrency: expected an integer from 1 to 256, got '${values.concurrency}'`);
  // Building, a start bounded by startGateway's 120 s, and 100 ms per answer at worst.
  watchdog(60_000 + 120_000 + count * (values['on-demand'] ? 400 : 100) + 60_000);
  if (values.budget !== undefined && !values['on-demand']) throw new UsageError('--budget is used only with --on-demand');
  if (values['on-demand']) {
    const raw = values.budget ?? '100';
    const budget = /^\d+$/.test(raw) ? `${raw}models` : raw;
    const r = await runManyModelsOnDemand(count, budget, serveFlags, log);
    process.stdout.write(`\n${onDemandText(r)}\n`);
    return r.right === r.phases.reduce((n, p) => n + p.calls, 0) && r.wrong === 0 && r.failed === 0 ? 0 : 1;
  }
  const result = await runManyModels(count, concurrency, serveFlags, log);
  process.stdout.write(`\n${manyModelsText(result)}\n`);
  const ok = result.readyModels === count && result.wrongAnswers === 0 && result.failedCalls === 0;
  if (!ok) log('bench many-models: not every model was ready and right (see above)');
  return ok ? 0 : 1;
}
