import { execFileSync } from 'node:child_process';
import { type LocalWorkerSpec } from './scheduling/worker-supervisor.js';

/** GPU indices nvidia-smi reports; none when it is missing or fails. */
export function detectGpus(): number[] {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=index', '--format=csv,noheader'], {
      encoding: 'utf8',
      timeout: 5_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => /^\d+$/.test(l))
      .map(Number);
  } catch {
    return [];
  }
}

/**
 * One worker process per GPU; without GPUs, `workers` CPU workers (default
 * one: a worker hosts every model's instances in its own threads, so more
 * processes only add copies of the models, not parallelism).
 */
export function planLocalWorkers(gpus: readonly number[], workers: number | undefined): LocalWorkerSpec[] {
  if (gpus.length > 0) {
    const n = workers ?? gpus.length;
    return Array.from({ length: n }, (_, i) => ({ id: `gpu${gpus[i % gpus.length]}-${i}`, deviceKind: 'gpu', deviceId: gpus[i % gpus.length] ?? 0 }));
  }
  return Array.from({ length: workers ?? 1 }, (_, i) => ({ id: `cpu${i}`, deviceKind: 'cpu', deviceId: 0 }));
}
