import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { type ServingError } from '../../core/errors.js';
import { DirectScheduler } from '../../gateway/scheduling/direct-scheduler.js';
import { Dispatcher } from '../../gateway/scheduling/dispatcher.js';
import { type InferJob } from '../../gateway/scheduling/execution.js';
import { InstanceSlots } from '../../gateway/scheduling/instance-slots.js';
import { type WorkerConnection } from '../../gateway/scheduling/worker-connection.js';
import { FakeWorker } from '../helpers/fake-worker.js';

// Early shedding of a model without dynamic batching, on an explicit clock:
// a fake worker with one instance reports 100 ms of compute per execution and
// answers only when the test says so.

const COMPUTE_MS = 100;

function setup() {
  const worker = new FakeWorker(BigInt(COMPUTE_MS * 1e6));
  const slots = new InstanceSlots();
  slots.add(worker as unknown as WorkerConnection, 1);
  let now = 1_000_000;
  const scheduler = new DirectScheduler({ modelKey: 'm/1', slots, dispatcher: new Dispatcher('m/1', slots), maxQueueSize: 100, now: () => now });
  const outcomes = new Map<string, string>();
  const submit = (name: string, deadlineInMs = Infinity): Promise<void> => {
    const job: InferJob = {
      inputs: [{ name, datatype: 'FP32', shape: [1], data: new Uint8Array(4) }],
      outputs: [],
      signal: new AbortController().signal,
      deadline: now + deadlineInMs,
      batchSize: 1,
    };
    return scheduler.enqueue(job).then(
      () => void outcomes.set(name, 'OK'),
      (e: ServingError) => void outcomes.set(name, `${status[e.code]}: ${e.message}`),
    );
  };
  /** Four executions answered: the learned compute time is trusted from then on. */
  const warm = async (): Promise<void> => {
    const calls = ['w1', 'w2', 'w3', 'w4'].map((n) => submit(n));
    for (let i = 0; i < 4; i++) await worker.finishOne();
    await Promise.all(calls);
  };
  return { worker, submit, outcomes, warm, advance: (ms: number) => (now += ms) };
}

describe('DirectScheduler early shedding', () => {
  it('sheds nothing while cold: the first executions run whatever their deadline', async () => {
    const { worker, submit, outcomes } = setup();
    const calls = [submit('a', 1), submit('b', 1), submit('c', 1)];
    for (let i = 0; i < 3; i++) await worker.finishOne();
    await Promise.all(calls);
    expect([...outcomes.values()]).toEqual(['OK', 'OK', 'OK']);
  });

  it('refuses on arrival what its tenant\'s queue and its own run would take past its deadline, and never runs it', async () => {
    const { worker, submit, outcomes, warm } = setup();
    await warm();
    void submit('running1');
    void submit('running2'); // the instance takes two at once: one runs, one waits in the worker
    void submit('queued1');
    void submit('queued2');
    await submit('tight', 250); // two queued ahead + its own run: 300 ms
    expect(outcomes.get('tight')).toMatch(/^UNAVAILABLE: Request timeout expired: model 'm\/1' shed the request before it ran: it would finish in 300 ms, its deadline is in 250 ms$/);
    // 300 ms of its 700 ms: under half, so the queue of two ahead does not count as standing.
    void submit('fits', 700);
    while (worker.inFlight > 0) await worker.finishOne();
    expect(worker.ran).not.toContain('tight');
    expect(outcomes.get('fits')).toBe('OK');
  });

  it('refuses on arrival behind a standing queue: more than two requests per instance ahead and over half its deadline', async () => {
    const { worker, submit, outcomes, warm } = setup();
    await warm();
    void submit('running1');
    void submit('running2');
    void submit('queued1');
    // One queued ahead of it: not standing, though 200 ms is over half its 350.
    void submit('one-ahead', 350);
    // Two queued ahead of it, so three with its own: 300 ms, within its 500 ms deadline but past half of it.
    await submit('standing', 500);
    expect(outcomes.get('standing')).toMatch(
      /^UNAVAILABLE: Request timeout expired: model 'm\/1' shed the request before it ran: 2 requests wait ahead of it, so it would not run in the next 2 runs per instance, and it would finish in 300\.0 ms, past half of the 500\.0 ms to its deadline$/,
    );
    // The same queue with room to spare: admitted.
    void submit('patient', 1_000);
    while (worker.inFlight > 0) await worker.finishOne();
    expect(worker.ran).not.toContain('standing');
    expect(outcomes.get('one-ahead')).toBe('OK');
    expect(outcomes.get('patient')).toBe('OK');
  });

  it('sheds at its turn a request whose deadline came too close while it waited', async () => {
    const { worker, submit, outcomes, warm, advance } = setup();
    await warm();
    void submit('running1');
    void submit('running2');
    const late = submit('late', 250); // nothing queued ahead of it: admitted (100 ms ≤ 250)
    advance(200); // 50 ms left when an instance frees: its 100 ms run cannot make it
    await worker.finishOne();
    await late;
    expect(outcomes.get('late')).toMatch(/^UNAVAILABLE: Request timeout expired: .*it would finish in 100 ms, its deadline is in 50 ms$/);
    while (worker.inFlight > 0) await worker.finishOne();
    expect(worker.ran).not.toContain('late');
  });

  it('sheds nothing while nothing runs, so that an estimate grown too pessimistic is corrected by the next run', async () => {
    const { worker, submit, outcomes, warm } = setup();
    await warm();
    const call = submit('alone', 10);
    await worker.finishOne();
    await call;
    expect(outcomes.get('alone')).toBe('OK');
  });
});

describe('DirectScheduler early shedding: deadlines already passed', () => {
  // (The worker connection answers it DEADLINE_EXCEEDED before sending it; this fake worker does not check.)
  it('leaves a request whose deadline already passed to the deadline check, not a shed', async () => {
    const { worker, submit, outcomes, warm } = setup();
    await warm();
    void submit('running1');
    const past = submit('past', -5);
    while (worker.inFlight > 0) await worker.finishOne();
    await past;
    expect(outcomes.get('past')).not.toMatch(/^UNAVAILABLE/);
  });
});
