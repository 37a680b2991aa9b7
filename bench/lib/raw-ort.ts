import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { LatencyRecorder, type LatencySummary } from './stats.js';

export interface RawOrtResult {
  readonly batchSize: number;
  readonly runsPerSecond: number;
  readonly rowsPerSecond: number;
  readonly latency: LatencySummary;
}

/**
 * The baseline every server figure is compared with: the same model run in
 * this process with onnxruntime-node, sequentially, at a given batch size,
 * with the session options the workers use (all cores, no spinning).
 */
export async function rawOrt(
  modelPath: string,
  inputName: string,
  rowShape: readonly number[],
  batchSizes: readonly number[],
  durationMs: number,
): Promise<RawOrtResult[]> {
  const session = await ort.InferenceSession.create(modelPath, {
    intraOpNumThreads: availableParallelism(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  const rowSize = rowShape.reduce((a, b) => a * b, 1);
  const out: RawOrtResult[] = [];
  for (const b of batchSizes) {
    const data = new Float32Array(b * rowSize).map((_, k) => Math.sin(k));
    const feeds = { [inputName]: new ort.Tensor('float32', data, [b, ...rowShape]) };
    for (let i = 0; i < 5; i++) await session.run(feeds);
    const latency = new LatencyRecorder();
    const t0 = performance.now();
    while (performance.now() - t0 < durationMs) {
      const s = performance.now();
      await session.run(feeds);
      latency.record((performance.now() - s) * 1000);
    }
    const seconds = (performance.now() - t0) / 1000;
    out.push({ batchSize: b, runsPerSecond: latency.count / seconds, rowsPerSecond: (latency.count * b) / seconds, latency: latency.summary() });
  }
  await session.release();
  return out;
}

/** One reference answer: the model run on this input alone. */
export async function referenceSession(modelPath: string): Promise<(input: Float32Array, shape: readonly number[], inputName: string) => Promise<Float32Array>> {
  const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 1 });
  return async (input, shape, inputName) => {
    const result = await session.run({ [inputName]: new ort.Tensor('float32', input, [...shape]) });
    const first = Object.values(result)[0];
    if (!first) throw new Error('reference run returned no output');
    return first.data as Float32Array;
  };
}
