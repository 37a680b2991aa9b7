import { describe, expect, it } from 'vitest';
import { Dispatcher } from '../../../gateway/scheduling/dispatcher.js';
import { InstanceSlots, noteReport, REPORT_TTL_MS } from '../../../gateway/scheduling/instance-slots.js';
import { type WorkerConnection } from '../../../gateway/scheduling/worker-connection.js';
import { type ExecuteAnswer } from '../../../core/execute-frame.js';

// Which worker a gateway sends to, when it shares its workers with other
// gateways (registered workers, or several gateway processes): its own
// executions in flight plus what each worker last reported of the others'.

/** A worker that answers at once, reporting `outstanding` executions of the model (every gateway's). */
function worker(id: string, outstanding: () => number | undefined): WorkerConnection {
  const fake = {
    endpoint: { id, address: `unix:/${id}`, deviceKind: 'cpu' as const, deviceId: 0 },
    execute: (_request: unknown, _deadline: number, done?: (lost: boolean) => void): Promise<ExecuteAnswer> => {
      done?.(false);
      const o = outstanding();
      return Promise.resolve({ outputs: [], computeInputNs: 0n, computeInferNs: 0n, computeOutputNs: 0n, ...(o === undefined ? {} : { outstanding: o }) });
    },
  };
  return fake as unknown as WorkerConnection;
}

describe('worker choice with load reports', () => {
  it('without reports, picks the least busy by its own count, the first on a tie', () => {
    const slots = new InstanceSlots();
    slots.add(worker('a', () => undefined), 1);
    slots.add(worker('b', () => undefined), 1);
    expect(slots.acquire()?.worker.endpoint.id).toBe('a');
    expect(slots.acquire()?.worker.endpoint.id).toBe('b');
  });

  it('avoids a worker that reports other gateways’ work, and forgets a report past its TTL', () => {
    const slots = new InstanceSlots();
    slots.add(worker('a', () => undefined), 1);
    slots.add(worker('b', () => undefined), 1);
    const a = slots.acquire();
    if (a === undefined) throw new Error('no slot');
    slots.release(a);
    const now = performance.now();
    // 'a' answered holding 3 executions, none ours any more: 3 are another gateway's.
    noteReport(a, 3, now);
    expect(a.others).toBe(3);
    const next = slots.acquire();
    expect(next?.worker.endpoint.id).toBe('b');
    if (next) slots.release(next);
    // A stale report counts for nothing.
    noteReport(a, 3, now - REPORT_TTL_MS - 1);
    expect(slots.acquire()?.worker.endpoint.id).toBe('a');
  });

  it('counts only the others’: its own executions still out are not counted twice', () => {
    const slots = new InstanceSlots();
    slots.add(worker('a', () => undefined), 4);
    const p = slots.acquire();
    slots.acquire();
    if (p === undefined) throw new Error('no slot');
    // Two of ours out; the worker holds 2: nobody else's.
    noteReport(p, 2);
    expect(p.others).toBe(0);
  });

  it('learns each report from the dispatcher’s answers', async () => {
    const slots = new InstanceSlots();
    const held = 5;
    slots.add(worker('a', () => held), 2);
    slots.add(worker('b', () => 0), 2);
    const dispatcher = new Dispatcher('m/1', slots);
    const first = slots.acquire();
    if (first === undefined) throw new Error('no slot');
    expect(first.worker.endpoint.id).toBe('a');
    await dispatcher.run(first, [], [], Date.now() + 1_000);
    // 'a' said it holds 5 of others' executions: the next two go to 'b', whose own count then passes 'a''s.
    expect([slots.acquire(), slots.acquire()].map((s) => s?.worker.endpoint.id)).toEqual(['b', 'b']);
  });
});
