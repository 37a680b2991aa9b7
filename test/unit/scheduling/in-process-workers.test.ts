import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { MAX_EXECUTIONS_AHEAD_PER_INSTANCE } from '../../../core/pipelining.js';
import { InProcessWorkers } from '../../../gateway/scheduling/in-process-workers.js';
import { isWorkerLost } from '../../../gateway/scheduling/worker-connection.js';
import { type WorkerLink } from '../../../gateway/scheduling/worker-link.js';
import { type WorkerRuntime } from '../../../worker/runtime.js';

// The gateway's in-process workers: what happens when an ONNX Runtime thread
// dies (its sessions with it), with fake runtimes in place of the pool and host.

interface FakeRuntime {
  readonly die: (error: Error) => void;
  readonly closed: string[];
  /** Runs in flight never end on their own: the test decides. */
  readonly runs: number;
}

function fakes(): { runtimes: FakeRuntime[]; create: (args: unknown, logger: unknown, onFatal: (e: Error) => void) => WorkerRuntime } {
  const runtimes: FakeRuntime[] = [];
  const create = (_args: unknown, _logger: unknown, onFatal: (e: Error) => void): WorkerRuntime => {
    const closed: string[] = [];
    const state = { die: onFatal, closed, runs: 0 };
    runtimes.push(state);
    const host = {
      status: () => [],
      info: () => ({ inputs: [{ name: 'x', datatype: 'FP32', shape: [-1], dimNames: [] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1], dimNames: [] }] }),
      execute: () => {
        state.runs++;
        return new Promise(() => undefined);
      },
      outstanding: () => 0,
      closeAll: async () => void closed.push('host'),
    };
    const pool = { size: 1, close: async () => void closed.push('pool') };
    return { host, pool } as unknown as WorkerRuntime;
  };
  return { runtimes, create };
}

describe('InProcessWorkers', () => {
  it('fails the runs in flight as lost when a thread dies, closes that runtime, and starts the worker afresh', async () => {
    vi.useFakeTimers();
    try {
      const { runtimes, create } = fakes();
      const up: WorkerLink[] = [];
      const down: string[] = [];
      const workers = new InProcessWorkers([{ id: 'cpu0', deviceKind: 'cpu', deviceId: 0 }], {
        maxMessageBytes: 1 << 20,
        log: pino({ level: 'silent' }),
        onUp: async (link) => void up.push(link),
        onDown: (id, reason) => void down.push(`${id}: ${reason}`),
        createRuntime: create as never,
      });
      await workers.start();
      expect(up.map((l) => l.endpoint)).toEqual([{ id: 'cpu0', deviceKind: 'cpu', deviceId: 0, address: 'in-process', maxAheadPerInstance: MAX_EXECUTIONS_AHEAD_PER_INSTANCE }]);
      expect(workers.pids()).toEqual(new Map([['cpu0', process.pid]]));

      const done: boolean[] = [];
      const call = { modelKey: 'm/1', inputs: [{ name: 'x', datatype: 'FP32', shape: [1n], data: Buffer.alloc(4) }], outputs: ['y'] };
      const running = up[0]!.execute(call, Date.now() + 60_000, (lost) => done.push(lost));
      await Promise.resolve();
      expect(runtimes[0]?.runs).toBe(1);

      runtimes[0]?.die(new Error('ORT thread 0 exited (code 1)'));
      expect(isWorkerLost(await running.catch((e: unknown) => e))).toBe(true);
      expect(done).toEqual([true]);
      expect(down).toEqual(['cpu0: worker cpu0: an ONNX Runtime thread died (ORT thread 0 exited (code 1))']);
      await vi.advanceTimersByTimeAsync(0);
      expect(runtimes[0]?.closed).toEqual(['host', 'pool']);
      // The old link takes nothing more; after the backoff a new runtime serves through a new link.
      expect(isWorkerLost(await up[0]!.execute(call, Date.now() + 60_000).catch((e: unknown) => e))).toBe(true);
      // A first restart within 30 s of the start waits 200 ms.
      await vi.advanceTimersByTimeAsync(150);
      expect(runtimes).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(50);
      expect(runtimes).toHaveLength(2);
      expect(up).toHaveLength(2);
      expect(up[1]).not.toBe(up[0]);
      await expect(up[1]!.status()).resolves.toMatchObject({ workerId: 'cpu0', models: [] });

      // A thread death during shutdown starts nothing.
      await workers.stop();
      expect(runtimes[1]?.closed).toEqual(['host', 'pool']);
      runtimes[1]?.die(new Error('late'));
      await vi.advanceTimersByTimeAsync(10_000);
      expect(runtimes).toHaveLength(2);
      expect(down).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });
});
