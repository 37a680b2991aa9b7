// One load level (a concurrency, or a request rate) measured end to end:
// the loop, the windows, and at each window boundary the server's
// statistics and the CPU counters, so the figures for the merged windows
// come with the server's own breakdown and with who used the cores.
import { type InferenceClient, type InferResult, type PreparedInfer } from '../../client/inference-client.js';
import { type InferInput } from '../../client/typed-tensors.js';
import { type ModelStatistics } from '../../proto/gen/inference.js';
import { type CpuReading, type CpuShare, cpuReading, cpuShare } from './child-server.js';
import { type Send, closedLoop } from './closed-loop.js';
import { type PreparedSender } from './h2-grpc-infer.js';
import { type LatencySummary } from './histogram.js';
import { type InputPlan } from './input-data.js';
import { openLoop } from './open-loop.js';
import { type Distribution } from './schedule.js';
import { type ServerStatsDelta, statsDelta } from './server-stats.js';
import { type WindowHooks, type WindowOptions, type WindowResult } from './windows.js';

export type LoadLevel =
  | { readonly mode: 'concurrency'; readonly value: number }
  | { readonly mode: 'request-rate'; readonly value: number; readonly distribution: Distribution };

export interface LevelResult {
  /** Which server: 'fabriek', 'grpc-echo', 'batching off', … */
  readonly series: string;
  readonly model: string;
  readonly protocol: 'grpc' | 'http';
  readonly mode: LoadLevel['mode'];
  /** Concurrency, or the request rate offered (per second). */
  readonly value: number;
  readonly distribution?: Distribution;
  readonly batchSize: number;
  /** Did the last windows agree within the stability percentage? */
  readonly stable: boolean;
  /** Windows measured; the figures merge the last few (perf_analyzer: 3). */
  readonly trials: number;
  readonly seconds: number;
  readonly requests: number;
  readonly requestsPerSecond: number;
  readonly inferPerSecond: number;
  readonly goodputPerSecond: number;
  readonly latency: LatencySummary;
  readonly errors: Readonly<Record<string, number>>;
  readonly errorCount: number;
  readonly firstError?: string;
  /** ModelStatistics delta over the merged windows; absent when the server gives none. */
  readonly server?: ServerStatsDelta;
  readonly cpu?: CpuShare;
  /**
   * CPU time of the server's process tree per answered request, in µs, over
   * the merged windows (from /proc). Steadier than req/s on a shared machine:
   * neighbours slow the server down but hardly change what a request costs it.
   */
  readonly serverCpuUsPerRequest?: number;
  /** Open loop: how late sends left against the schedule. */
  readonly sendLag?: LatencySummary;
  readonly windows: readonly WindowResult[];
  /** Which round of `fabriek bench --rounds N` (above 1); absent with one round. */
  readonly round?: number;
}

export interface LevelRunOptions {
  readonly series: string;
  readonly model: string;
  readonly protocol: 'grpc' | 'http';
  readonly batchSize: number;
  readonly send: Send;
  readonly warmupMs: number;
  readonly windows: WindowOptions;
  /** Reads the model's statistics (undefined: the server has none). */
  readonly stats?: () => Promise<readonly ModelStatistics[] | undefined>;
  /** The server's process, whose CPU time is metered (a child of this one). */
  readonly serverPid?: number;
  readonly seed?: number;
  /** Open loop: requests in flight at most (see DEFAULT_MAX_OUTSTANDING). */
  readonly maxOutstanding?: number;
  readonly onWindow?: WindowHooks['onWindow'];
}

/**
 * Sends request `seq` through `client` with the plan's inputs; `check` may
 * throw to fail a wrong answer. Fixed input sets go through `o.prepared`
 * (default: the client itself), encoded once.
 */
export function inferSender(
  client: InferenceClient,
  model: string,
  plan: InputPlan,
  o: {
    readonly timeoutMs: number;
    readonly version?: string;
    readonly check?: (seq: number, result: InferResult) => void;
    readonly prepared?: PreparedSender;
    /** A stateful model: each caller sends sequences of this many requests (perf_analyzer's --sequence-length). */
    readonly sequenceLength?: number;
  },
): Send {
  const version = o.version ? { version: o.version } : {};
  if (o.sequenceLength !== undefined && o.sequenceLength > 0) return sequenceSender(client, model, plan, o.sequenceLength, { timeoutMs: o.timeoutMs, ...version, check: o.check });
  const inputsFor = plan.inputsFor;
  if (inputsFor) {
    return async (seq, signal) => {
      const result = await client.infer(model, inputsFor(seq), { signal, timeoutMs: o.timeoutMs, ...version });
      o.check?.(seq, result);
    };
  }
  // Fixed input sets are encoded once: a load generator that re-encodes and
  // copies every tensor per request (600 KB images at hundreds a second)
  // spends the cores it shares with the server, and under overload its own
  // event loop, busy encoding, stops writing what it has encoded.
  const sender = o.prepared ?? client;
  const prepared = plan.sets.map((inputs) => sender.prepareInfer(model, inputs, version));
  const n = prepared.length;
  if (n === 0) throw new Error('the input plan has no input sets');
  return async (seq, signal) => {
    const result = await sender.inferPrepared(prepared[seq % n] as PreparedInfer, { signal, timeoutMs: o.timeoutMs });
    o.check?.(seq, result);
  };
}

/**
 * Each closed-loop caller runs one sequence at a time: `length` requests with
 * sequence_id, START on the first and END on the last, then a new sequence
 * with a new ID. IDs start from the clock, so a run does not continue a
 * sequence an earlier run left open. Requests are encoded each time (their
 * parameters change), not prepared.
 */
function sequenceSender(
  client: InferenceClient,
  model: string,
  plan: InputPlan,
  length: number,
  o: { readonly timeoutMs: number; readonly version?: string; readonly check?: ((seq: number, result: InferResult) => void) | undefined },
): Send {
  const version = o.version ? { version: o.version } : {};
  const callers = new Map<number, { id: number; step: number }>();
  let nextId = Math.floor(Date.now() / 1000) * 1000;
  const inputsFor = plan.inputsFor ?? ((seq: number) => plan.sets[seq % plan.sets.length] as readonly InferInput[]);
  if (!plan.inputsFor && plan.sets.length === 0) throw new Error('the input plan has no input sets');
  return async (seq, signal, caller) => {
    if (caller === undefined) throw new Error('sequences need a closed loop: each caller keeps its own sequence');
    let at = callers.get(caller);
    if (at === undefined || at.step >= length) {
      at = { id: ++nextId, step: 0 };
      callers.set(caller, at);
    }
    const step = at.step++;
    const sequence = { id: at.id, start: step === 0, end: step === length - 1 };
    const result = await client.infer(model, inputsFor(seq), { signal, timeoutMs: o.timeoutMs, sequence, ...version });
    o.check?.(seq, result);
  };
}

export async function runLevel(level: LoadLevel, o: LevelRunOptions): Promise<LevelResult> {
  const stats: Promise<readonly ModelStatistics[] | undefined>[] = [];
  const cpu: CpuReading[] = [];
  const hooks: WindowHooks = {
    onBoundary: (i) => {
      cpu[i] = cpuReading(o.serverPid);
      if (o.stats) stats[i] = o.stats();
    },
    ...(o.onWindow ? { onWindow: o.onWindow } : {}),
  };
  const windows = { ...o.windows, rowsPerRequest: o.batchSize };
  const measured =
    level.mode === 'concurrency'
      ? await closedLoop({ concurrency: level.value, warmupMs: o.warmupMs, send: o.send, windows, hooks })
      : await openLoop({
          rate: level.value,
          distribution: level.distribution,
          seed: o.seed ?? 1,
          warmupMs: o.warmupMs,
          send: o.send,
          windows,
          hooks,
          ...(o.maxOutstanding !== undefined ? { maxOutstanding: o.maxOutstanding } : {}),
        });
  const last = measured.trials.length;
  const from = measured.mergedFrom;
  const server = o.stats ? statsDelta(await stats[from], await stats[last]) : undefined;
  const a = cpu[from];
  const b = cpu[last];
  return {
    series: o.series,
    model: o.model,
    protocol: o.protocol,
    mode: level.mode,
    value: level.value,
    ...(level.mode === 'request-rate' ? { distribution: level.distribution } : {}),
    batchSize: o.batchSize,
    stable: measured.stable,
    trials: last,
    seconds: measured.seconds,
    requests: measured.requests,
    requestsPerSecond: measured.requestsPerSecond,
    inferPerSecond: measured.inferPerSecond,
    goodputPerSecond: measured.goodputPerSecond,
    latency: measured.latency,
    errors: measured.errors,
    errorCount: Object.values(measured.errors).reduce((x, y) => x + y, 0),
    ...(measured.firstError !== undefined ? { firstError: measured.firstError } : {}),
    ...(server !== undefined ? { server } : {}),
    ...(a && b ? { cpu: cpuShare(a, b) } : {}),
    ...(a && b && o.serverPid !== undefined && measured.requests > 0 ? { serverCpuUsPerRequest: ((b.server - a.server) * 1e6) / measured.requests } : {}),
    ...('sendLag' in measured ? { sendLag: (measured as { sendLag: LatencySummary }).sendLag } : {}),
    windows: measured.trials,
  };
}
