// CSV as perf_analyzer writes it (-f file.csv), so tools that read its
// files read ours: the same first column and the same column names, times
// in µs. Our own columns come after perf_analyzer's.
import { type LevelResult } from '../load/level.js';

/** perf_analyzer's columns after the first (Concurrency or Request Rate), in its order. */
export const PERF_ANALYZER_COLUMNS = [
  'Inferences/Second',
  'Client Send',
  'Network+Server Send/Recv',
  'Server Queue',
  'Server Compute Input',
  'Server Compute Infer',
  'Server Compute Output',
  'Client Recv',
  'p50 latency',
  'p90 latency',
  'p95 latency',
  'p99 latency',
  'Avg latency',
] as const;

/** Ours, appended. */
export const EXTRA_COLUMNS = ['Series', 'Model', 'Protocol', 'Batch Size', 'Stable', 'Errors', 'Goodput', 'Server Avg Batch Size'] as const;

const us = (n: number | undefined): string => (n !== undefined && Number.isFinite(n) ? String(Math.round(n)) : '0');
const cell = (s: string): string => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/**
 * One row per level. Client Send and Client Recv are not measured apart
 * (grpc-js and node:http do not expose them) and are 0; they are inside
 * Network+Server Send/Recv, which is the average latency minus the server's
 * queue and compute time, as perf_analyzer derives it.
 */
export function toCsv(levels: readonly LevelResult[], mode: LevelResult['mode']): string {
  const rows = levels.filter((l) => l.mode === mode);
  const header = [mode === 'concurrency' ? 'Concurrency' : 'Request Rate', ...PERF_ANALYZER_COLUMNS, ...EXTRA_COLUMNS];
  const lines = [header.join(',')];
  for (const l of rows) {
    const s = l.server;
    const serverUs = s ? [s.queueUs, s.computeInputUs, s.computeInferUs, s.computeOutputUs].reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0) : 0;
    lines.push(
      [
        String(l.value),
        Number.isFinite(l.inferPerSecond) ? l.inferPerSecond.toFixed(2) : '0',
        '0',
        us(l.latency.avgUs - serverUs),
        us(s?.queueUs),
        us(s?.computeInputUs),
        us(s?.computeInferUs),
        us(s?.computeOutputUs),
        '0',
        us(l.latency.p50Us),
        us(l.latency.p90Us),
        us(l.latency.p95Us),
        us(l.latency.p99Us),
        us(l.latency.avgUs),
        cell(l.series),
        cell(l.model),
        l.protocol,
        String(l.batchSize),
        l.stable ? 'yes' : 'no',
        String(l.errorCount),
        Number.isFinite(l.goodputPerSecond) ? l.goodputPerSecond.toFixed(2) : '',
        s && Number.isFinite(s.avgBatchSize) ? s.avgBatchSize.toFixed(2) : '',
      ].join(','),
    );
  }
  return lines.join('\n') + '\n';
}
