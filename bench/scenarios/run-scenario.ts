// `fabriek bench batching|http|fairness|slo-goodput|noisy-neighbour|overload|ragged`: the fixed scenarios of issues #3, #4, #7 and #15, and ragged batching,
// with their own options (a fixed window per level, every answer checked).
import { parseArgs } from 'node:util';
import { describeRun, runInfo, saveRun } from '../history.js';
import { parsed, splitServeFlags } from '../options.js';
import { UsageError } from '../bench-errors.js';
import { BATCHING_MODELS, type BatchingModel, runBatching } from './batching.js';
import { fairnessWindows, runFairness } from './fairness.js';
import { runHttp } from './http.js';
import { SLO_GOODPUT_DEFAULTS, runSloGoodput } from './slo-goodput.js';
import { NOISY_NEIGHBOUR_MODELS, runNoisyNeighbour } from './noisy-neighbour.js';
import { runOverload } from './overload.js';
import { RAGGED_DEFAULTS, runRagged } from './ragged.js';

export const SCENARIO_USAGE = `Usage: fabriek bench batching|http|fairness|slo-goodput|noisy-neighbour|overload|ragged [options]

  batching   issue #3: MLP throughput/latency at concurrency 1, 8, 64 with
             dynamic batching on and off, beside raw ONNX Runtime at batch 1, 8, 64
  http       issue #4: autocannon on the REST infer endpoint; /metrics must equal the answers counted
  fairness   issue #7: tenant B's steady load alone, while tenant A sends at its quota, and while
             A floods at 10× its quota, in rounds (about 5 min)
  slo-goodput issue #15: capacity of MLP 784→2048×4→10, then Poisson arrivals at 50/100/150 % of it
             against batching_slo_ms and fixed max_queue_delay 0, 1, 2, 5 ms: goodput within the SLO,
             shed counts, and a goodput chart (about 2 min a round)
  noisy-neighbour issue #15: tenant B's 10 images/s to ResNet-18 alone and while tenant A (same
             weight, no quota) keeps 200 requests outstanding; fixed batching and the SLO mode
             (about 5 min at the defaults)
  overload   issue #15: resnet_small's capacity (closed loop at 16), then Poisson arrivals at 70 % of
             it and at --factor times it (up to 5,000 outstanding), fixed batching and the SLO mode each
             on a fresh gateway: goodput, p99, refusal latency, RSS peak, SIGTERM (about 2 min)
  ragged     requests of 1 to --max-length values, per-item sums: ragged batching (ragged_sum) against
             the client padding to the longest, and against unpadded requests that batch only by equal
             length (row_sum), alternating rounds on one gateway (about 1 min)

Options:
  --duration S          measurement window per load level (default 10; slo-goodput 4)
  --warmup S            warm-up before each window (default 2; fairness: once, before the rounds, default 10;
                        slo-goodput 1.5)
  --concurrency LIST    e.g. 1,8,64 (default: 1,8,64 batching; 1,64 http)
  --results-dir DIR     history folder (default bench/results)
  batching only:
  --models LIST         mlp_large,mlp (default both)
  --queue-delay-us LIST max_queue_delay_microseconds; several = one batching-on run each (default 1000)
  --instances N         CPU instances per model, on and off alike (default 1)
  --raw-duration S      raw ONNX Runtime time per batch size (default: half of --duration)
  fairness only:
  --rounds N            rounds of the three windows (default 8)
  slo-goodput only:
  --slo-ms MS           the SLO: batching_slo_ms of the SLO mode, and what goodput counts (default 25)
  --loads LIST          offered loads in % of the measured capacity (default 50,100,150)
  --capacity N          the 100 % level in req/s instead of the capacity measured (the same arrivals
                        for builds compared side by side; the capacity is still measured and shown)
  --rounds N            sweeps of every load and mode; each figure is the median over them (default 1)
  --fixed-delays-us LIST  the fixed modes' max_queue_delay_microseconds; the first is the default the
                        ratios divide by (default 0,1000,2000,5000)
  noisy-neighbour only:
  --model NAME          resnet18 (issue #15's: compute-bound, ~90 images/s on 2 cores; default) or
                        resnet_small (1/16 of its compute: the flood is bound by the gateway's transport)
  --rounds N            rounds of a window alone and one with A (default 6: each p99 pooled over about 600 of B's requests)
  --slo-ms MS           batching_slo_ms of the SLO-mode model (default 200)
  --b-deadline-ms MS    tenant B's own gRPC deadline (default 30000); a B request that fails (shed,
                        deadline exceeded) counts as slower than any answer in B's p99
  ragged only:
  --max-length N        the longest request, in values (default 256)
  --rounds N            rounds of the three variants (default 3)
  --concurrency C       closed-loop clients (default 32)
  overload only:
  --factor X            the overload level in multiples of the measured capacity (default 5)
  --offered-rate N      the overload level in images/s instead (the same arrivals for builds compared
                        side by side, whatever capacity each measured)
  --slo-ms MS           batching_slo_ms of the SLO mode, and what goodput counts (default 300)
  --deadline-ms MS      each request's own gRPC deadline (default 5000)
  --max-queue-size N    Triton's default_queue_policy max_queue_size for both modes (default 0: the
                        queue is bounded only by the gateway's admission)
  --rounds N            rounds of both modes in turn, each run on a fresh gateway; the verdicts go by
                        each mode's medians (default 1; about a minute a mode a round)
  fairness and overload:
  --intra-op-threads N  the model's intra_op_thread_count: 1 = one core for ONNX Runtime, the other
                        for the gateway and the clients (fairness's default); 0 = Fabriek's default,
                        a thread per core (overload's)
  noisy-neighbour, overload and slo-goodput:
  --max-inflight-wait-ms MS  the gateways' admission bound in time (default 0: off; see fabriek serve)
  -- FLAGS              last: more 'fabriek serve' flags, e.g. -- --local-workers in-process

Results: bench/results/<timestamp>-<scenario>.{json,md} and bench/results/latest-<scenario>.{json,md}
(slo-goodput: and .svg, goodput against offered load).
`;

function list(flag: string, raw: string): number[] {
  const values = raw.split(',').map(Number);
  if (values.some((v) => !Number.isInteger(v) || v < 1)) throw new UsageError(`--${flag}: expected positive integers, got '${raw}'`);
  return values;
}

/** A flag of one positive integer: a list is refused, not cut to its first value. */
function one(flag: string, raw: string): number {
  const [value, ...rest] = list(flag, raw);
  if (value === undefined || rest.length > 0) throw new UsageError(`--${flag}: expected one positive integer, got '${raw}'`);
  return value;
}

/** --fixed-delays-us: max_queue_delay_microseconds values, 0 allowed; the first is the default the ratios divide by. */
function delays(raw: string): number[] {
  const parts = raw.split(',');
  // Number('') is 0: an empty entry must not pass as a delay of 0.
  const values = parts.map((p) => (/^\d+$/.test(p.trim()) ? Number(p) : NaN));
  if (values.some((v) => !Number.isSafeInteger(v) || v > 10_000_000)) {
    throw new UsageError(`--fixed-delays-us: expected integers from 0 to 10000000, got '${raw}'`);
  }
  // Each delay is one model of its own (delay_<µs>): the same one twice would be one model measured twice.
  if (new Set(values).size !== values.length) throw new UsageError(`--fixed-delays-us: a delay is listed twice in '${raw}'`);
  return values;
}

function seconds(flag: string, raw: string): number {
  const s = Number(raw);
  if (!Number.isFinite(s) || s < 0 || s > 600) throw new UsageError(`--${flag}: expected seconds from 0 to 600, got '${raw}'`);
  return s * 1000;
}

const isModel = (m: string): m is BatchingModel => Object.hasOwn(BATCHING_MODELS, m);

export async function runScenario(
  scenario: 'batching' | 'http' | 'fairness' | 'slo-goodput' | 'noisy-neighbour' | 'overload' | 'ragged',
  argv: readonly string[],
  log: (line: string) => void,
  watchdog: (ms: number) => void,
  warnIfBusy: () => Promise<void>,
): Promise<number> {
  const { own, serveFlags } = splitServeFlags(argv);
  const { values } = parsed(() =>
    parseArgs({
      args: own,
      options: {
        duration: { type: 'string' },
        warmup: { type: 'string' },
        concurrency: { type: 'string' },
        models: { type: 'string', default: 'mlp_large,mlp' },
        'queue-delay-us': { type: 'string', default: '1000' },
        instances: { type: 'string', default: '1' },
        'raw-duration': { type: 'string' },
        rounds: { type: 'string' },
        'intra-op-threads': { type: 'string' },
        'slo-ms': { type: 'string' },
        loads: { type: 'string' },
        'fixed-delays-us': { type: 'string' },
        'b-deadline-ms': { type: 'string' },
        model: { type: 'string', default: 'resnet18' },
        factor: { type: 'string', default: '5' },
        'offered-rate': { type: 'string' },
        capacity: { type: 'string' },
        'deadline-ms': { type: 'string', default: '5000' },
        'max-queue-size': { type: 'string' },
        'max-length': { type: 'string', default: String(RAGGED_DEFAULTS.maxLength) },
        'max-inflight-wait-ms': { type: 'string', default: '0' },
        'results-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (values.help) {
    process.stdout.write(SCENARIO_USAGE);
    return 0;
  }
  const slo = scenario === 'slo-goodput';
  const ragged = scenario === 'ragged';
  const durationMs = seconds('duration', values.duration ?? (slo ? String(SLO_GOODPUT_DEFAULTS.durationMs / 1000) : ragged ? String(RAGGED_DEFAULTS.durationMs / 1000) : '10'));
  const warmupMs = seconds('warmup', values.warmup ?? (scenario === 'fairness' ? '10' : slo ? String(SLO_GOODPUT_DEFAULTS.warmupMs / 1000) : ragged ? String(RAGGED_DEFAULTS.warmupMs / 1000) : '2'));
  const noisy = scenario === 'noisy-neighbour';
  const overload = scenario === 'overload';
  const sloMs = Number(values['slo-ms'] ?? (noisy ? '200' : overload ? '300' : String(SLO_GOODPUT_DEFAULTS.sloMs)));
  if (!Number.isFinite(sloMs) || sloMs <= 0 || sloMs > 60_000) throw new UsageError(`--slo-ms: expected ms from 0 to 60000, got '${values['slo-ms']}'`);
  const rounds = one('rounds', values.rounds ?? (noisy ? '6' : ragged ? String(RAGGED_DEFAULTS.rounds) : overload ? '1' : '8'));
  const bDeadlineMs = Number(values['b-deadline-ms'] ?? '30000');
  if (!Number.isFinite(bDeadlineMs) || bDeadlineMs <= 0 || bDeadlineMs > 60_000) {
    throw new UsageError(`--b-deadline-ms: expected ms from 0 to 60000, got '${values['b-deadline-ms']}'`);
  }
  const noisyModel = NOISY_NEIGHBOUR_MODELS.find((m) => m === values.model);
  if (noisyModel === undefined) throw new UsageError(`--model: expected ${NOISY_NEIGHBOUR_MODELS.join(' or ')}, got '${values.model}'`);
  const factor = Number(values.factor);
  if (!Number.isFinite(factor) || factor < 1 || factor > 100) throw new UsageError(`--factor: expected a multiple from 1 to 100, got '${values.factor}'`);
  const offeredRate = values['offered-rate'] === undefined ? undefined : Number(values['offered-rate']);
  if (offeredRate !== undefined && (!Number.isInteger(offeredRate) || offeredRate < 1 || offeredRate > 100_000))
    throw new UsageError(`--offered-rate: expected images/s from 1 to 100000, got '${values['offered-rate']}'`);
  const deadlineMs = Number(values['deadline-ms']);
  if (!Number.isFinite(deadlineMs) || deadlineMs <= 0 || deadlineMs > 600_000) {
    throw new UsageError(`--deadline-ms: expected ms from 0 to 600000, got '${values['deadline-ms']}'`);
  }
  const maxInflightWaitMs = Number(values['max-inflight-wait-ms']);
  if (!Number.isInteger(maxInflightWaitMs) || maxInflightWaitMs < 0 || maxInflightWaitMs > 3_600_000) {
    throw new UsageError(`--max-inflight-wait-ms: expected ms from 0 to 3600000, got '${values['max-inflight-wait-ms']}'`);
  }
  const maxQueueSize = Number(values['max-queue-size'] ?? '0');
  if (!Number.isInteger(maxQueueSize) || maxQueueSize < 0 || maxQueueSize > 1_000_000) {
    throw new UsageError(`--max-queue-size: expected requests from 0 to 1000000, got '${values['max-queue-size']}'`);
  }
  // Fairness gives ONNX Runtime one core of two by default; overload keeps Fabriek's default unless asked.
  const intraOpThreads = Number(values['intra-op-threads'] ?? (scenario === 'fairness' ? '1' : '0'));
  if (!Number.isInteger(intraOpThreads) || intraOpThreads < 0 || intraOpThreads > 64) {
    throw new UsageError(`--intra-op-threads: expected 0 to 64, got '${values['intra-op-threads']}'`);
  }
  const concurrencies = list('concurrency', values.concurrency ?? (scenario === 'batching' ? '1,8,64' : ragged ? String(RAGGED_DEFAULTS.concurrency) : '1,64'));
  const maxLength = one('max-length', values['max-length']);
  const models = values.models.split(',');
  const unknown = models.filter((m) => !isModel(m));
  if (unknown.length > 0) throw new UsageError(`--models: unknown ${unknown.join(', ')}; known: ${Object.keys(BATCHING_MODELS).join(', ')}`);
  const queueDelaysUs = list('queue-delay-us', values['queue-delay-us']);
  const instances = one('instances', values.instances);
  const rawDurationMs = values['raw-duration'] !== undefined ? seconds('raw-duration', values['raw-duration']) : durationMs / 2;
  const info = runInfo();
  log(describeRun(info));
  const levels =
    scenario === 'batching'
      ? models.length * concurrencies.length * (1 + queueDelaysUs.length)
      : scenario === 'fairness'
        ? fairnessWindows(rounds)
        : slo
          ? 2 + SLO_GOODPUT_DEFAULTS.loads.length * (1 + SLO_GOODPUT_DEFAULTS.fixedDelaysUs.length)
          : noisy
            ? 2 * 2 * rounds + 4
            : overload
              ? 2 * 3 * rounds
              : ragged
                ? 3 * rounds
                : concurrencies.length;
  const rawMs = scenario === 'batching' ? models.length * 3 * rawDurationMs : 0;
  watchdog(2 * (levels * (durationMs + warmupMs + 5_000) + rawMs) + 300_000);
  await warnIfBusy();

  /** Saves a scenario's report under bench/results (or --results-dir), prints it, and gives the exit code. */
  const finish = (title: string, r: { readonly json: unknown; readonly markdown: string; readonly ok: boolean }, failed: string, svg?: string): number => {
    const markdown = `${title}\n\n${describeRun(info)}\n\n${r.markdown}`;
    const record = { format: 'fabriek-bench/1' as const, kind: scenario, info, options: {}, levels: [], scenario: r.json };
    const dir = values['results-dir'];
    const saved = saveRun(record, { markdown, ...(svg !== undefined ? { svg } : {}) }, { ...(dir !== undefined ? { dir } : {}), name: scenario, latest: `latest-${scenario}` });
    process.stdout.write(markdown);
    log(`saved ${saved.join(', ')}`);
    if (!r.ok) log(`bench: ${failed}`);
    return r.ok ? 0 : 1;
  };
  if (noisy) {
    const r = await runNoisyNeighbour({ model: noisyModel, durationMs, rounds, sloMs, bDeadlineMs, maxInflightWaitMs, serveFlags, log });
    return finish("# A noisy neighbour: one tenant's latency while another floods (issue #15)", r, 'the issue #15 bar was not met by any mode (see the verdicts)');
  }
  if (overload) {
    const r = await runOverload({ factor, ...(offeredRate === undefined ? {} : { offeredRate }), sloMs, deadlineMs, maxInflightWaitMs, maxQueueSize, intraOpThreads, serveFlags, rounds, durationMs, warmupMs, log });
    return finish(`# Overload: goodput, latency and memory at ${offeredRate === undefined ? `${factor}× capacity` : `${offeredRate} images/s`} (issue #15)`, r, 'the issue #15 bar was not met by any mode (see the verdicts)');
  }
  if (ragged) {
    const r = await runRagged({ concurrency: concurrencies[0] ?? RAGGED_DEFAULTS.concurrency, maxLength, rounds, durationMs, warmupMs, serveFlags, log });
    return finish('# Ragged batching: variable-length requests with and without padding', r, 'some answers were wrong or some requests failed (see the log)');
  }
  if (slo) {
    const capacityRate = values.capacity === undefined ? undefined : Number(values.capacity);
    if (capacityRate !== undefined && (!Number.isInteger(capacityRate) || capacityRate < 1 || capacityRate > 100_000))
      throw new UsageError(`--capacity: expected req/s from 1 to 100000, got '${values.capacity}'`);
    const loads = values.loads === undefined ? SLO_GOODPUT_DEFAULTS.loads : list('loads', values.loads).map((pct) => pct / 100);
    const fixedDelaysUs = values['fixed-delays-us'] === undefined ? SLO_GOODPUT_DEFAULTS.fixedDelaysUs : delays(values['fixed-delays-us']);
    const sweeps = values.rounds === undefined ? SLO_GOODPUT_DEFAULTS.rounds : rounds;
    const r = await runSloGoodput({ ...SLO_GOODPUT_DEFAULTS, sloMs, loads, fixedDelaysUs, warmupMs, durationMs, rounds: sweeps, ...(capacityRate === undefined ? {} : { capacityRate }), serveFlags, log });
    return finish('# Goodput under an SLO: SLO-aware batching against fixed delays (issue #15)', r, 'the issue #15 bar was not met (see the verdicts)', r.svg);
  }
  const report =
    scenario === 'batching'
      ? await runBatching({ models: models.filter(isModel), concurrencies, rawBatchSizes: [1, 8, 64], queueDelaysUs, instances, warmupMs, durationMs, rawDurationMs, log })
      : scenario === 'fairness'
        ? await runFairness({ warmupMs, durationMs, rounds, intraOpThreads, log })
        : await runHttp({ concurrencies, durationMs, log });
  const title =
    scenario === 'batching'
      ? '# Dynamic batching (issue #3)'
      : scenario === 'fairness'
        ? '# Fairness between tenants (issue #7)'
        : '# HTTP/REST under autocannon (issue #4)';
  return finish(title, report, 'some answers were wrong or some requests failed (see the table)');
}
