import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { type ServingError } from '../../core/errors.js';
import { DirectScheduler } from '../../gateway/scheduling/direct-scheduler.js';
import { Dispatcher } from '../../gateway/scheduling/dispatcher.js';
import { type InferJob } from '../../gateway/scheduling/execution.js';
import { InstanceSlots } from '../../gateway/scheduling/instance-slots.js';
import { type WorkerConnection } from '../../gateway/scheduling/worker-connection.js';
import { FakeWorker } from '../helpers/fake-worker.js';

// A model without dynamic batching fed images of two sizes (max_batch_size 0:
// every dim is the request's own): a large one computes for 100 ms, a small
// one for 10 ms. On an explicit clock; the fake worker answers when told.

const MS = 1_000_000n;
const SMALL = [3, 32, 32];
const LARGE = [3, 512, 512];
/** A size the scheduler has not run. */
const MEDIUM = [3, 64, 64];

function setup(instances = 2) {
  const worker = new FakeWorker((request) => (Number(request.inputs[0]?.shape[1]) === LARGE[1] ? 100n * MS : 10n * MS));
  const slots = new InstanceSlots();
  slots.add(worker as unknown as WorkerConnection, instances);
  let now = 1_000_000;
  const scheduler = new DirectScheduler({ modelKey: 'm/1', slots, dispatcher: new Dispatcher('m/1', slots), maxQueueSize: 100, now: () => now });
  const outcome = (shape: readonly number[], deadlineInMs = Infinity): Promise<string> => {
    const job: InferJob = {
      inputs: [{ name: 'IMAGE', datatype: 'UINT8', shape, data: new Uint8Array(shape.reduce((a, b) => a * b, 1)) }],
      outputs: [],
      signal: new AbortController().signal,
      deadline: now + deadlineInMs,
      batchSize: 1,
    };
    return scheduler.enqueue(job).then(
      () => 'OK',
      (e: ServingError) => `${status[e.code]}: ${e.message}`,
    );
  };
  /**
   * `large` and `small` executions answered one after the other, large and small in turn, then the large left: each
   * shape's model is trusted, and the version's median is the large images'.
   */
  const warm = async (small: number, large: number): Promise<void> => {
    const order: (readonly number[])[] = [];
    for (let i = 0; i < Math.max(small, large); i++) {
      if (i < large) order.push(LARGE);
      if (i < small) order.push(SMALL);
    }
    for (const shape of order) {
      const done = outcome(shape);
      await worker.finishOne();
      expect(await done).toBe('OK');
    }
  };
  return { worker, scheduler, outcome, warm };
}

describe('DirectScheduler with shapes that vary', () => {
  it('keeps a model per shape once a second one ran, each learning its own runs', async () => {
    const { scheduler, warm } = setup();
    await warm(4, 6);
    expect(scheduler.costs.variableShapes).toBe(true);
    const models = scheduler.costs.shapeEntries();
    expect(models.map((m) => m.shape).sort()).toEqual(['IMAGE\u0000UINT8\u0000=3,32,32\u0001', 'IMAGE\u0000UINT8\u0000=3,512,512\u0001']);
    const small = models.find((m) => m.shape.includes('=3,32,32'))?.model;
    const large = models.find((m) => m.shape.includes('=3,512,512'))?.model;
    // The large shape's first run came before shapes varied: its model has the other 5.
    expect([small?.samples, large?.samples]).toEqual([4, 5]);
    expect(small?.computeNs(1)).toBe(10e6);
    expect(large?.computeNs(1)).toBe(100e6);
    // The version's own model learned all ten: its median is the large images'.
    expect(scheduler.cost.computeNs(1)).toBe(100e6);
  });

  // 50 ms to spare, where the version's median says 100 ms: the small images' model says 10, and for 64×64, which no
  // model knows yet, the quickest run lately says 10.
  it.each([
    ['a small image, by its own shape', SMALL],
    ['a shape not seen yet, by the size curve at its elements (11 ms)', MEDIUM],
  ])('admits %s for an idle instance, where the mix says it would miss', async (_, shape) => {
    const { worker, outcome, warm } = setup();
    await warm(5, 6);
    const running = outcome(LARGE);
    const admitted = outcome(shape, 50);
    expect(worker.inFlight).toBe(2);
    await worker.finishAll();
    expect(await admitted).toBe('OK');
    expect(await running).toBe('OK');
  });

  it('still refuses a large image its own shape says cannot make it', async () => {
    const { worker, outcome, warm } = setup();
    await warm(5, 6);
    const running = outcome(SMALL);
    expect(await outcome(LARGE, 50)).toMatch(/^UNAVAILABLE: Request timeout expired: model 'm\/1' shed the request before it ran: it would finish in 100 ms, its deadline is in 50 ms$/);
    expect(worker.inFlight).toBe(1);
    await worker.finishAll();
    expect(await running).toBe('OK');
  });

  it('refuses a large shape not seen yet by the size curve the shapes run taught, at its elements', async () => {
    const { worker, outcome, warm } = setup();
    await warm(5, 6);
    const running = outcome(SMALL);
    // 480,000 elements, between the small images' 3,072 (10 ms) and the large ones' 786,432 (100 ms): about 65 ms.
    // Before the size curve it counted at the quickest run lately, 10 ms, and was admitted to end late.
    const verdict = await Promise.race([outcome([3, 400, 400], 50), new Promise<string>((r) => setImmediate(() => r('admitted')))]);
    expect(verdict).toMatch(/^UNAVAILABLE: Request timeout expired: model 'm\/1' shed the request before it ran: it would finish in 6\d ms, its deadline is in 50 ms$/);
    expect(worker.inFlight).toBe(1);
    await worker.finishAll();
    expect(await running).toBe('OK');
  });

  it('counts the requests ahead of another shape at the quickest run lately, a bound that never sheds wrongly', async () => {
    const { worker, outcome, warm } = setup(1);
    await warm(5, 6);
    // One instance: one runs, one waits in the worker, two queue here.
    const first = [outcome(LARGE), outcome(LARGE), outcome(SMALL), outcome(SMALL)];
    // Two small ones ahead in its tenant's queue and its own: 30 ms by their shape, 300 by the version's median.
    const third = outcome(SMALL, 200);
    expect(worker.inFlight).toBe(2);
    await worker.finishAll();
    expect(await third).toBe('OK');
    expect(await Promise.all(first)).toEqual(['OK', 'OK', 'OK', 'OK']);
  });

  it('of one shape, keeps no model per shape and sheds as before', async () => {
    const { scheduler, worker, outcome, warm } = setup();
    await warm(0, 6);
    expect(scheduler.costs.variableShapes).toBe(false);
    expect(scheduler.costs.shapeEntries()).toEqual([]);
    const running = outcome(LARGE);
    expect(await outcome(LARGE, 50)).toMatch(/would finish in 100 ms, its deadline is in 50 ms$/);
    await worker.finishAll();
    expect(await running).toBe('OK');
  });
});
