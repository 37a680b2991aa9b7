import { describe, expect, it } from 'vitest';
import { ServingError } from '../../../core/errors.js';
import { type ModelSignature, type TensorSignature } from '../../../core/signature.js';
import { type Tensor } from '../../../core/tensor.js';
import { type EnsemblePlan } from '../../../gateway/ensemble/ensemble-plan.js';
import { EnsembleScheduler, type StepTarget } from '../../../gateway/ensemble/ensemble-scheduler.js';
import { type InferJob, type JobResult, type Scheduler } from '../../../gateway/scheduling/execution.js';
import { ModelVersionStatistics } from '../../../gateway/stats/model-statistics.js';
import { ModelConfig } from '../../../proto/gen/model_config.js';

const t = (name: string): TensorSignature => ({ name, datatype: 'FP32', dims: [1], dimNames: [''], optional: false });
const SIG: ModelSignature = { name: 'm', version: '1', maxBatchSize: 0, inputs: [t('X')], outputs: [t('Y')] };
const tensor = (name: string, v: number): Tensor => ({ name, datatype: 'FP32', shape: [1], data: new Uint8Array(Float32Array.of(v).buffer) });
const valueOf = (x: Tensor | undefined): number => new Float32Array(x?.data.slice().buffer ?? new ArrayBuffer(4))[0] ?? NaN;

/** A step model that adds `k`, answering when the test lets it (or at once). */
function adder(k: number, gate?: Promise<void>, seen?: string[]): StepTarget {
  const scheduler: Scheduler = {
    pending: 0,
    stop: async () => undefined,
    enqueue: async (job: InferJob): Promise<JobResult> => {
      seen?.push(`start +${k}`);
      await gate;
      const out = tensor('Y', valueOf(job.inputs[0]) + k);
      return { outputs: [out], queueNs: 1, execution: { outputs: [out], computeInputNs: 1, computeInferNs: 2, computeOutputNs: 3, workerId: 'w' } };
    },
  };
  return { config: ModelConfig.fromPartial({ name: 'adder' }), signature: SIG, scheduler, stats: new ModelVersionStatistics() };
}

const job = (x: number, extra: Partial<InferJob> = {}): InferJob => ({ inputs: [tensor('IN', x)], outputs: [], signal: new AbortController().signal, deadline: Infinity, batchSize: 1, ...extra });

// IN → +1 → a ; IN → +10 → b ; (a) → +100 → OUT  (b is an intermediate nobody answers)
const PLAN: EnsemblePlan = {
  steps: [
    { index: 0, model: 'one', version: '', inputs: [['X', 'IN']], outputs: [['Y', 'a']] },
    { index: 1, model: 'ten', version: '', inputs: [['X', 'IN']], outputs: [['Y', 'b']] },
    { index: 2, model: 'hundred', version: '', inputs: [['X', 'a']], outputs: [['Y', 'OUT']] },
  ],
  models: ['one', 'ten', 'hundred'],
  outputs: ['OUT'],
};

describe('EnsembleScheduler', () => {
  it('runs independent steps at once, chains dependent ones, and answers only the outputs', async () => {
    let open = (): void => undefined;
    const gate = new Promise<void>((r) => (open = r));
    const seen: string[] = [];
    const targets: Record<string, StepTarget> = { one: adder(1, gate, seen), ten: adder(10, gate, seen), hundred: adder(100, undefined, seen) };
    const s = new EnsembleScheduler('e', PLAN, (m) => targets[m] as StepTarget);
    const result = s.enqueue(job(5));
    await new Promise((r) => setImmediate(r));
    // Both first steps started before either answered; the third waits for its input.
    expect(seen).toEqual(['start +1', 'start +10']);
    open();
    const { outputs, execution } = await result;
    expect(outputs.map((o) => [o.name, valueOf(o)])).toEqual([['OUT', 106]]);
    expect(execution.computeInferNs).toBe(6);
  });

  it("fails with the step's status, naming the step, and checks the caller's grant on each step model", async () => {
    const failing: StepTarget = {
      ...adder(1),
      scheduler: { pending: 0, stop: async () => undefined, enqueue: () => Promise.reject(new ServingError(8, 'queue full')) },
    };
    const s = new EnsembleScheduler('e', PLAN, (m) => (m === 'hundred' ? failing : adder(1)));
    await expect(s.enqueue(job(1))).rejects.toMatchObject({ code: 8, message: "ensemble 'e' step 2 ('hundred'): queue full" });

    const tenant = { name: 'acme', weight: 1, queueShare: 1, models: { allows: (m: string) => m !== 'ten' } };
    const guarded = new EnsembleScheduler('e', PLAN, () => adder(1));
    await expect(guarded.enqueue(job(1, { tenant }))).rejects.toMatchObject({ code: 7, message: "ensemble 'e' step 1 ('ten'): tenant 'acme' may not use model 'ten'" });
  });
});
