// `fabriek bench fairness`: issue #7's fairness scenario with its own two options.
import { parseArgs } from 'node:util';
import { describeRun, runInfo, saveRun } from '../history.js';
import { UsageError } from '../options.js';
import { FAIRNESS_WINDOWS, runFairness } from './fairness.js';

export const FAIRNESS_USAGE = `Usage: fabriek bench fairness [--duration S] [--warmup S]

  issue #7: tenant B's steady load alone, while tenant A sends at its quota, and while A
  floods at 10× its quota, in rounds; B's p99 and throughput against B alone

  --duration S   each window (default 10)
  --warmup S     before the first round (default 2)

Results: bench/results/<timestamp>-fairness.{json,md} and bench/results/latest-fairness.{json,md}.
`;

function seconds(flag: string, raw: string): number {
  const s = Number(raw);
  if (!Number.isFinite(s) || s <= 0 || s > 600) throw new UsageError(`--${flag}: expected seconds from 0 to 600, got '${raw}'`);
  return s * 1000;
}

export async function runFairnessCommand(
  argv: readonly string[],
  log: (line: string) => void,
  watchdog: (ms: number) => void,
  warnIfBusy: () => Promise<void>,
): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { duration: { type: 'string', default: '10' }, warmup: { type: 'string', default: '2' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) {
    process.stdout.write(FAIRNESS_USAGE);
    return 0;
  }
  const durationMs = seconds('duration', values.duration);
  const warmupMs = seconds('warmup', values.warmup);
  const info = runInfo();
  log(describeRun(info));
  watchdog(2 * (FAIRNESS_WINDOWS * (durationMs + 3_000) + warmupMs) + 300_000);
  await warnIfBusy();
  const report = await runFairness({ durationMs, warmupMs, log });
  const markdown = `# Fairness between tenants (issue #7)\n\n${describeRun(info)}\n\n${report.markdown}`;
  const record = { format: 'fabriek-bench/1' as const, kind: 'fairness', info, options: {}, levels: [], scenario: report.json };
  const paths = saveRun(record, { markdown }, { name: 'fairness', latest: 'latest-fairness' });
  process.stdout.write(markdown);
  log(`saved ${paths.join(', ')}`);
  if (!report.ok) log('bench fairness: some of B\'s requests failed or were answered wrongly (see the table)');
  return report.ok ? 0 : 1;
}
