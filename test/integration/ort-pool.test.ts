import { copyFileSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/processes.js';
import { buildManyModels, constantOf, MANY_MODELS_WIDTH, manyModelName } from '../../models/build/many-models.js';
// The built pool: its threads run dist/worker/ort-thread.js (run `npm run build` first, as for every integration test).
import { OrtThreadPool } from '../../dist/worker/ort-pool.js';
import { INLINE_SAMPLES, type MovableInstance, WARM_RUNS } from '../../dist/worker/inline-runs.js';
import { type ModelInstance } from '../../worker/model-instance.js';
import { type ThreadInit, type ThreadSessionOptions } from '../../worker/thread-protocol.js';

// The worker's ONNX Runtime thread pool with real threads and real sessions:
// placement on distinct least-loaded threads, growth for a larger instance
// count, many sessions per thread each giving its own answer, tensors moved
// (the sender's buffer is detached), and load errors reported.

const OPTIONS: ThreadSessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
  enableCpuMemArena: true,
  executionMode: 'sequential',
  enableMemPattern: true,
};

describe('OrtThreadPool', () => {
  let dir: string;
  let pool: OrtThreadPool;
  const fatal: Error[] = [];
  const init = (i: number, label = `${manyModelName(i)}#0`): ThreadInit => ({
    label,
    model: { path: join(dir, manyModelName(i), '1', 'model.onnx') },
    device: { kind: 'cpu' },
    options: OPTIONS,
  });
  const run = async (instance: ModelInstance): Promise<{ y: number[]; sent: ArrayBuffer }> => {
    const sent = Float32Array.from({ length: MANY_MODELS_WIDTH }, (_, k) => k).buffer;
    const out = await instance.run({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, MANY_MODELS_WIDTH], data: sent }], outputs: [] }, [sent]);
    expect(out.runStartNs).toBeGreaterThanOrEqual(out.taskStartNs);
    expect(out.runEndNs).toBeGreaterThanOrEqual(out.runStartNs);
    return { y: [...new Float32Array(out.outputs[0]?.data ?? new ArrayBuffer(0))], sent };
  };
  const plus = (i: number): number[] => Array.from({ length: MANY_MODELS_WIDTH }, (_, k) => k + constantOf(i));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fabriek-ort-pool-'));
    await buildManyModels(dir, 12);
    pool = new OrtThreadPool({ threads: 2, onFatal: (e) => fatal.push(e) });
  }, 60_000);

  afterAll(async () => {
    await pool?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('hosts many sessions per thread, each answering with its own model; inputs are moved, not copied', async () => {
    const instances = await Promise.all(Array.from({ length: 10 }, (_, i) => pool.open([init(i)])[0] as Promise<ModelInstance>));
    expect(pool.size).toBe(2);
    expect(pool.sessionsPerThread()).toEqual([5, 5]);
    const answers = await Promise.all(instances.map(run));
    answers.forEach((a, i) => expect(a.y, manyModelName(i)).toEqual(plus(i)));
    expect(answers.every((a) => a.sent.byteLength === 0)).toBe(true); // detached: transferred
    await Promise.all(instances.map((i) => i.close()));
    expect(pool.sessionsPerThread()).toEqual([0, 0]);
  }, 60_000);

  it("places a model's instances on distinct threads, and grows the pool for a larger instance count", async () => {
    const [a0, a1] = await Promise.all(pool.open([init(10, 'a#0'), init(10, 'a#1')]));
    expect(pool.sessionsPerThread()).toEqual([1, 1]);
    const three = await Promise.all(pool.open([init(11, 'b#0'), init(11, 'b#1'), init(11, 'b#2')]));
    expect(pool.size).toBe(3);
    expect(pool.sessionsPerThread()).toEqual([2, 2, 1]);
    for (const instance of [a0, a1, ...three]) expect((await run(instance as ModelInstance)).y).toEqual(plus(instance === a0 || instance === a1 ? 10 : 11));
    await Promise.all([a0, a1, ...three].map((i) => (i as ModelInstance).close()));
  }, 60_000);

  it('rejects a load that fails with ONNX Runtime’s reason, keeps serving the others, and frees its place', async () => {
    const bad = join(dir, 'broken.onnx');
    writeFileSync(bad, 'not an onnx file');
    const good = pool.open([init(0)])[0] as Promise<ModelInstance>;
    const failed = pool.open([{ ...init(1, 'broken#0'), model: { path: bad } }])[0] as Promise<ModelInstance>;
    await expect(failed).rejects.toThrow(/instance broken#0: .*(protobuf|parse|Load model)/i);
    const ok = await good;
    expect((await run(ok)).y).toEqual(plus(0));
    await ok.close();
    expect(pool.sessionsPerThread().reduce((a, b) => a + b, 0)).toBe(0);
    expect(fatal).toEqual([]);
  }, 60_000);

  it('a run whose buffers cannot be moved fails alone: the answers after it still go to their own callers', async () => {
    const [a, b] = await Promise.all([pool.open([init(2)])[0] as Promise<ModelInstance>, pool.open([init(3)])[0] as Promise<ModelInstance>]);
    // Two inputs on one buffer: the transfer list names it twice, which postMessage refuses.
    const shared = Float32Array.from({ length: MANY_MODELS_WIDTH }, () => 1).buffer;
    const bad = a.run({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, MANY_MODELS_WIDTH], data: shared }], outputs: [] }, [shared, shared]);
    await expect(bad).rejects.toThrow(/could not hand the request to the ORT thread/);
    // Runs after it, on the same threads, get their own models' answers.
    const [ra, rb] = await Promise.all([run(a), run(b)]);
    expect(ra.y).toEqual(plus(2));
    expect(rb.y).toEqual(plus(3));
    await Promise.all([a.close(), b.close()]);
    expect(fatal).toEqual([]);
  }, 60_000);

  it('moves a CPU instance whose runs are shorter than the bound to the main thread after a trial there, and keeps the others on theirs', async () => {
    const outcomes: string[] = [];
    const movable = new OrtThreadPool({ threads: 1, inlineMaxRunNs: 1e9, onFatal: (e) => fatal.push(e), onInline: (label, o) => outcomes.push(`${label}: ${JSON.stringify(o)}`) });
    const never = new OrtThreadPool({ threads: 1, inlineMaxRunNs: 1, onFatal: (e) => fatal.push(e) });
    try {
      const quick = (await movable.open([init(4, 'quick#0')])[0]) as MovableInstance;
      const slow = (await never.open([init(5, 'slow#0')])[0]) as MovableInstance;
      for (let k = 0; k < WARM_RUNS + INLINE_SAMPLES; k++) {
        expect(quick.inline).toBe(false);
        expect((await run(quick)).y).toEqual(plus(4));
        expect((await run(slow)).y).toEqual(plus(5));
      }
      await waitFor(() => quick.inline, 10_000, 'the instance to be tried on the main thread');
      // On trial its thread session stays open; its runs on the main thread decide.
      expect(outcomes).toEqual([]);
      expect(movable.sessionsPerThread()).toEqual([1]);
      for (let k = 0; k < INLINE_SAMPLES; k++) expect((await run(quick)).y).toEqual(plus(4));
      expect(outcomes.map((o) => o.split(':')[0])).toEqual(['quick#0']);
      expect(outcomes[0]).toContain('"moved":true');
      // Its thread session closes once its runs there have ended; the one over the bound stays.
      await waitFor(() => movable.sessionsPerThread()[0] === 0, 10_000, 'its thread session to close');
      expect(never.sessionsPerThread()).toEqual([1]);
      expect(slow.inline).toBe(false);
      // On the main thread the input is not moved anywhere: the caller keeps its buffer.
      const again = await run(quick);
      expect(again.y).toEqual(plus(4));
      expect(again.sent.byteLength).toBe(MANY_MODELS_WIDTH * 4);
      await Promise.all([quick.close(), slow.close()]);
      expect(never.sessionsPerThread()).toEqual([0]);
    } finally {
      await Promise.all([movable.close(), never.close()]);
    }
    expect(fatal).toEqual([]);
  }, 60_000);

  it('does not open on the main thread a model file that changed since its thread opened it', async () => {
    const moved: string[] = [];
    const movable = new OrtThreadPool({ threads: 1, inlineMaxRunNs: 1e9, onFatal: (e) => fatal.push(e), onInline: (label) => moved.push(label) });
    const file = join(dir, 'rewritten.onnx');
    copyFileSync(join(dir, manyModelName(6), '1', 'model.onnx'), file);
    try {
      const instance = (await movable.open([{ ...init(6, 'rewritten#0'), model: { path: file } }])[0]) as MovableInstance;
      // Another model written over the file (a repository edited in place): a reload will follow; until then
      // the instance keeps serving the model it opened.
      copyFileSync(join(dir, manyModelName(7), '1', 'model.onnx'), file);
      utimesSync(file, new Date(), new Date(Date.now() + 5_000));
      for (let k = 0; k < WARM_RUNS + INLINE_SAMPLES + 4; k++) expect((await run(instance)).y).toEqual(plus(6));
      await new Promise((r) => setTimeout(r, 300));
      expect(instance.inline).toBe(false);
      expect(moved).toEqual([]);
      expect((await run(instance)).y).toEqual(plus(6));
      await instance.close();
    } finally {
      await movable.close();
    }
  }, 60_000);

  it('fails the load of a model file that is not there on a pool that may move instances, with the file named', async () => {
    const movable = new OrtThreadPool({ threads: 1, inlineMaxRunNs: 1e9, onFatal: (e) => fatal.push(e) });
    const gone = join(dir, 'not-there.onnx');
    try {
      const opened = (movable.open([{ ...init(8, 'gone#0'), model: { path: gone } }])[0] as Promise<ModelInstance>).then(
        () => 'opened',
        (e: unknown) => (e as Error).message,
      );
      expect(await opened).toMatch(/not-there\.onnx/);
      // The pool still opens what is there.
      const instance = (await movable.open([init(8)])[0]) as ModelInstance;
      expect((await run(instance)).y).toEqual(plus(8));
      await instance.close();
    } finally {
      await movable.close();
    }
  });
});
