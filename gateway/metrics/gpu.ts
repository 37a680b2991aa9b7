import { execFile } from 'node:child_process';

export interface GpuSample {
  /** nvidia-smi's index, as a label value. */
  readonly index: string;
  /** 0..1 */
  readonly utilization: number;
  readonly memoryUsedBytes: number;
  readonly memoryTotalBytes: number;
}

export type GpuReader = () => Promise<readonly GpuSample[]>;

const MIB = 1024 * 1024;
const QUERY = ['--query-gpu=index,utilization.gpu,memory.used,memory.total', '--format=csv,noheader,nounits'];

/** Parses nvidia-smi's CSV; rows it cannot read (e.g. "[N/A]") are skipped, not guessed. */
export function parseNvidiaSmi(csv: string): GpuSample[] {
  const samples: GpuSample[] = [];
  for (const line of csv.split('\n')) {
    const [index, util, used, total] = line.split(',').map((f) => f.trim());
    if (index === undefined || index === '' || util === undefined || used === undefined || total === undefined) continue;
    const u = Number(util);
    const m = Number(used);
    const t = Number(total);
    if (![u, m, t].every(Number.isFinite)) continue;
    samples.push({ index, utilization: u / 100, memoryUsedBytes: m * MIB, memoryTotalBytes: t * MIB });
  }
  return samples;
}

function runNvidiaSmi(command: string): Promise<readonly GpuSample[]> {
  return new Promise((resolve) => {
    execFile(command, QUERY, { timeout: 2000 }, (error, stdout) => {
      // No nvidia-smi (ENOENT) or a broken driver: no GPU series, never a scrape error.
      resolve(error ? [] : parseNvidiaSmi(stdout));
    });
  });
}

/**
 * A reader that runs nvidia-smi at most once per `ttlMs`: Prometheus may
 * scrape from several servers, and nvidia-smi takes tens of milliseconds.
 */
export function nvidiaSmiReader(command = 'nvidia-smi', ttlMs = 1000, now: () => number = Date.now): GpuReader {
  let cached: { at: number; value: Promise<readonly GpuSample[]> } | undefined;
  return () => {
    const t = now();
    if (!cached || t - cached.at >= ttlMs) cached = { at: t, value: runNvidiaSmi(command) };
    return cached.value;
  };
}
