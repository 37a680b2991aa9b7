// `fabriek bench overload` (issue #15): a ResNet-18-shaped model (602 KB
// images, max_batch_size 16, one CPU instance) measured closed loop for its
// capacity, then offered Poisson arrivals at 70 % of it and at N times it,
// with up to 5,000 requests outstanding, once with Triton's fixed batching
// and once in SLO mode, each on a fresh gateway (in --rounds, the modes in
// turn, each verdict on the mode's medians). It reports goodput (answers
// within the SLO per second) against the capacity, the p99 of the answered
// requests against the 70 % level's, how fast the excess was refused, the
// server's peak RSS, and how long SIGTERM took to end every process.
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isInferenceError } from '../../client/errors.js';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { type PreparedInfer } from '../../client/inference-client.js';
import { buildModels } from '../../models/build/test-models.js';
import { type ChildServer, disturbedNote, inflightWaitArgs, removeAtExit, startGateway } from '../load/child-server.js';
import { H2GrpcInfer } from '../load/h2-grpc-infer.js';
import { latencyHistogram, recordUs } from '../load/histogram.js';
import { type LevelResult, type LoadLevel, runLevel } from '../load/level.js';
import { busyShare, readModelStats } from '../load/server-stats.js';
import { treeRssBytes } from '../load/tree-rss.js';
import { errorText, mdTable, ms, num } from '../report/format.js';
import { median } from '../report/median.js';
import { resnetImage } from './noisy-neighbour.js';

const MODEL = 'resnet_small';
const INPUTS = 8;
const CLOSED_LOOP = 16;
const MAX_OUTSTANDING = 5_000;
const EXIT_TIMEOUT_SECS = 10;

export interface OverloadOptions {
  /** Offered load of the overload level, in multiples of the measured capacity. */
  readonly factor: number;
  /**
   * Offered load of the overload level in images/s, instead of `factor` times
   * the capacity: builds compared side by side then get the same arrivals,
   * whatever capacity each measured.
   */
  readonly offeredRate?: number;
  /** batching_slo_ms of the SLO mode, and what goodput counts. */
  readonly sloMs: number;
  /** Each request's own gRPC deadline. */
  readonly deadlineMs: number;
  /** The gateways' --max-inflight-wait-ms (0: off, the default). */
  readonly maxInflightWaitMs: number;
  /** Triton's max_queue_size in both modes' configs (0: none, the default). */
  readonly maxQueueSize?: number;
  /**
   * The model's intra_op_thread_count (0: Fabriek's default, a thread per
   * core). 1 leaves the gateway and the load generator a core of the two
   * here: with two threads, each run waited for whichever thread the
   * gateway's turning away of 1,000 requests a second had descheduled.
   */
  readonly intraOpThreads?: number;
  /** More `fabriek serve` flags (after -- on the command line). */
  readonly serveFlags?: readonly string[];
  /** Rounds of both modes in turn, each on a fresh gateway (default 1); the verdicts go by each mode's medians. */
  readonly rounds?: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly log: (line: string) => void;
}

interface Mode {
  readonly name: string;
  readonly config: string;
}

const modes = (sloMs: number, maxQueueSize: number): Mode[] => {
  const batching = maxQueueSize > 0 ? `dynamic_batching { default_queue_policy { max_queue_size: ${maxQueueSize} } }` : 'dynamic_batching { }';
  return [
    { name: 'fixed (max_queue_delay 0)', config: batching },
    { name: `SLO ${sloMs} ms`, config: `${batching}\nparameters { key: "batching_slo_ms" value { string_value: "${sloMs}" } }` },
  ];
};

interface ModeResult {
  readonly mode: string;
  /** 1-based. */
  readonly round: number;
  readonly capacity: LevelResult;
  readonly partial: LevelResult;
  readonly overload: LevelResult;
  /** Latency of the refusals at the overload level (µs). */
  readonly refusedP50Us: number;
  readonly refusedP99Us: number;
  readonly rssBeforeBytes: number;
  readonly rssPeakBytes: number;
  readonly exitMs: number;
  readonly exitedHow: string;
  readonly leftAlive: number;
}

export interface OverloadReport {
  readonly json: unknown;
  readonly markdown: string;
  readonly ok: boolean;
}

/** Every descendant of `pid` (workers, and theirs), from /proc. */
function descendants(pid: number): number[] {
  const out: number[] = [];
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    for (const c of children ? children.split(' ').map(Number) : []) out.push(c, ...descendants(c));
  } catch {
    // gone
  }
  return out;
}

const alive = (pid: number): boolean => {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
};

async function measureMode(mode: Mode, round: number, repo: string, o: OverloadOptions): Promise<ModeResult> {
  const gateway: ChildServer = await startGateway(repo, ['--exit-timeout-secs', String(EXIT_TIMEOUT_SECS), ...inflightWaitArgs(o.maxInflightWaitMs), ...(o.serveFlags ?? [])]);
  const load = new H2GrpcInfer(gateway.address);
  // ModelStatistics around each level: the batches, and how long the instance computed.
  const client = new InferenceGrpcClient(gateway.address);
  try {
    const images: PreparedInfer[] = Array.from({ length: INPUTS }, (_, k) => load.prepareMessage(resnetImage(MODEL, k)));
    const refused = latencyHistogram();
    let timeRefusals = false;
    const send = async (seq: number, signal: AbortSignal): Promise<void> => {
      const start = performance.now();
      try {
        await load.inferPrepared(images[seq % INPUTS] as PreparedInfer, { signal, timeoutMs: o.deadlineMs });
      } catch (error) {
        // Refusals: the server said no (not the client's own deadline or cancel).
        if (timeRefusals && isInferenceError(error) && (error.codeName === 'RESOURCE_EXHAUSTED' || error.codeName === 'UNAVAILABLE')) {
          recordUs(refused, (performance.now() - start) * 1000);
        }
        throw error;
      }
    };
    const level = (l: LoadLevel, label: string): Promise<LevelResult> => {
      o.log(`  ${mode.name}: ${label}…`);
      return runLevel(l, {
        series: mode.name,
        model: MODEL,
        protocol: 'grpc',
        batchSize: 1,
        send,
        warmupMs: o.warmupMs,
        windows: { intervalMs: o.durationMs, maxTrials: 1, sloUs: o.sloMs * 1000 },
        serverPid: gateway.pid,
        seed: 1,
        maxOutstanding: MAX_OUTSTANDING,
        stats: () => readModelStats(client, MODEL),
      });
    };
    const capacity = await level({ mode: 'concurrency', value: CLOSED_LOOP }, `capacity, closed loop at ${CLOSED_LOOP}`);
    const rate = capacity.inferPerSecond;
    o.log(`    ${num(rate)} images/s, p99 ${ms(capacity.latency.p99Us)} ms, batch · instance busy ${batchAndBusy(capacity)}${disturbedNote(capacity.cpu)}`);
    const partial = await level({ mode: 'request-rate', value: Math.max(1, Math.round(0.7 * rate)), distribution: 'poisson' }, '70 % of it');
    o.log(`    answered ${num(partial.inferPerSecond)}/s, goodput ${num(partial.goodputPerSecond)}/s, p99 ${ms(partial.latency.p99Us)} ms${disturbedNote(partial.cpu)}`);
    const rssBeforeBytes = treeRssBytes(gateway.pid);
    let rssPeakBytes = rssBeforeBytes;
    const sampler = setInterval(() => {
      const rss = treeRssBytes(gateway.pid);
      if (rss > rssPeakBytes) rssPeakBytes = rss;
    }, 100);
    const at = (p: number): number => (refused.totalCount === 0 ? NaN : refused.getValueAtPercentile(p));
    timeRefusals = true;
    let overload: LevelResult;
    try {
      const offered = o.offeredRate ?? Math.round(o.factor * rate);
      overload = await level({ mode: 'request-rate', value: offered, distribution: 'poisson' }, o.offeredRate === undefined ? `${o.factor}x it` : `${offered}/s`);
    } finally {
      clearInterval(sampler);
      timeRefusals = false;
    }
    o.log(
      `    answered ${num(overload.inferPerSecond)}/s, goodput ${num(overload.goodputPerSecond)}/s, p99 ${ms(overload.latency.p99Us)} ms, ` +
        `errors ${errorText(overload.errors)}, refusals p99 ${ms(at(99))} ms, RSS peak ${num(rssPeakBytes / 2 ** 20)} MiB, ` +
        `batch · instance busy ${batchAndBusy(overload)}${disturbedNote(overload.cpu)}`,
    );
    load.close();
    // SIGTERM once the load has gone, as systemd sends it; every process must be gone within the exit timeout.
    const tree = descendants(gateway.pid);
    const t0 = performance.now();
    const exitedHow = await gateway.stop((EXIT_TIMEOUT_SECS + 20) * 1000);
    const exitMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 500));
    const leftAlive = tree.filter(alive).length;
    o.log(`    SIGTERM: exited ${exitedHow} after ${num(exitMs)} ms; processes left: ${leftAlive}`);
    // A shutdown that ran into the exit timeout: the gateway logged what it still waited for.
    const waited = gateway
      .stderrTail()
      .split('\n')
      .find((l) => l.includes('exit timeout reached'));
    if (waited !== undefined) o.log(`    the gateway's exit timeout: ${waited}`);
    return {
      mode: mode.name,
      round,
      capacity,
      partial,
      overload,
      refusedP50Us: at(50),
      refusedP99Us: at(99),
      rssBeforeBytes,
      rssPeakBytes,
      exitMs,
      exitedHow,
      leftAlive,
    };
  } finally {
    load.close();
    client.close();
    await gateway.stop();
  }
}

export async function runOverload(o: OverloadOptions): Promise<OverloadReport> {
  const dir = await mkdtemp(join(tmpdir(), 'fabriek-bench-overload-'));
  removeAtExit(dir);
  const [built] = await buildModels(join(dir, 'build'), [MODEL]);
  if (built === undefined) throw new Error(`could not build ${MODEL}`);
  const all = modes(o.sloMs, o.maxQueueSize ?? 0);
  for (const [i, mode] of all.entries()) {
    const repo = join(dir, `repo${i}`);
    await mkdir(join(repo, MODEL, '1'), { recursive: true });
    await copyFile(built, join(repo, MODEL, '1', 'model.onnx'));
    const threads = (o.intraOpThreads ?? 0) > 0 ? `parameters { key: "intra_op_thread_count" value: { string_value: "${o.intraOpThreads}" } }\n` : '';
    await writeFile(join(repo, MODEL, 'config.pbtxt'), `max_batch_size: 16\n${mode.config}\ninstance_group [ { count: 1, kind: KIND_CPU } ]\n${threads}`);
  }
  const rounds = o.rounds ?? 1;
  const results: ModeResult[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const [i, mode] of all.entries()) {
      o.log(rounds > 1 ? `${mode.name}, round ${round} of ${rounds}:` : `${mode.name}:`);
      results.push(await measureMode(mode, round, join(dir, `repo${i}`), o));
    }
  }
  return report(o, results);
}

/**
 * A level's average batch and the share of its window the instance computed
 * (one instance: its executions' compute over the window), from
 * ModelStatistics; '–' without them. Under overload an instance that waits
 * for the next batch's bodies shows here (docs/performance.md, *Where the
 * instance waits under overload*).
 */
function batchAndBusy(l: LevelResult): string {
  const busy = busyShare(l.server, l.seconds);
  return l.server === undefined || Number.isNaN(busy) ? '–' : `${num(l.server.avgBatchSize, 1)} · ${num(100 * busy)} %`;
}

/** One run of a mode against the bar. */
export interface OverloadRun {
  readonly mode: string;
  /** Goodput under the overload ÷ the capacity measured in the same run. */
  readonly goodput: number;
  /** p99 of the answers under the overload ÷ the 70 % level's. */
  readonly tail: number;
  /** Every process ended within the exit timeout after SIGTERM. */
  readonly exitMet: boolean;
}

export interface OverloadVerdict {
  readonly mode: string;
  /** Each run's figures, in order, and their medians, which the verdict goes by. */
  readonly goodputs: readonly number[];
  readonly tails: readonly number[];
  readonly goodput: number;
  readonly tail: number;
  readonly goodputMet: boolean;
  readonly tailMet: boolean;
  /** In every run. */
  readonly exitMet: boolean;
}

/**
 * Issue #15's bar per mode (goodput ≥ 90 % of capacity, the answers' p99 ≤
 * 2× the 70 % level's, SIGTERM ending every process), by the medians of its
 * runs: a single run here moves by a third with the machine's other load.
 * Modes in the order first run.
 */
export function overloadVerdicts(runs: readonly OverloadRun[]): OverloadVerdict[] {
  const byMode = new Map<string, OverloadRun[]>();
  for (const r of runs) {
    const list = byMode.get(r.mode);
    if (list === undefined) byMode.set(r.mode, [r]);
    else list.push(r);
  }
  return [...byMode].map(([mode, list]) => {
    const goodputs = list.map((r) => r.goodput);
    const tails = list.map((r) => r.tail);
    const goodput = median(goodputs);
    const tail = median(tails);
    return { mode, goodputs, tails, goodput, tail, goodputMet: goodput >= 0.9, tailMet: tail <= 2, exitMet: list.every((r) => r.exitMet) };
  });
}

function report(o: OverloadOptions, results: readonly ModeResult[]): OverloadReport {
  const runs: OverloadRun[] = results.map((r) => ({
    mode: r.mode,
    goodput: r.overload.goodputPerSecond / r.capacity.inferPerSecond,
    tail: r.overload.latency.p99Us / r.partial.latency.p99Us,
    exitMet: r.exitMs <= EXIT_TIMEOUT_SECS * 1000 && r.leftAlive === 0,
  }));
  const verdicts = overloadVerdicts(runs);
  const rounds = o.rounds ?? 1;
  const mb = (b: number): string => num(b / 2 ** 20);
  const rows = results.map((r, i) => {
    const v = runs[i] as OverloadRun;
    return [
      rounds > 1 ? `${r.mode} (${r.round})` : r.mode,
      num(r.capacity.inferPerSecond),
      `${num(r.partial.inferPerSecond)} · ${ms(r.partial.latency.p99Us)}`,
      num(r.overload.value),
      num(r.overload.inferPerSecond),
      `${num(r.overload.goodputPerSecond)} (${num(100 * v.goodput)} %)`,
      `${batchAndBusy(r.capacity)} → ${batchAndBusy(r.overload)}`,
      `${ms(r.overload.latency.p99Us)} (${num(v.tail, 1)}×)`,
      `${ms(r.refusedP50Us)} / ${ms(r.refusedP99Us)}`,
      errorText(r.overload.errors),
      `${mb(r.rssBeforeBytes)} → ${mb(r.rssPeakBytes)}`,
      `${num(r.exitMs)} ms, ${r.leftAlive} left`,
    ];
  });
  const disturbed = results.flatMap((r) => [r.capacity, r.partial, r.overload].filter((l) => disturbedNote(l.cpu) !== '').map((l) => `${r.mode} ${l.mode === 'concurrency' ? 'capacity' : `${num(l.value)}/s`}${disturbedNote(l.cpu)}`));
  const ok = verdicts.some((v) => v.goodputMet && v.tailMet && v.exitMet);
  const each = (xs: readonly number[], f: (x: number) => string): string => (xs.length > 1 ? ` (${xs.map(f).join(', ')})` : '');
  const pct = (x: number): string => `${num(100 * x)} %`;
  const times = (x: number): string => `${num(x, 1)}×`;
  const overloadName = o.offeredRate === undefined ? `${o.factor}× it` : `${o.offeredRate} images/s`;
  const markdown = [
    `${MODEL} (602 KB images), max_batch_size 16, one CPU instance${(o.intraOpThreads ?? 0) > 0 ? ` of intra_op_thread_count ${o.intraOpThreads}` : ''}; each mode on a fresh gateway. Capacity: closed loop at ${CLOSED_LOOP}. ` +
      `Then Poisson arrivals at 70 % of it and at ${overloadName}, at most ${MAX_OUTSTANDING} outstanding, each request with a ${o.deadlineMs} ms deadline, ` +
      `through the bench's HTTP/2 gRPC client. Goodput: answers within ${o.sloMs} ms per second. ${num(o.durationMs / 1000)} s windows after ${num(o.warmupMs / 1000)} s of warm-up. ` +
      (rounds > 1 ? `${rounds} rounds of the modes in turn, each run on a fresh gateway (the round in brackets); the verdicts go by each mode's medians. ` : '') +
      (o.maxInflightWaitMs > 0 ? `Gateways with --max-inflight-wait-ms ${o.maxInflightWaitMs}.` : 'Gateways with the default admission (--max-inflight-bytes only).') +
      (o.maxQueueSize !== undefined && o.maxQueueSize > 0 ? ` Both modes with max_queue_size ${o.maxQueueSize}.` : ''),
    '',
    mdTable(
      ['mode', 'capacity/s', '70 %: answered/s · p99 ms', `${o.offeredRate === undefined ? `${o.factor}×` : 'overload'}: offered/s`, 'answered/s', 'goodput/s (of capacity)', 'batch · instance busy (capacity → overload)', 'p99 ms (of 70 %)', 'refused p50 / p99 ms', 'errors', 'RSS MiB before → peak', 'SIGTERM'],
      rows,
    ),
    '',
    `Issue #15 bar (goodput ≥ 90 % of capacity, p99 of answered ≤ 2× its value at 70 %, SIGTERM ends every process within --exit-timeout-secs)${rounds > 1 ? ', by the medians of the rounds' : ''}:`,
    '',
    ...verdicts.map(
      (v) =>
        `- ${v.mode}: goodput ${pct(v.goodput)}${each(v.goodputs, pct)} — ${v.goodputMet ? '**met**' : '**not met**'}; ` +
        `p99 ${times(v.tail)}${each(v.tails, times)} — ${v.tailMet ? '**met**' : '**not met**'}; SIGTERM${rounds > 1 ? ' in every round' : ''} — ${v.exitMet ? '**met**' : '**not met**'}.`,
    ),
    ...(disturbed.length > 0 ? ['', `**Disturbed:** ${disturbed.join('; ')}.`] : []),
    '',
  ].join('\n');
  const json = results.map((r) => ({
    mode: r.mode,
    round: r.round,
    capacity: r.capacity,
    partial: r.partial,
    overload: r.overload,
    refusedP50Us: r.refusedP50Us,
    refusedP99Us: r.refusedP99Us,
    rssBeforeBytes: r.rssBeforeBytes,
    rssPeakBytes: r.rssPeakBytes,
    exitMs: r.exitMs,
    exitedHow: r.exitedHow,
    leftAlive: r.leftAlive,
  }));
  return { json: { options: { factor: o.factor, offeredRate: o.offeredRate, sloMs: o.sloMs, deadlineMs: o.deadlineMs, maxInflightWaitMs: o.maxInflightWaitMs, maxQueueSize: o.maxQueueSize ?? 0, intraOpThreads: o.intraOpThreads ?? 0, rounds }, results: json, verdicts }, markdown, ok };
}
