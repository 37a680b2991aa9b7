// `fabriek bench many-models --on-demand --budget N` (issue 13 item 4): the
// many-models repository served with --model-control-mode on-demand under a
// budget, every model called in random order. Every call is a cold start (the
// model is not loaded when it comes), so the call latencies are cold-start
// latencies: first with one client, then with eight on the models not loaded
// after the first pass. Reports answers right, the most models loaded at once
// (the server's own high-water mark from /metrics), and the tree's RSS peak.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildManyModels } from '../../models/build/many-models.js';
import { httpUrlOf, removeAtExit, startGateway } from '../load/child-server.js';
import { treeRssBytes } from '../load/tree-rss.js';
import { checkModel } from './many-models-check.js';

export interface ColdStarts {
  readonly clients: number;
  readonly calls: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export interface OnDemandResult {
  readonly count: number;
  readonly budget: string;
  readonly readyMs: number;
  readonly right: number;
  readonly wrong: number;
  readonly failed: number;
  readonly firstProblem: string;
  /** Most models loaded at once on any worker (fabriek_models_loaded_peak). */
  readonly peakLoaded: number;
  readonly loads: number;
  readonly evictions: number;
  /** Mean of the server's fabriek_model_cold_start_seconds (load only, no request). */
  readonly serverLoadMeanMs: number;
  readonly phases: readonly ColdStarts[];
  readonly peakRssBytes: number;
}

const MIB = 1024 * 1024;

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

/** Sum over workers of one metric's samples (`name{worker="…"} value`), or their max. */
function samples(text: string, name: string): number[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)));
}

export function onDemandText(r: OnDemandResult): string {
  const ms = (v: number): string => v.toFixed(1);
  return [
    `models:           ${r.count}, --model-control-mode on-demand --model-memory-budget ${r.budget}`,
    `ready after:      ${(r.readyMs / 1000).toFixed(2)} s (spawn → ready line; nothing loads at start)`,
    `answers:          ${r.right} right, ${r.wrong} wrong, ${r.failed} failed`,
    `loaded at once:   at most ${r.peakLoaded} (server's high-water mark); ${r.loads} loads, ${r.evictions} evictions`,
    ...r.phases.map((p) => `cold start, ${p.clients} client${p.clients === 1 ? ' ' : 's'}: p50 ${ms(p.p50Ms)} ms, p99 ${ms(p.p99Ms)} ms, max ${ms(p.maxMs)} ms over ${p.calls} calls (request latency, load included)`),
    `server load time: mean ${ms(r.serverLoadMeanMs)} ms (fabriek_model_cold_start_seconds)`,
    `tree RSS:         peak ${(r.peakRssBytes / MIB).toFixed(0)} MiB`,
    ...(r.firstProblem ? [`first problem:    ${r.firstProblem}`] : []),
  ].join('\n');
}

export async function runManyModelsOnDemand(count: number, budget: string, serveFlags: readonly string[], log: (line: string) => void): Promise<OnDemandResult> {
  const dir = await mkdtemp(join(tmpdir(), 'fabriek-many-od-'));
  const forget = removeAtExit(dir);
  try {
    log(`building ${count} models in ${dir}`);
    const names = await buildManyModels(dir, count);
    const started = Date.now();
    const server = await startGateway(dir, ['--model-control-mode', 'on-demand', '--model-memory-budget', budget, ...serveFlags]);
    const readyMs = Date.now() - started;
    let peakRss = treeRssBytes(server.pid);
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, treeRssBytes(server.pid) || 0);
    }, 100);
    try {
      const base = httpUrlOf(server);
      if (base === undefined) throw new Error('the server serves no HTTP');
      const metricsUrl = base.replace(/:\d+$/, `:${/metrics on [^ ;]+:(\d+)/.exec(server.readyLine)?.[1]}/metrics`);
      let right = 0;
      let wrong = 0;
      let failed = 0;
      let firstProblem = '';
      const phase = async (indexes: readonly number[], clients: number): Promise<ColdStarts> => {
        const latencies: number[] = [];
        let next = 0;
        await Promise.all(
          Array.from({ length: clients }, async () => {
            for (let k = next++; k < indexes.length; k = next++) {
              const i = indexes[k] as number;
              const t0 = performance.now();
              try {
                const problem = await checkModel(base, names[i] as string, i);
                latencies.push(performance.now() - t0);
                if (problem) {
                  wrong++;
                  firstProblem ||= problem;
                } else right++;
              } catch (error) {
                failed++;
                firstProblem ||= error instanceof Error ? error.message : String(error);
              }
            }
          }),
        );
        latencies.sort((a, b) => a - b);
        return { clients, calls: latencies.length, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), maxMs: latencies[latencies.length - 1] ?? Number.NaN };
      };
      log('pass 1: every model once, in random order, 1 client');
      const one = await phase(shuffle(names.map((_, i) => i)), 1);
      // Pass 2 calls only models not loaded now, so that every call is a cold start again.
      const index = (await (await fetch(`${base}/v2/repository/index`, { method: 'POST', body: '{"ready":true}' })).json()) as Array<{ name: string }>;
      const loaded = new Set(index.map((m) => m.name));
      const cold = names.flatMap((n, i) => (loaded.has(n) ? [] : [i]));
      log(`pass 2: the ${cold.length} models not loaded now, in random order, 8 clients`);
      const eight = await phase(shuffle(cold), 8);
      const text = await (await fetch(metricsUrl)).text();
      const sum = samples(text, 'fabriek_model_cold_start_seconds_sum')[0] ?? Number.NaN;
      const n = samples(text, 'fabriek_model_cold_start_seconds_count')[0] ?? Number.NaN;
      return {
        count,
        budget,
        readyMs,
        right,
        wrong,
        failed,
        firstProblem,
        peakLoaded: Math.max(...samples(text, 'fabriek_models_loaded_peak')),
        loads: samples(text, 'fabriek_model_loads_total').reduce((a, b) => a + b, 0),
        evictions: samples(text, 'fabriek_model_evictions_total')[0] ?? Number.NaN,
        serverLoadMeanMs: (sum / n) * 1000,
        phases: [one, eight],
        peakRssBytes: peakRss,
      };
    } finally {
      clearInterval(sampler);
      await server.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
    forget();
  }
}
