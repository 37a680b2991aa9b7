import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { ortTypeOf } from '../../core/datatypes.js';
import { type InferInput, decodeRaw, encodeRaw } from '../../client/typed-tensors.js';
import { type CpuShare, cpuMeter } from '../load/child-server.js';
import { type LatencySummary, latencyHistogram, mergeHistograms, recordUs, summarize } from '../load/histogram.js';
import { DEFAULT_STABILITY, type StabilityRule, isStable } from '../load/stability.js';

export interface RawOrtOptions {
  readonly modelPath: string;
  /** The inputs of one run at `batchSize` rows (the same data the server gets). */
  readonly inputs: (batchSize: number) => readonly InferInput[];
  readonly batchSizes: readonly number[];
  /** Measured time per batch size; with maxTrials, per window. */
  readonly durationMs: number;
  /** Windows per batch size at most, stopping once stable (default 1: one window, no rule). */
  readonly maxTrials?: number;
  readonly stability?: StabilityRule;
  /** Untimed runs before each batch size (default 5). */
  readonly warmupRuns?: number;
  /** Hard cap on timed runs per batch size (default 100 000). */
  readonly maxRuns?: number;
  /** The execution provider (default cpu); webgpu measures the GPU path a KIND_GPU instance takes without CUDA. */
  readonly provider?: RawOrtProvider;
}

export const RAW_ORT_PROVIDERS = ['cpu', 'webgpu'] as const;
export type RawOrtProvider = (typeof RAW_ORT_PROVIDERS)[number];

export interface RawOrtLevel {
  readonly batchSize: number;
  readonly runs: number;
  readonly seconds: number;
  readonly runsPerSecond: number;
  readonly rowsPerSecond: number;
  readonly latency: LatencySummary;
  /** ORT's own use of the cores (client) and other processes' (other). */
  readonly cpu: CpuShare;
  /** Windows measured, and whether the last ones agreed. */
  readonly windows: number;
  readonly stable: boolean;
}

/**
 * One in-process session configured like a worker's single instance: all
 * cores for intra-op, no spinning (spinning threads would steal the cores
 * the gateway and the load generator need).
 */
export function createBaselineSession(modelPath: string, provider: RawOrtProvider = 'cpu'): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(modelPath, {
    executionProviders: [provider],
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
  const session = await createBaselineSession(o.modelPath, o.provider);
  const rule = o.stability ?? DEFAULT_STABILITY;
  const maxRuns = o.maxRuns ?? 100_000;
  const levels: RawOrtLevel[] = [];
  try {
    for (const batchSize of o.batchSizes) {
      const feeds = toOrtFeeds(o.inputs(batchSize));
      for (let i = 0; i < (o.warmupRuns ?? 5); i++) await session.run(feeds);
      // Windows of durationMs until the last ones agree (perf_analyzer's rule), at most maxTrials.
      const windows: { runs: number; seconds: number; histogram: ReturnType<typeof latencyHistogram>; cpu: CpuShare }[] = [];
      for (let t = 0; t < (o.maxTrials ?? 1); t++) {
        const histogram = latencyHistogram();
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
        windows.push({ runs, seconds: (performance.now() - t0) / 1000, histogram, cpu: meter.stop() });
        if (isStable(windows.map((w) => ({ throughput: w.runs / w.seconds, latencyUs: w.histogram.mean })), rule)) break;
      }
      const last = windows.slice(-rule.windows);
      const merged = mergeHistograms(last.map((w) => w.histogram));
      const runs = last.reduce((n, w) => n + w.runs, 0);
      const seconds = last.reduce((n, w) => n + w.seconds, 0);
      const share = (f: (c: CpuShare) => number): number => last.reduce((n, w) => n + f(w.cpu) * w.seconds, 0) / seconds;
      const cpu: CpuShare = { client: share((c) => c.client), server: 0, other: share((c) => c.other) };
      const stable = windows.length >= rule.windows && isStable(windows.map((w) => ({ throughput: w.runs / w.seconds, latencyUs: w.histogram.mean })), rule);
      levels.push({ batchSize, runs, seconds, runsPerSecond: runs / seconds, rowsPerSecond: (runs * batchSize) / seconds, latency: summarize(merged), cpu, windows: windows.length, stable });
    }
  } finally {
    await session.release();
  }
  return levels;
}

/** Client tensors as ORT feeds (typed data as it is; BOOL as bytes; BYTES as strings). */
export function toOrtFeeds(inputs: readonly InferInput[]): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of inputs) {
    const dims = [...t.shape];
    if (t.datatype === 'BYTES') {
      feeds[t.name] = new ort.Tensor('string', t.data.map((e) => (typeof e === 'string' ? e : Buffer.from(e).toString('utf8'))), dims);
    } else if (t.datatype === 'BOOL') {
      feeds[t.name] = new ort.Tensor('bool', Uint8Array.from(t.data as ArrayLike<boolean | number>, (b) => (b ? 1 : 0)), dims);
    } else {
      // Through the raw form: plain arrays become the datatype's typed array.
      const data = decodeRaw(t.datatype, t.shape, encodeRaw(t), t.name);
      feeds[t.name] = new ort.Tensor(ortTypeOf(t.datatype) as 'float32', data as Float32Array, dims);
    }
  }
  return feeds;
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
