import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ServingError } from '../../core/errors.js';
import { DirectScheduler } from '../../gateway/scheduling/direct-scheduler.js';
import { Dispatcher } from '../../gateway/scheduling/dispatcher.js';
import { type InferJob, type JobTenant } from '../../gateway/scheduling/execution.js';
import { InstanceSlots } from '../../gateway/scheduling/instance-slots.js';
import { type WorkerConnection } from '../../gateway/scheduling/worker-connection.js';
import { FakeWorker } from '../helpers/fake-worker.js';

// A model without dynamic batching runs one request per execution; between
// tenants its queue is shared the same way as the batcher's. A fake worker
// with one instance answers only when the test says so.

function setup(maxQueueSize: number, workerWaitNs?: number) {
  const worker = new FakeWorker(0n, undefined, workerWaitNs);
  const slots = new InstanceSlots();
  slots.add(worker as unknown as WorkerConnection, 1);
  const scheduler = new DirectScheduler({ modelKey: 'm/1', slots, dispatcher: new Dispatcher('m/1', slots), maxQueueSize });
  const counts = new Map<string, number>();
  const submit = (tenant: JobTenant): Promise<unknown> => {
    const n = (counts.get(tenant.name) ?? 0) + 1;
    counts.set(tenant.name, n);
    const job: InferJob = {
      inputs: [{ name: `${tenant.name}${n}`, datatype: 'FP32', shape: [1], data: new Uint8Array(4) }],
      outputs: [],
      signal: new AbortController().signal,
      deadline: Infinity,
      batchSize: 1,
      tenant,
    };
    const p = scheduler.enqueue(job);
    p.catch(() => undefined);
    return p;
  };
  return { worker, submit };
}

describe('DirectScheduler between tenants', () => {
  it('sends a job that finds an instance free and nobody waiting on at once, with no queue time', async () => {
    const { worker, submit } = setup(100);
    const a = { name: 'a', weight: 1, queueShare: 0.5 };
    const first = submit(a);
    expect(worker.ran).toEqual(['a1']);
    await worker.finishAll();
    expect(await first).toMatchObject({ queueNs: 0 });
  });

  it('counts the wait the worker reports for its instance as queue time', async () => {
    const { worker, submit } = setup(100, 3e6);
    const first = submit({ name: 'a', weight: 1, queueShare: 0.5 });
    await worker.finishAll();
    expect(await first).toMatchObject({ queueNs: 3e6 });
  });

  it('runs tenants in turn, so a flood does not starve the others', async () => {
    const { worker, submit } = setup(100);
    const a = { name: 'a', weight: 1, queueShare: 0.5 };
    const b = { name: 'b', weight: 1, queueShare: 0.5 };
    for (let i = 0; i < 10; i++) void submit(a);
    for (let i = 0; i < 3; i++) void submit(b);
    await worker.finishAll();
    // Two executions are in the worker at once (one running, one queued ahead) before b arrives.
    expect(worker.ran.slice(0, 9)).toEqual(['a1', 'a2', 'a3', 'b1', 'a4', 'b2', 'a5', 'b3', 'a6']);
  });

  it("each tenant holds at most its share of the queue: RESOURCE_EXHAUSTED for the flooder only", async () => {
    const { worker, submit } = setup(4);
    const a = { name: 'a', weight: 1, queueShare: 0.5 };
    const b = { name: 'b', weight: 1, queueShare: 0.5 };
    const results = [...Array.from({ length: 6 }, () => submit(a)), ...Array.from({ length: 2 }, () => submit(b))];
    await worker.finishAll();
    const settled = await Promise.allSettled(results);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected', 'fulfilled', 'fulfilled']);
    const refused = settled[4];
    const error = refused?.status === 'rejected' ? (refused.reason as ServingError) : undefined;
    expect(error?.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(error?.message).toBe("model 'm/1': queue is full for tenant 'a' (2 requests waiting, its share of 4)");
  });
});
