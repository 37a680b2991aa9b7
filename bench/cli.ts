// `fabriek bench …` (= node dist/bench/cli.js …): perf mode, the suite,
// compare, and the issue #3/#4 scenarios. Every run ends by itself: each
// level is bounded in time, and a watchdog ends the process well past the
// planned length.
import { parseArgs } from 'node:util';
import { InferenceError } from '../client/errors.js';
import { comparisonText, compareRuns } from './compare.js';
import { HistoryError, loadRun } from './history.js';
import { DISTURBED_CORES, cpuMeter } from './load/child-server.js';
import { InputDataError } from './load/input-data.js';
import { PERF_USAGE, parsePerfArgs, parsed, perfWatchdogMs } from './options.js';
import { BenchError, UsageError } from './bench-errors.js';
import { runPerf } from './perf.js';
import { profileCommand } from './profile/profile-run.js';
import { manyModelsCommand } from './scenarios/many-models.js';
import { runScenario } from './scenarios/run-scenario.js';
import { scalingCommand } from './scenarios/scaling.js';
import { SUITE_DEFAULTS, SUITE_QUICK, runSuite } from './suite.js';

const SUITE_USAGE = `Usage: fabriek bench suite [--quick] [--rounds N] [--measurement-interval MS] [--max-trials N] [--results-dir DIR] [--no-save]

P1–P5 of issues #5 and #12 with grpc-echo, raw ONNX Runtime and batching-off baselines measured
in the same run; writes bench/results/latest.{md,json,csv,svg} and a dated copy.
  --quick    1 s windows, at most 4 per level, one round (about 1.5 min; default: 4 s windows,
             at most 6, 3 rounds; 5–9 min)
  --rounds N alternating rounds of grpc-echo and the server on identity_fp32; P1, P3 and P5 are
             the medians of the rounds' figures, each against the grpc-echo of its round
`;

const COMPARE_USAGE = `Usage: fabriek bench compare A.json B.json [--threshold PCT]

Compares two saved runs level by level (infer/s, p99, errors) and metric by metric (P1–P4).
Exits 1 and lists the regressions worse than PCT % (default 10).
`;

const log = (line: string): void => void process.stderr.write(line + '\n');

function watchdog(ms: number): void {
  setTimeout(() => {
    log(`bench: watchdog expired after ${Math.round(ms / 1000)} s; stopping`);
    process.exit(124);
  }, ms).unref();
}

/** A 2-core machine shared with builds and tests: say so before measuring. */
async function warnIfBusy(): Promise<void> {
  const idle = cpuMeter();
  idle.start();
  await new Promise((r) => setTimeout(r, 1_000));
  const busy = idle.stop().other;
  if (busy > DISTURBED_CORES) log(`warning: other processes are using ${busy.toFixed(2)} cores; figures will be low (levels affected are marked DISTURBED)`);
}

async function compare(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parsed(() =>
    parseArgs({ args: [...argv], allowPositionals: true, options: { threshold: { type: 'string', default: '10' }, help: { type: 'boolean', short: 'h' } } }),
  );
  if (values.help) {
    process.stdout.write(COMPARE_USAGE);
    return 0;
  }
  if (positionals.length !== 2) throw new UsageError(`compare: expected two result files, got ${positionals.length}\n\n${COMPARE_USAGE}`);
  const threshold = Number(values.threshold);
  if (!Number.isFinite(threshold) || threshold < 0) throw new UsageError(`--threshold: expected a percentage ≥ 0, got '${values.threshold}'`);
  const a = loadRun(positionals[0] as string);
  const b = loadRun(positionals[1] as string);
  const result = compareRuns(a, b, threshold);
  process.stdout.write(comparisonText(a, b, result, threshold));
  return result.regressions.length > 0 ? 1 : 0;
}

async function suite(argv: readonly string[]): Promise<number> {
  const { values } = parsed(() =>
    parseArgs({
      args: [...argv],
      options: {
        quick: { type: 'boolean', default: false },
        rounds: { type: 'string' },
        'measurement-interval': { type: 'string' },
        'max-trials': { type: 'string' },
        'results-dir': { type: 'string' },
        'no-save': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }),
  );
  if (values.help) {
    process.stdout.write(SUITE_USAGE);
    return 0;
  }
  const base = values.quick ? SUITE_QUICK : SUITE_DEFAULTS;
  const intervalMs = values['measurement-interval'] !== undefined ? Number(values['measurement-interval']) : base.intervalMs;
  const maxTrials = values['max-trials'] !== undefined ? Number(values['max-trials']) : base.maxTrials;
  if (!(intervalMs >= 100 && intervalMs <= 60_000)) throw new UsageError(`--measurement-interval: expected 100 to 60000 ms, got '${values['measurement-interval']}'`);
  if (!Number.isInteger(maxTrials) || maxTrials < 1 || maxTrials > 100) throw new UsageError(`--max-trials: expected an integer from 1 to 100, got '${values['max-trials']}'`);
  const rounds = values.rounds !== undefined ? Number(values.rounds) : base.rounds;
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new UsageError(`--rounds: expected an integer from 1 to 20, got '${values.rounds}'`);
  // 4 levels a round + 5 more + twice 5 raw batches of 1 s windows + builds and starts; twice that, plus five minutes.
  watchdog(2 * ((4 * rounds + 5) * (base.warmupMs + maxTrials * intervalMs + 10_000) + 10 * maxTrials * 1_000) + 300_000);
  await warnIfBusy();
  const outcome = await runSuite({ ...base, intervalMs, maxTrials, rounds, ...(values['results-dir'] !== undefined ? { resultsDir: values['results-dir'] } : {}), save: !values['no-save'], log });
  process.stdout.write(`\n${outcome.text}\n`);
  if (outcome.files.length > 0) log(`saved ${outcome.files.join(', ')}`);
  if (!outcome.ok) log('bench suite: some requests failed (see the notes in the report)');
  return outcome.ok ? 0 : 1;
}

async function perf(argv: readonly string[]): Promise<number> {
  const o = parsePerfArgs(argv);
  if ('help' in o) {
    process.stdout.write(PERF_USAGE);
    return 0;
  }
  watchdog(perfWatchdogMs(o));
  await warnIfBusy();
  const outcome = await runPerf(o, log);
  process.stdout.write(`\n${outcome.text}\n`);
  if (outcome.files.length > 0) log(`saved ${outcome.files.join(', ')}`);
  if (!outcome.ok) log('bench: some requests failed, or a level got no answers (see the errors column)');
  return outcome.ok ? 0 : 1;
}

async function main(argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === 'compare') return compare(rest);
  if (first === 'suite') return suite(rest);
  if (first === 'many-models') return manyModelsCommand(rest, log, watchdog);
  if (first === 'scaling') return scalingCommand(rest, log, watchdog);
  if (first === 'profile') return profileCommand(rest, log, watchdog);
  if (first === 'batching' || first === 'http' || first === 'fairness' || first === 'slo-goodput' || first === 'noisy-neighbour' || first === 'overload' || first === 'ragged') {
    return runScenario(first, rest, log, watchdog, warnIfBusy);
  }
  if (first === undefined || first === 'help') {
    process.stdout.write(PERF_USAGE);
    return first === undefined ? 2 : 0;
  }
  return perf(argv);
}

// Ctrl-C or a kill: exit, and the exit hook stops servers and removes temp dirs.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError || error instanceof InputDataError || error instanceof HistoryError) {
      process.stderr.write(`fabriek bench: ${error.message}\n${error instanceof UsageError ? `\n${PERF_USAGE}` : ''}`);
      process.exit(2);
    }
    // The server's answer (an unknown model, a refused request) is the user's to read, not a stack to debug.
    if (error instanceof InferenceError) process.stderr.write(`fabriek bench: the server refused: ${error.message}\n`);
    else if (error instanceof BenchError) process.stderr.write(`fabriek bench: ${error.message}\n`);
    else process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
