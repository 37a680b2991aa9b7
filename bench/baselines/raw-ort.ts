import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { type CpuShare, cpuMeter } from '../load/child-server.js';
import { type LatencySummary, latencyHistogram, recordUs, summarize } from '../load/closed-loop.js';

export interface RawOrtOptions {
  readonly modelPath: string;
  readonly inputName: string;
  /** Shape of one row, without the batch dimension. */
  readonly rowShape: readonly number[];
  readonly batchSizes: readonly number[];
  /** Measured time per batch size. */
  readonly durationMs: number;
  /** Untimed runs before each batch size (default 5). */
  readonly warmupRuns?: number;
  /** Hard cap on timed runs per batch size (default 100 000). */
  readonly maxRuns?: number;
}

export interface RawOrtLevel {
  readonly batchSize: number;
  readonly runs: number;
  readonly seconds: number;
  readonly runsPerSecond: number;
  readonly rowsPerSecond: number;
  readonly latency: LatencySummary;
  /** ORT's own use of the cores (client) and other processes' (other). */
  readonly cpu: CpuShare;
}

/**
 * One in-process session configured like a worker's single instance: all
 * cores for intra-op, no spinning (spinning threads would steal the cores
 * the gateway and the load generator need).
 */
export function createBaselineSession(modelPath: string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: availableParallelism(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
}

/**
 * The ceiling the server is compared with: the same model run sequentially
 * in this process at each batch size, for a bounded time.
 */
export async function rawOrtBaseline(o: RawOrtOptions): Promise<RawOrtLevel[]> {
  const session = await createBaselineSession(o.modelPath);
  const rowSize = o.rowShape.reduce((a, b) => a * b, 1);
  const levels: RawOrtLevel[] = [];
  try {
    for (const batchSize of o.batchSizes) {
      const data = new Float32Array(batchSize * rowSize);
      for (let k = 0; k < data.length; k++) data[k] = Math.sin(k * 0.37);
      const feeds = { [o.inputName]: new ort.Tensor('float32', data, [batchSize, ...o.rowShape]) };
      for (let i = 0; i < (o.warmupRuns ?? 5); i++) await session.run(feeds);
      const histogram = latencyHistogram();
      const maxRuns = o.maxRuns ?? 100_000;
      const meter = cpuMeter();
      meter.start();
      const t0 = performance.now();
      let runs = 0;
      while (runs < maxRuns && performance.now() - t0 < o.durationMs) {
        const s = performance.now();
        await session.run(feeds);
        recordUs(histogram, (performance.now() - s) * 1000);
        runs++;
      }
      const seconds = (performance.now() - t0) / 1000;
      const cpu = meter.stop();
      levels.push({ batchSize, runs, seconds, runsPerSecond: runs / seconds, rowsPerSecond: (runs * batchSize) / seconds, latency: summarize(histogram), cpu });
      histogram.destroy();
    }
  } finally {
    await session.release();
  }
  return levels;
}

/** Each input run alone (batch 1) through ORT: the answers the server must reproduce. */
export async function referenceOutputs(modelPath: string, inputName: string, rows: readonly Float32Array[]): Promise<Float32Array[]> {
  const session = await createBaselineSession(modelPath);
  try {
    const out: Float32Array[] = [];
    for (const row of rows) {
      const result = await session.run({ [inputName]: new ort.Tensor('float32', row, [1, row.length]) });
      const first = result[session.outputNames[0] ?? ''];
      if (!first) throw new Error('reference run returned no output');
      out.push(Float32Array.from(first.data as Float32Array));
    }
    return out;
  } finally {
    await session.release();
  }
}
