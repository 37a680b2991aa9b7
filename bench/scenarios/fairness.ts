import { type ChildProcess, fork } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { uniformFloat32 } from '../../models/build/seeded-random.js';
import { buildModels } from '../../models/build/test-models.js';
import { type ServiceError } from '@grpc/grpc-js';
import { type ModelInferRequest, type ModelInferResponse } from '../../proto/gen/inference.js';
import { errorText, mdTable, ms, num } from '../report/format.js';
import { type ChildServer, type CpuShare, cpuMeter, removeAtExit, startGateway } from '../load/child-server.js';
import { treeCpuSeconds } from '../../core/process-cpu.js';
import { mlpRowRequest } from './batching.js';
import { type FloodCommand, type FloodReport } from './fairness-flood.js';
import { codeName, isServiceError, openLoop } from './fairness-load.js';

// Issue #7's fairness benchmark, in one run: tenant B sends a steady open
// loop (Poisson arrivals at a fixed rate, the same seeded arrivals in every
// window) to a batching model while tenant A sends nothing, while A sends at
// its quota, and while A floods at 10× its quota; the three kinds of window
// take turns, several rounds, so that each round shares whatever else the
// machine was doing. The verdict compares B's latencies pooled over the
// windows of each kind (a p99 from one 10 s window rests on about 15
// samples, too few to compare alone), leaving out rounds in which other work
// on the machine took more than a quarter of a core; as a noise floor, it
// also compares B alone with B alone (odd rounds against even ones). The
// "A at quota" windows tell how much of B's change is A's fair share rather
// than the flood. A runs in its own process, as another client would.
// It keeps its own histograms (it pools windows); tables and numbers are
// formatted as in every other report.

const MODEL = 'mlp';
const ROW = 784;
const INPUT_POOL = 64;
const MAX_BATCH = 32;
const QUEUE_DELAY_US = 1000;
/** B's steady load. */
const B_RATE = 150;
/** A's quota, and its flood at 10× that. */
const A_QUOTA = 20;
const A_FLOOD = 10 * A_QUOTA;
/** Windows in a run of `rounds` rounds, for the caller's watchdog. */
export const fairnessWindows = (rounds: number): number => 3 * rounds;
/** A round in which other processes (not B, the gateway or A) kept more than this many cores busy is left out of the verdict. */
const DISTURBED = 0.25;
/** After A starts or stops, this long passes before a window opens (A's burst, queues draining). */
const SETTLE_MS = 1000;
const P99_LIMIT = 0.1;
const THROUGHPUT_LIMIT = 0.05;

const KEYS = { a: 'fairness-bench-tenant-a-key', b: 'fairness-bench-tenant-b-key' } as const;

export interface FairnessOptions {
  /** Each window's length. */
  readonly durationMs: number;
  /** Once, before the first round: B alone, then with A flooding. */
  readonly warmupMs: number;
  /** Rounds of the three kinds of window. */
  readonly rounds: number;
  /** The model's intra_op_thread_count (0: ONNX Runtime's default). */
  readonly intraOpThreads: number;
  readonly log: (line: string) => void;
}

/** B alone; A sending at its quota (where B's change comes from A's fair share); A flooding at 10×. */
type Phase = 'alone' | 'quota' | 'flood';
const PHASES: readonly Phase[] = ['alone', 'quota', 'flood'];
const PHASE_NAMES: Record<Phase, string> = { alone: 'B alone', quota: 'A at quota', flood: 'A floods' };

interface Window {
  readonly phase: Phase;
  readonly round: number;
  start: number;
  end: number;
  readonly latency: hdr.Histogram;
  ok: number;
  errors: Record<string, number>;
  wrong: number;
  cpu?: CpuShare;
  /** A's process, cores over the window (0 when it did not flood). */
  aCpu: number;
  flood?: FloodReport;
  server?: TenantDelta;
}

interface TenantDelta {
  /** Successful requests per tenant over the window, from the gateway's metrics. */
  readonly ok: Record<string, number>;
  /** Compute share (s) per tenant. */
  readonly computeSeconds: Record<string, number>;
}

const histogram = (): hdr.Histogram =>
  hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });

const signedPercent = (x: number): string => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)} %` : '–');

const tenantsYaml = (): string =>
  [
    'tenants:',
    '  a:',
    `    keys: [ "${hashKey(KEYS.a)}" ]`,
    `    models: [ "${MODEL}" ]`,
    `    quotas: { requests_per_second: ${A_QUOTA} }`,
    '  b:',
    `    keys: [ "${hashKey(KEYS.b)}" ]`,
    `    models: [ "${MODEL}" ]`,
    '',
  ].join('\n');

const configText = (intraOpThreads: number): string =>
  [
    `name: "${MODEL}"`,
    `max_batch_size: ${MAX_BATCH}`,
    'instance_group [ { count: 1, kind: KIND_CPU } ]',
    `dynamic_batching { max_queue_delay_microseconds: ${QUEUE_DELAY_US} }`,
    ...(intraOpThreads > 0 ? [`parameters { key: "intra_op_thread_count" value: { string_value: "${intraOpThreads}" } }`] : []),
    '',
  ].join('\n');

function request(k: number): ModelInferRequest {
  return mlpRowRequest(MODEL, uniformFloat32(`bench/fairness/${k}`, ROW, 1));
}

/** The per-tenant counters of the gateway's /metrics for this model. */
async function scrape(url: string): Promise<TenantDelta> {
  const text = await (await fetch(url)).text();
  const ok: Record<string, number> = {};
  const computeSeconds: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^fabriek_tenant_(requests_total|compute_seconds_total)\{tenant="([^"]*)",model="([^"]*)"(?:,status="([^"]*)")?\} (\S+)$/.exec(line);
    if (!m || m[3] !== MODEL) continue;
    const [, metric, tenant = '', , status, value] = m;
    if (metric === 'requests_total' && status === 'OK') ok[tenant] = Number(value);
    if (metric === 'compute_seconds_total') computeSeconds[tenant] = Number(value);
  }
  return { ok, computeSeconds };
}

function minus(after: TenantDelta, before: TenantDelta): TenantDelta {
  const sub = (a: Record<string, number>, b: Record<string, number>): Record<string, number> =>
    Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v - (b[k] ?? 0)]));
  return { ok: sub(after.ok, before.ok), computeSeconds: sub(after.computeSeconds, before.computeSeconds) };
}

/** Tenant A's client, in a process of its own (fairness-flood.ts). */
export class Flood {
  readonly #child: ChildProcess;

  get pid(): number | undefined {
    return this.#child.pid;
  }
  #reports: ((r: FloodReport) => void)[] = [];

  constructor() {
    this.#child = fork(fileURLToPath(new URL('./fairness-flood.js', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    // A's client would run on another machine; here it shares the cores, so it yields them to the server
    // (the server's cost of refusing A's requests is still all counted).
    if (this.#child.pid !== undefined) setPriority(this.#child.pid, 19);
    this.#child.on('message', (m: FloodReport | { type: 'ready' }) => {
      if (m.type === 'report') this.#reports.shift()?.(m);
    });
  }

  async start(address: string, key: string, request: ModelInferRequest): Promise<void> {
    const ready = new Promise<void>((resolve) => this.#child.once('message', () => resolve()));
    this.#send({ type: 'start', address, key, seed: 7, request });
    await ready;
  }

  /** An open loop at `ratePerSecond`. */
  on(ratePerSecond: number): void {
    this.#send({ type: 'on', ratePerSecond });
  }

  /** A closed loop keeping `outstanding` requests in flight. */
  keep(outstanding: number): void {
    this.#send({ type: 'on', ratePerSecond: 0, outstanding });
  }

  off(): Promise<FloodReport> {
    const report = new Promise<FloodReport>((resolve) => this.#reports.push(resolve));
    this.#send({ type: 'off' });
    return report;
  }

  async exit(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#send({ type: 'exit' });
    await exited;
  }

  #send(command: FloodCommand): void {
    this.#child.send(command);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface FairnessReport {
  readonly json: unknown;
  readonly markdown: string;
  readonly ok: boolean;
}

export async function runFairness(o: FairnessOptions): Promise<FairnessReport> {
  const dir = await mkdtemp(join(tmpdir(), 'fabriek-bench-fairness-'));
  const forget = removeAtExit(dir);
  const repo = join(dir, 'models');
  let gateway: ChildServer | undefined;
  const flood = new Flood();
  try {
    await mkdir(repo);
    await buildModels(repo, [MODEL]);
    await writeFile(join(repo, MODEL, 'config.pbtxt'), configText(o.intraOpThreads));
    await writeFile(join(dir, 'tenants.yaml'), tenantsYaml());
    gateway = await startGateway(repo, ['--tenants', join(dir, 'tenants.yaml'), '--http-address', '127.0.0.1', '--http-port', '0', '--metrics-port', '0']);
    const metricsUrl = `http://127.0.0.1:${/metrics on [^ ;]+:(\d+)/.exec(gateway.readyLine)?.[1]}/metrics`;
    await flood.start(gateway.address, KEYS.a, request(INPUT_POOL));
    const client = new InferenceGrpcClient(gateway.address);
    const requests = Array.from({ length: INPUT_POOL }, (_, k) => request(k));

    const windows: Window[] = [];
    /** B's open loop for one window: the same arrivals every time, answers counted in `w`. */
    const runB = async (w: Window, durationMs: number): Promise<void> => {
      const b = openLoop<ModelInferResponse | ServiceError>({
        ratePerSecond: B_RATE,
        seed: 1,
        send: (seq) =>
          client
            .modelInfer(requests[seq % INPUT_POOL] as ModelInferRequest, { timeoutMs: 10_000, metadata: { authorization: `Bearer ${KEYS.b}` } })
            .catch((error: unknown) => error as ServiceError),
        onSettled: (_seq, _sentAt, latencyUs, outcome) => {
          if (isServiceError(outcome)) {
            const name = codeName(outcome);
            w.errors[name] = (w.errors[name] ?? 0) + 1;
            return;
          }
          const out = outcome.rawOutputContents[0];
          if (out?.byteLength !== 40 || outcome.outputs[0]?.shape.join(',') !== '1,10') w.wrong++;
          w.ok++;
          w.latency.recordValue(Math.max(1, Math.round(latencyUs)));
        },
      });
      w.start = performance.now();
      await sleep(durationMs);
      w.end = performance.now();
      await b.stop(); // every request sent in the window is answered (or failed) and counted
    };
    const scratch = (): Window => ({ phase: 'alone', round: 0, start: 0, end: 0, latency: histogram(), ok: 0, errors: {}, wrong: 0, aCpu: 0 });

    o.log(`warm-up ${o.warmupMs / 1000} s (B alone, then A flooding)…`);
    const warm = scratch();
    await runB(warm, o.warmupMs / 2);
    flood.on(A_FLOOD);
    await runB(warm, o.warmupMs / 2);
    await flood.off();
    warm.latency.destroy();

    const measure = async (phase: Phase, round: number): Promise<Window> => {
      if (phase !== 'alone') flood.on(phase === 'flood' ? A_FLOOD : A_QUOTA);
      await sleep(SETTLE_MS);
      const meter = cpuMeter(gateway?.pid);
      const before = await scrape(metricsUrl);
      const w: Window = { ...scratch(), phase, round };
      const aCpu0 = flood.pid === undefined ? NaN : treeCpuSeconds(flood.pid);
      meter.start();
      await runB(w, o.durationMs);
      const cpu = meter.stop();
      // The machine's other work, without A's process: what disturbs the comparison.
      w.aCpu = flood.pid === undefined ? 0 : (treeCpuSeconds(flood.pid) - aCpu0) / ((w.end - w.start) / 1000);
      w.cpu = { ...cpu, other: Math.max(0, cpu.other - w.aCpu) };
      w.server = minus(await scrape(metricsUrl), before);
      if (phase !== 'alone') w.flood = await flood.off();
      windows.push(w);
      return w;
    };
    for (let round = 1; round <= o.rounds; round++) {
      // Each kind of window takes each place in the round equally often, so a drift over the run
      // (the machine warming, other work starting) does not favour one kind.
      const order = PHASES.map((_, i) => PHASES[(i + round - 1) % PHASES.length] as Phase);
      if (round % 2 === 0) order.reverse();
      for (const phase of order) {
        const w = await measure(phase, round);
        const seconds = (w.end - w.start) / 1000;
        o.log(
          `  round ${round} ${PHASE_NAMES[phase].padEnd(10)}: B ${num(w.ok / seconds)} req/s, p50 ${ms(w.latency.getValueAtPercentile(50))} ms, ` +
            `p99 ${ms(w.latency.getValueAtPercentile(99))} ms, errors ${JSON.stringify(w.errors)}` +
            (w.flood ? `; A sent ${num(w.flood.sent / w.flood.seconds)}/s: ${JSON.stringify(w.flood.outcomes)}` : '') +
            (w.cpu && w.cpu.other > DISTURBED ? `; DISTURBED: other processes used ${num(w.cpu.other, 2)} cores` : ''),
        );
      }
    }
    client.close();
    const stderr = gateway.stderrTail();
    return report(windows, stderr, o);
  } finally {
    await flood.exit();
    const how = await gateway?.stop();
    if (how !== undefined && how !== '0') o.log(`gateway exited with ${how}`);
    await rm(dir, { recursive: true, force: true });
    forget();
  }
}

interface Pooled {
  readonly seconds: number;
  readonly ok: number;
  readonly perSecond: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p99Us: number;
  readonly maxUs: number;
  readonly errors: Record<string, number>;
  readonly wrong: number;
}

function pool(ws: readonly Window[]): Pooled {
  const h = histogram();
  let seconds = 0;
  let ok = 0;
  let wrong = 0;
  const errors: Record<string, number> = {};
  for (const w of ws) {
    h.add(w.latency);
    seconds += (w.end - w.start) / 1000;
    ok += w.ok;
    wrong += w.wrong;
    for (const [k, v] of Object.entries(w.errors)) errors[k] = (errors[k] ?? 0) + v;
  }
  const out = {
    seconds,
    ok,
    perSecond: ok / seconds,
    p50Us: h.getValueAtPercentile(50),
    p90Us: h.getValueAtPercentile(90),
    p99Us: h.getValueAtPercentile(99),
    maxUs: h.maxValue,
    errors,
    wrong,
  };
  h.destroy();
  return out;
}

function report(windows: readonly Window[], stderr: string, o: FairnessOptions): FairnessReport {
  const rounds = o.rounds;
  const disturbedRounds = new Set(windows.filter((w) => (w.cpu?.other ?? 0) > DISTURBED).map((w) => w.round));
  // With every round disturbed there is no verdict, but the figures over all rounds are still shown.
  const undisturbed = windows.filter((w) => !disturbedRounds.has(w.round));
  const verdict = undisturbed.length > 0;
  const kept = verdict ? undisturbed : windows;
  const alone = pool(kept.filter((w) => w.phase === 'alone'));
  const atQuota = pool(kept.filter((w) => w.phase === 'quota'));
  const flooded = pool(kept.filter((w) => w.phase === 'flood'));
  const p99Change = flooded.p99Us / alone.p99Us - 1;
  const throughputChange = flooded.perSecond / alone.perSecond - 1;
  // Noise floor: the same comparison between two halves of the B-alone windows.
  const aloneOdd = pool(kept.filter((w) => w.phase === 'alone' && w.round % 2 === 1));
  const aloneEven = pool(kept.filter((w) => w.phase === 'alone' && w.round % 2 === 0));
  const noiseP99 = aloneEven.p99Us / aloneOdd.p99Us - 1;
  const all = { alone: pool(windows.filter((w) => w.phase === 'alone')), flooded: pool(windows.filter((w) => w.phase === 'flood')) };
  const errorsFree = [all.alone, all.flooded].every((p) => Object.keys(p.errors).length === 0 && p.wrong === 0);
  const met = verdict && Math.abs(p99Change) < P99_LIMIT && Math.abs(throughputChange) < THROUGHPUT_LIMIT && errorsFree;

  const floodWindows = windows.filter((w) => w.phase === 'flood');
  const floodSeconds = floodWindows.reduce((n, w) => n + (w.flood?.seconds ?? 0), 0);
  const windowSeconds = floodWindows.reduce((n, w) => n + (w.end - w.start) / 1000, 0);
  const aSent = floodWindows.reduce((n, w) => n + (w.flood?.sent ?? 0), 0);
  const aServedInWindows = floodWindows.reduce((n, w) => n + (w.server?.ok['a'] ?? 0), 0);
  const aRefused = floodWindows.reduce((n, w) => n + (w.flood?.outcomes['RESOURCE_EXHAUSTED'] ?? 0), 0);
  const compute = (tenant: string, phase: Phase): number =>
    windows.filter((w) => w.phase === phase).reduce((n, w) => n + (w.server?.computeSeconds[tenant] ?? 0), 0);

  const row = (name: string, p: Pooled): string[] => [
    name,
    num(p.perSecond, 1),
    ms(p.p50Us),
    ms(p.p90Us),
    ms(p.p99Us),
    ms(p.maxUs),
    String(p.ok),
    errorText(p.errors),
  ];
  const perWindow = windows.map((w) => {
    const sec = (w.end - w.start) / 1000;
    return [
      String(w.round),
      PHASE_NAMES[w.phase],
      num(w.ok / sec, 1),
      ms(w.latency.getValueAtPercentile(50)),
      ms(w.latency.getValueAtPercentile(99)),
      w.flood ? num(w.flood.sent / w.flood.seconds, 0) : '',
      w.flood ? num((w.server?.ok['a'] ?? NaN) / sec, 1) : '',
      w.cpu ? `${num(w.cpu.client, 2)} + ${num(w.cpu.server, 2)} + ${num(w.aCpu, 2)} + ${num(w.cpu.other, 2)}${w.cpu.other > DISTURBED ? ' (disturbed)' : ''}` : '',
      num((w.server?.computeSeconds['b'] ?? NaN) / sec, 3),
      num((w.server?.computeSeconds['a'] ?? 0) / sec, 3),
    ];
  });
  const windowLength = windows[0] ? (windows[0].end - windows[0].start) / 1000 : NaN;
  const md = [
    `Model \`${MODEL}\` (784→1024×3→10, FP32), max_batch_size ${MAX_BATCH}, dynamic batching with max_queue_delay ${QUEUE_DELAY_US} µs, one CPU instance` +
      (o.intraOpThreads > 0
        ? ` with intra_op_thread_count ${o.intraOpThreads} (ONNX Runtime on ${o.intraOpThreads} core${o.intraOpThreads > 1 ? 's' : ''}; the gateway and the clients share the rest)`
        : ` with ONNX Runtime's thread per core`) +
      '; ' +
      `the gateway runs with --tenants: A has a quota of ${A_QUOTA} requests/s, B has none, both weight 1.`,
    '',
    `B sends a steady open loop: Poisson arrivals at ${B_RATE} requests/s, batch-1 requests, the same seeded arrivals in every window. ` +
      `A, from its own process, floods at ${A_FLOOD} requests/s (10× its quota, Poisson) during the "A floods" windows, sends at its quota during "A at quota", and nothing during "B alone". ` +
      `${rounds} rounds of three ${num(windowLength)} s windows, in an order that puts each kind of window in each place equally often, after a ${num(o.warmupMs / 1000)} s warm-up; A starts ${SETTLE_MS / 1000} s before its window opens (its burst passes first). ` +
      "B's latency is measured at B's client from the call to its answer; each window counts every request B sent in it. " +
      `The verdict pools B's latencies over the windows of each kind, leaving out rounds in which other work on the machine kept more than ${DISTURBED} cores busy.`,
    '',
    '## B alone against B while A floods',
    '',
    mdTable(['B', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'answers', 'errors'], [
      row('alone', alone),
      row(`while A sends at its quota (${A_QUOTA}/s)`, atQuota),
      row(`while A floods (${A_FLOOD}/s)`, flooded),
    ]),
    `- **B's p99 while A floods: ${signedPercent(p99Change)}** against B alone (target: less than ${100 * P99_LIMIT} %).`,
    `- For comparison, while A sends at its quota (its fair share, nothing refused) B's p99 moves ${signedPercent(atQuota.p99Us / alone.p99Us - 1)}.`,
    `- **B's throughput while A floods: ${signedPercent(throughputChange)}** (target: less than ${100 * THROUGHPUT_LIMIT} %). ` +
      'Throughput is successful answers per second for the same offered arrivals, so it moves only when B loses requests.',
    verdict
      ? `- Rounds in the verdict: ${rounds - disturbedRounds.size} of ${rounds}` +
        (disturbedRounds.size > 0
          ? ` (left out, other work above ${DISTURBED} cores: round ${[...disturbedRounds].join(', ')}; with them, p99 ${signedPercent(all.flooded.p99Us / all.alone.p99Us - 1)})`
          : '') +
        '.'
      : `- Every round was disturbed (other work above ${DISTURBED} cores): the figures above are over all rounds, and there is no verdict. Rerun on an idle machine.`,
    `- A sent ${num(aSent / floodSeconds, 1)} requests/s; the gateway served ${num(aServedInWindows / windowSeconds, 1)}/s of them inside the windows (quota ${A_QUOTA}/s) and refused ${num(aRefused / floodSeconds, 1)}/s with RESOURCE_EXHAUSTED.`,
    `- Compute share (fabriek_tenant_compute_seconds_total) while A floods: B ${num(compute('b', 'flood'), 2)} s, A ${num(compute('a', 'flood'), 2)} s; B alone: ${num(compute('b', 'alone'), 2)} s.`,
    `- Noise floor: B alone in even rounds against B alone in odd rounds moves p99 by ${signedPercent(noiseP99)}; changes of that size are within this machine's noise.`,
    `- Result: **${!verdict ? 'no verdict (machine busy)' : met ? 'met' : 'not met'}**${errorsFree ? '' : ' (B had errors or wrong answers)'}.`,
    '',
    '## Every window',
    '',
    mdTable(
      ['round', 'window', 'B req/s', 'B p50 ms', 'B p99 ms', 'A sent/s', 'A served/s', 'CPU cores B + server + A + other', 'B compute s/s', 'A compute s/s'],
      perWindow,
    ),
    '"CPU cores": CPU time over the window divided by its length, for B\'s load generator (this process), the gateway with its worker, A\'s process, and everything else on the machine. ' +
      "A's process runs at nice 19: on a real deployment its client is elsewhere, and here it should not take cores from the server (whose cost of refusing A is all counted). " +
      '"compute s/s": each tenant\'s share of batch execution time per second, from the gateway\'s metrics. ' +
      "A p99 from one window rests on about 15 samples: compare windows only roughly.",
    '',
  ];
  if (stderr.trim()) md.push('Gateway stderr:', '', '```', stderr.trim().slice(-3000), '```', '');
  const json = {
    scenario: 'fairness',
    model: MODEL,
    settings: { intraOpThreads: o.intraOpThreads, warmupMs: o.warmupMs, maxBatch: MAX_BATCH, queueDelayUs: QUEUE_DELAY_US, bRate: B_RATE, aQuota: A_QUOTA, aFlood: A_FLOOD, rounds, settleMs: SETTLE_MS, disturbedCores: DISTURBED },
    alone,
    atQuota,
    flooded,
    p99Change,
    throughputChange,
    noiseP99,
    disturbedRounds: [...disturbedRounds],
    verdict,
    met,
    errorsFree,
    windows: windows.map((w) => ({
      round: w.round,
      phase: w.phase,
      seconds: (w.end - w.start) / 1000,
      ok: w.ok,
      errors: w.errors,
      wrong: w.wrong,
      p50Us: w.latency.getValueAtPercentile(50),
      p99Us: w.latency.getValueAtPercentile(99),
      cpu: w.cpu,
      aCpu: w.aCpu,
      flood: w.flood,
      server: w.server,
    })),
  };
  for (const w of windows) w.latency.destroy();
  // The run is sound when every answer of B was right; whether the target was met is in the report.
  return { json, markdown: md.join('\n'), ok: errorsFree };
}
