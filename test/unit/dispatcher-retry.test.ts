import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { Dispatcher } from '../../gateway/scheduling/dispatcher.js';
import { InstanceSlots } from '../../gateway/scheduling/instance-slots.js';
import { type WorkerConnection, WorkerLostError } from '../../gateway/scheduling/worker-connection.js';
import { type ExecuteResponse } from '../../proto/gen/worker.js';

// The retry of an execution whose worker was lost: it takes the next slot
// freed on another worker, ahead of queued work, instead of failing when every
// slot is busy at that moment.

type Execute = (deadline: number, done: (lost: boolean) => void) => Promise<ExecuteResponse>;
const ANSWER: ExecuteResponse = { outputs: [], computeInputNs: 0n, computeInferNs: 0n, computeOutputNs: 0n };

function fakeWorker(id: string, execute: Execute): WorkerConnection {
  const fake = {
    endpoint: { id, address: `unix:/${id}`, deviceKind: 'cpu' as const, deviceId: 0 },
    execute: (_request: unknown, deadline: number, done?: (lost: boolean) => void) => execute(deadline, done ?? (() => {})),
  };
  return fake as unknown as WorkerConnection;
}

const lostWorker = (id: string): WorkerConnection =>
  fakeWorker(id, (_deadline, done) => {
    done(true);
    return Promise.reject(new WorkerLostError(status.UNAVAILABLE, `worker ${id} is unresponsive`));
  });

describe('Dispatcher retry after a lost worker', () => {
  it('waits for a busy worker to free a slot, and gets it before the schedulers do', async () => {
    const slots = new InstanceSlots();
    const good = fakeWorker('good', (_d, done) => Promise.resolve(ANSWER).finally(() => done(false)));
    slots.add(lostWorker('bad'), 1);
    slots.add(good, 1);
    // Every slot of `good` is taken (by other work the test holds).
    const held = [slots.acquire(new Set(['bad'])), slots.acquire(new Set(['bad']))];
    expect(held.every(Boolean)).toBe(true);
    const onBad = slots.acquire();
    expect(onBad?.worker.endpoint.id).toBe('bad');
    let schedulerGot: string | undefined;
    slots.onFree(() => (schedulerGot ??= slots.acquire()?.worker.endpoint.id ?? 'none'));
    const run = new Dispatcher('m/1', slots).run(onBad as NonNullable<typeof onBad>, [], [], Date.now() + 10_000);
    await new Promise((r) => setTimeout(r, 20)); // the retry is waiting now
    slots.release(held[0] as NonNullable<(typeof held)[0]>);
    const result = await run;
    expect(result.workerId).toBe('good');
    expect(schedulerGot).toBe('none'); // the freed slot went to the retry
    expect(slots.has('bad')).toBe(false);
  });

  it('fails UNAVAILABLE at once when no other worker is left, and at the deadline when none frees a slot', async () => {
    const alone = new InstanceSlots();
    alone.add(lostWorker('bad'), 1);
    const p = alone.acquire();
    await expect(new Dispatcher('m/1', alone).run(p as NonNullable<typeof p>, [], [], Date.now() + 60_000)).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      message: expect.stringMatching(/worker bad failed before answering and no other worker could take it: worker bad is unresponsive/),
    });

    const slots = new InstanceSlots();
    slots.add(lostWorker('bad'), 1);
    slots.add(fakeWorker('busy', () => Promise.resolve(ANSWER)), 1);
    slots.acquire(new Set(['bad']));
    slots.acquire(new Set(['bad']));
    const onBad = slots.acquire();
    const started = Date.now();
    await expect(new Dispatcher('m/1', slots).run(onBad as NonNullable<typeof onBad>, [], [], Date.now() + 200)).rejects.toMatchObject({
      code: status.UNAVAILABLE,
      message: expect.stringMatching(/no other worker could take it before the deadline/),
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
  });

  it('a waiting retry is answered when the last other worker goes away', async () => {
    const slots = new InstanceSlots();
    slots.add(fakeWorker('busy', () => Promise.resolve(ANSWER)), 1);
    slots.acquire();
    slots.acquire();
    const waiting = slots.acquireOrWait(new Set(['bad']), Infinity);
    slots.remove('busy');
    await expect(waiting).resolves.toBe('no-worker');
  });
});
