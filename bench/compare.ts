// `fabriek bench compare A B`: the same load levels and metrics in two saved
// runs, side by side, and which of them got worse by more than a threshold.
import { type RunRecord } from './history.js';
import { type LevelResult } from './load/level.js';
import { num, textTable } from './report/format.js';

export interface Change {
  /** What was measured: "fabriek identity_fp32 grpc c=64 b=1", or a metric id. */
  readonly subject: string;
  /** "infer/s", "p99 µs", "errors", or the metric's unit. */
  readonly measure: string;
  readonly before: number;
  readonly after: number;
  /** (after − before) / |before| in percent (NaN when before is 0). */
  readonly changePercent: number;
  readonly regression: boolean;
}

export interface Comparison {
  readonly changes: readonly Change[];
  readonly regressions: readonly Change[];
  /** Subjects present in only one of the runs. */
  readonly unmatched: readonly string[];
}

/** A level's subject; with --rounds, its round too (runs of as many rounds compare round by round). */
export const levelKey = (l: LevelResult): string =>
  `${l.series} ${l.model} ${l.protocol} ${l.mode === 'concurrency' ? `c=${l.value}` : `rate=${l.value}/s${l.distribution ? ` ${l.distribution}` : ''}`} b=${l.batchSize}${l.round === undefined ? '' : ` round ${l.round}`}`;

/** Worse by more than `thresholdPercent` in the direction that matters? */
function change(subject: string, measure: string, before: number, after: number, better: 'higher' | 'lower', thresholdPercent: number): Change {
  const delta = after - before;
  const changePercent = before !== 0 ? (100 * delta) / Math.abs(before) : NaN;
  const limit = (Math.abs(before) * thresholdPercent) / 100;
  const worse = better === 'higher' ? -delta : delta;
  const regression = Number.isFinite(before) && (!Number.isFinite(after) || worse > limit);
  return { subject, measure, before, after, changePercent, regression };
}

export function compareRuns(a: RunRecord, b: RunRecord, thresholdPercent = 10): Comparison {
  const changes: Change[] = [];
  const unmatched: string[] = [];
  const before = new Map(a.levels.map((l) => [levelKey(l), l]));
  const after = new Map(b.levels.map((l) => [levelKey(l), l]));
  for (const [key, x] of before) {
    const y = after.get(key);
    if (!y) {
      unmatched.push(`${key} (only in A)`);
      continue;
    }
    changes.push(change(key, 'infer/s', x.inferPerSecond, y.inferPerSecond, 'higher', thresholdPercent));
    changes.push(change(key, 'p99 µs', x.latency.p99Us, y.latency.p99Us, 'lower', thresholdPercent));
    if (x.serverCpuUsPerRequest !== undefined && y.serverCpuUsPerRequest !== undefined) {
      changes.push(change(key, 'server CPU µs/req', x.serverCpuUsPerRequest, y.serverCpuUsPerRequest, 'lower', thresholdPercent));
    }
    // Failures where there were none are a regression whatever their number.
    const moreErrors = x.errorCount === 0 ? y.errorCount > 0 : y.errorCount > x.errorCount * (1 + thresholdPercent / 100);
    changes.push({ ...change(key, 'errors', x.errorCount, y.errorCount, 'lower', thresholdPercent), regression: moreErrors });
  }
  for (const key of after.keys()) if (!before.has(key)) unmatched.push(`${key} (only in B)`);
  const metricsA = new Map((a.metrics ?? []).map((m) => [m.id, m]));
  for (const m of b.metrics ?? []) {
    const x = metricsA.get(m.id);
    if (!x) {
      unmatched.push(`${m.id} (only in B)`);
      continue;
    }
    changes.push(change(`${m.id}: ${m.label}`, m.unit, x.value, m.value, m.better, thresholdPercent));
  }
  for (const id of metricsA.keys()) if (!(b.metrics ?? []).some((m) => m.id === id)) unmatched.push(`${id} (only in A)`);
  return { changes, regressions: changes.filter((c) => c.regression), unmatched };
}

export function comparisonText(a: RunRecord, b: RunRecord, c: Comparison, thresholdPercent: number): string {
  const describe = (r: RunRecord): string => `${r.kind}, ${r.info.date}, commit ${r.info.commit}${r.info.dirty ? '+' : ''}, ${r.info.machine.cpu} × ${r.info.machine.cores}`;
  const out = [`A: ${describe(a)}`, `B: ${describe(b)}`, ''];
  if (a.info.machine.cpu !== b.info.machine.cpu || a.info.machine.cores !== b.info.machine.cores) out.push('warning: the runs come from different machines', '');
  const digits = (m: string): number => (m === 'infer/s' || m.endsWith('µs') || m === 'errors' ? 0 : 2);
  out.push(
    textTable(
      ['subject', 'measure', 'A', 'B', 'change', ''],
      c.changes.map((x) => [
        x.subject,
        x.measure,
        num(x.before, digits(x.measure)),
        num(x.after, digits(x.measure)),
        Number.isFinite(x.changePercent) ? `${x.changePercent >= 0 ? '+' : ''}${x.changePercent.toFixed(1)} %` : '–',
        x.regression ? 'REGRESSION' : '',
      ]),
      2,
    ),
  );
  if (c.unmatched.length > 0) out.push(`Not compared: ${c.unmatched.join('; ')}`, '');
  out.push(
    c.regressions.length === 0
      ? `No regressions beyond ${thresholdPercent} %.`
      : `${c.regressions.length} regression(s) beyond ${thresholdPercent} %:\n${c.regressions.map((x) => `  ${x.subject}: ${x.measure} ${num(x.before, digits(x.measure))} → ${num(x.after, digits(x.measure))}`).join('\n')}`,
  );
  return out.join('\n') + '\n';
}
