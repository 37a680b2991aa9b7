import { parseArgs } from 'node:util';
import { DISTURBED_CORES, cpuMeter } from './load/child-server.js';
import { describeRun, runInfo, saveResults } from './load/report.js';
import { BATCHING_MODELS, type BatchingModel, runBatching } from './scenarios/batching.js';
import { runHttp } from './scenarios/http.js';
import { runLatency } from './scenarios/latency.js';
import { runFairness } from './scenarios/fairness.js';

const USAGE = `Usage: node dist/bench/cli.js <scenario> [options]

Scenarios (each starts its own servers on 127.0.0.1 and stops them):
  batching   issue #3: MLP throughput/latency at concurrency 1, 8, 64 with
             dynamic batching on and off, beside raw ONNX Runtime at batch 1, 8, 64
  latency    issue #2: identity_fp32 at concurrency 1 and 64, beside a bare grpc-js echo server
  http       issue #4: autocannon on the REST infer endpoint; /metrics must equal the answers counted
  fairness   issue #7: tenant B's steady load alone and while tenant A floods at 10× its quota

Options:
  --duration S          measurement window per load level (default 10)
  --warmup S            warm-up before each window (default 2)
  --concurrency LIST    e.g. 1,8,64 (default: 1,8,64 batching; 1,64 latency)
  batching only:
  --models LIST         mlp_large,mlp (default both)
  --queue-delay-us LIST max_queue_delay_microseconds; several = one batching-on run each (default 1000)
  --instances N         CPU instances per model, on and off alike (default 1)
  --raw-duration S      raw ONNX Runtime time per batch size (default: half of --duration)

Results: bench/results/<scenario>-<timestamp>.{json,md} and bench/results/latest-<scenario>.md.
`;

class UsageError extends Error {}

function list(flag: string, raw: string): number[] {
  const values = raw.split(',').map(Number);
  if (values.some((v) => !Number.isInteger(v) || v < 1)) throw new UsageError(`--${flag}: expected positive integers, got '${raw}'`);
  return values;
}

function seconds(flag: string, raw: string): number {
  const s = Number(raw);
  if (!Number.isFinite(s) || s < 0 || s > 600) throw new UsageError(`--${flag}: expected seconds from 0 to 600, got '${raw}'`);
  return s * 1000;
}

const isModel = (m: string): m is BatchingModel => Object.hasOwn(BATCHING_MODELS, m);

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        duration: { type: 'string', default: '10' },
        warmup: { type: 'string', default: '2' },
        concurrency: { type: 'string' },
        models: { type: 'string', default: 'mlp_large,mlp' },
        'queue-delay-us': { type: 'string', default: '1000' },
        instances: { type: 'string', default: '1' },
        'raw-duration': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  const scenario = positionals[0];
  if (values.help || (scenario !== 'batching' && scenario !== 'latency' && scenario !== 'http' && scenario !== 'fairness')) {
    process.stdout.write(USAGE);
    return values.help ? 0 : 2;
  }
  const durationMs = seconds('duration', values.duration);
  const warmupMs = seconds('warmup', values.warmup);
  const concurrencies = list('concurrency', values.concurrency ?? (scenario === 'batching' ? '1,8,64' : '1,64'));
  const models = values.models.split(',');
  const unknown = models.filter((m) => !isModel(m));
  if (unknown.length > 0) throw new UsageError(`--models: unknown ${unknown.join(', ')}; known: ${Object.keys(BATCHING_MODELS).join(', ')}`);
  const queueDelaysUs = list('queue-delay-us', values['queue-delay-us']);
  const instances = list('instances', values.instances)[0] ?? 1;
  const rawDurationMs = values['raw-duration'] !== undefined ? seconds('raw-duration', values['raw-duration']) : durationMs / 2;
  const log = (line: string): void => void process.stderr.write(line + '\n');
  const info = runInfo();
  log(describeRun(info));
  // A 2-core machine shared with builds and tests: say so before measuring.
  const idle = cpuMeter();
  idle.start();
  await new Promise((r) => setTimeout(r, 1_000));
  const busy = idle.stop().other;
  if (busy > DISTURBED_CORES) log(`warning: other processes are using ${busy.toFixed(2)} cores; figures will be low (levels affected are marked DISTURBED)`);

  // However the servers behave, the run ends: a watchdog well past the planned time.
  const levels = scenario === 'batching' ? models.length * concurrencies.length * (1 + queueDelaysUs.length) : 2 * concurrencies.length;

  const rawMs = scenario === 'batching' ? models.length * 3 * rawDurationMs : 0;
  const watchdog = setTimeout(() => {
    log('bench: watchdog expired; stopping');
    process.exit(124);
  }, 2 * (levels * (durationMs + warmupMs + 5_000) + rawMs) + 300_000);
  watchdog.unref();

  let report: { json: unknown; markdown: string; ok: boolean };
  if (scenario === 'batching') {
    report = await runBatching({ models: models.filter(isModel), concurrencies, rawBatchSizes: [1, 8, 64], queueDelaysUs, instances, warmupMs, durationMs, rawDurationMs, log });
  } else if (scenario === 'latency') {
    report = await runLatency({ concurrencies, warmupMs, durationMs, log });
  } else if (scenario === 'fairness') {
    report = await runFairness({ warmupMs, durationMs, log });
  } else {
    report = await runHttp({ concurrencies, durationMs, log });
  }
  const title =
    scenario === 'batching'
      ? '# Dynamic batching (issue #3)'
      : scenario === 'latency'
        ? '# Gateway latency and overhead (issue #2)'
        : scenario === 'fairness'
          ? '# Fairness between tenants (issue #7)'
          : '# HTTP/REST under autocannon (issue #4)';
  const markdown = `${title}\n\n${describeRun(info)}\n\n${report.markdown}`;
  const paths = saveResults(scenario, { info, ...(report.json as object) }, markdown);
  process.stdout.write(markdown);
  log(`saved ${paths.join(', ')}`);
  if (!report.ok) log('bench: some answers were wrong or some requests failed (see the table)');
  return report.ok ? 0 : 1;
}

// Ctrl-C or a kill: exit, and the exit hook stops servers and removes temp dirs.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n\n${USAGE}`);
      process.exit(2);
    }
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
