import { status as GrpcStatus } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ServingError } from '../../../core/errors.js';
import { type ExecuteAnswer, type ExecuteCall } from '../../../core/execute-frame.js';
import { localWorkerArgs, parseServeOptions, UsageError } from '../../../gateway/options.js';
import { InProcessLink } from '../../../gateway/scheduling/in-process-workers.js';
import { isWorkerLost } from '../../../gateway/scheduling/worker-connection.js';
import { type ExecuteRequest } from '../../../proto/gen/worker.js';
import { type WorkerCalls } from '../../../worker/service.js';

// The gateway's link to a worker in its own process: what the worker gets,
// and the same deadline, loss and draining semantics as over a socket.

interface Sent {
  readonly request: ExecuteRequest;
  readonly borrowed: boolean | undefined;
  resolve(answer: ExecuteAnswer): void;
  reject(error: unknown): void;
}

function fakeCalls(): { calls: WorkerCalls; sent: Sent[] } {
  const sent: Sent[] = [];
  const calls: WorkerCalls = {
    loadModel: () => Promise.resolve({ inputs: [], outputs: [], executionProvider: 'cpu', fallbackReason: '' }),
    unloadModel: () => Promise.resolve(),
    execute: (request, _connection, borrowed) =>
      new Promise<ExecuteAnswer>((resolve, reject) => {
        sent.push({ request, borrowed, resolve, reject });
      }),
    status: () => ({ workerId: 'w', deviceKind: 'cpu', deviceId: 0, models: [] }),
  };
  return { calls, sent };
}

const ANSWER: ExecuteAnswer = { outputs: [], computeInputNs: 1n, computeInferNs: 2n, computeOutputNs: 3n, outstanding: 0 };
const ENDPOINT = { id: 'cpu0', address: 'in-process', deviceKind: 'cpu' as const, deviceId: 0 };

function call(data: Uint8Array | readonly Uint8Array[]): ExecuteCall {
  return { modelKey: 'm/1', inputs: [{ name: 'x', datatype: 'FP32', shape: [2n, 2n], data }], outputs: ['y'] };
}

const later = (ms: number): number => Date.now() + ms;

describe('InProcessLink', () => {
  it("lends a request's own bytes (borrowed) and joins a batch's parts into a buffer of its own", async () => {
    const { calls, sent } = fakeCalls();
    const link = new InProcessLink(ENDPOINT, calls);
    const bytes = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
    const single = link.execute(call(bytes), later(5_000));
    expect(sent[0]?.borrowed).toBe(true);
    expect(sent[0]?.request.inputs[0]?.data).toBe(bytes);
    sent[0]?.resolve(ANSWER);
    await expect(single).resolves.toBe(ANSWER);

    const a = Buffer.from(new Float32Array([1, 2]).buffer);
    const b = Buffer.from(new Float32Array([3, 4]).buffer);
    const joined = link.execute(call([a, b]), later(5_000));
    const data = sent[1]?.request.inputs[0]?.data as Buffer;
    expect(sent[1]?.borrowed).toBe(false);
    expect([...new Float32Array(data.buffer, data.byteOffset, 4)]).toEqual([1, 2, 3, 4]);
    // The whole ArrayBuffer is the input's: the worker may move it to its thread.
    expect([data.byteOffset, data.buffer.byteLength]).toEqual([0, 16]);
    sent[1]?.resolve(ANSWER);
    await joined;
  });

  it('gives up at the deadline while the run goes on, and says done only when the worker is', async () => {
    const { calls, sent } = fakeCalls();
    const link = new InProcessLink(ENDPOINT, calls);
    const done: boolean[] = [];
    const answer = link.execute(call(Buffer.alloc(16)), later(30), (lost) => done.push(lost));
    await expect(answer).rejects.toMatchObject({ code: GrpcStatus.DEADLINE_EXCEEDED, message: 'deadline exceeded while worker cpu0 was running the request' });
    expect(done).toEqual([]);
    sent[0]?.resolve(ANSWER);
    await new Promise((r) => setImmediate(r));
    expect(done).toEqual([false]);
  });

  it('refuses a deadline already past without running it', async () => {
    const { calls, sent } = fakeCalls();
    const done: boolean[] = [];
    await expect(new InProcessLink(ENDPOINT, calls).execute(call(Buffer.alloc(16)), Date.now() - 1, (lost) => done.push(lost))).rejects.toMatchObject({
      code: GrpcStatus.DEADLINE_EXCEEDED,
    });
    expect(sent).toEqual([]);
    expect(done).toEqual([false]);
  });

  it("keeps a worker's error as it is, and takes a draining worker's UNAVAILABLE as lost", async () => {
    const { calls, sent } = fakeCalls();
    const link = new InProcessLink(ENDPOINT, calls);
    const done: boolean[] = [];
    const bad = link.execute(call(Buffer.alloc(16)), later(5_000), (lost) => done.push(lost));
    sent[0]?.reject(new ServingError(GrpcStatus.INVALID_ARGUMENT, 'input "x" has shape [2,2]'));
    const error = await bad.catch((e: unknown) => e);
    expect(error).toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT, message: 'input "x" has shape [2,2]' });
    expect(isWorkerLost(error)).toBe(false);

    const draining = link.execute(call(Buffer.alloc(16)), later(5_000), (lost) => done.push(lost));
    sent[1]?.reject(new ServingError(GrpcStatus.UNAVAILABLE, 'worker cpu0 is draining'));
    expect(isWorkerLost(await draining.catch((e: unknown) => e))).toBe(true);
    expect(done).toEqual([false, true]);
  });

  it('fails the runs in flight and every later call as lost when the worker is lost', async () => {
    const { calls, sent } = fakeCalls();
    const link = new InProcessLink(ENDPOINT, calls);
    const done: boolean[] = [];
    const running = link.execute(call(Buffer.alloc(16)), later(5_000), (lost) => done.push(lost));
    link.lose('worker cpu0: an ONNX Runtime thread died');
    const error = await running.catch((e: unknown) => e);
    expect(isWorkerLost(error)).toBe(true);
    expect((error as Error).message).toBe('worker cpu0: an ONNX Runtime thread died');
    // The run's own end, later, changes nothing.
    sent[0]?.resolve(ANSWER);
    const after = await link.execute(call(Buffer.alloc(16)), later(5_000), (lost) => done.push(lost)).catch((e: unknown) => e);
    expect(isWorkerLost(after)).toBe(true);
    expect(done).toEqual([true, true]);
    expect(sent).toHaveLength(1);
    await expect(link.status()).rejects.toSatisfy(isWorkerLost);
  });
});

describe('--local-workers', () => {
  const parse = (...flags: string[]) => parseServeOptions(['--model-repository', 'm', ...flags]);

  it('defaults to worker processes; in-process runs one gateway process', () => {
    expect(parse().localWorkers).toBe('process');
    expect(parse('--local-workers', 'in-process')).toMatchObject({ localWorkers: 'in-process', gatewayProcesses: 1 });
    expect(parse('--local-workers', 'in-process', '--gateway-processes', '1')).toMatchObject({ localWorkers: 'in-process', gatewayProcesses: 1 });
    expect(parse('--local-workers', 'process', '--gateway-processes', '3')).toMatchObject({ localWorkers: 'process', gatewayProcesses: 3 });
  });

  it('refuses an unknown mode, and in-process with several gateway processes', () => {
    expect(() => parse('--local-workers', 'threads')).toThrow(new UsageError('--local-workers "threads" is not "process" or "in-process"'));
    expect(() => parse('--local-workers', 'in-process', '--gateway-processes', '2')).toThrow(UsageError);
    expect(() => parse('--local-workers', 'in-process', '--gateway-processes', '2')).toThrow(/one gateway process/);
  });
});

describe('--inline-run-us on fabriek serve', () => {
  const parse = (...flags: string[]) => parseServeOptions(['--model-repository', 'm', ...flags]);

  it("passes the bound on to the local workers, and nothing when absent (the workers' default)", () => {
    expect(localWorkerArgs(parse())).toEqual([]);
    expect(localWorkerArgs(parse('--inline-run-us', '0'))).toEqual(['--inline-run-us', '0']);
    expect(localWorkerArgs(parse('--inline-run-us', '500'))).toEqual(['--inline-run-us', '500']);
  });

  it('refuses a bound that is not a whole number of µs up to 1 s', () => {
    for (const bad of ['2.5', 'fast', '1000001', '-5']) {
      expect(() => parse(`--inline-run-us=${bad}`)).toThrow(new UsageError(`--inline-run-us: expected an integer from 0 to 1000000, got '${bad}'`));
    }
  });
});
