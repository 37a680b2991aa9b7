import { readFile } from 'node:fs/promises';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { type ServingError } from '../../core/errors.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Datatype } from '../../core/datatypes.js';
import { executionSlots, MAX_EXECUTIONS_AHEAD_PER_INSTANCE } from '../../core/pipelining.js';
import { type TensorData } from '../../proto/gen/worker.js';
import { runReference } from '../helpers/ort-reference.js';
import { sample } from '../helpers/tensor-data.js';
import { buildWorkerModels, SLOW_N, type WorkerModelFiles } from '../helpers/worker-fixtures.js';
import { startWorker, type WorkerProcess } from '../helpers/worker-process.js';

// The real worker process (dist/worker/main.js) over a unix socket, through
// the gateway's WorkerConnection, compared with onnxruntime-node in this process.

let models: WorkerModelFiles;
let worker: WorkerProcess;

beforeAll(async () => {
  models = await buildWorkerModels();
  worker = await startWorker(['--worker-id', 'w-test']);
});

afterAll(async () => {
  await worker?.stop();
});

function tensor(name: string, datatype: string, shape: readonly number[], data: Uint8Array): TensorData {
  return { name, datatype, shape: shape.map(BigInt), data: Buffer.from(data) };
}

async function expectStatus(call: Promise<unknown>, code: GrpcStatus, message: RegExp): Promise<void> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e as ServingError,
  );
  expect(error, 'expected the call to fail').toBeDefined();
  expect(GrpcStatus[error?.code ?? GrpcStatus.OK]).toBe(GrpcStatus[code]);
  expect(error?.message).toMatch(message);
}

/** Resolves once `key` has `busy` busy instances (Status is answered while ORT computes in a thread). */
async function waitForBusy(w: WorkerProcess, key: string, busy: number): Promise<void> {
  for (;;) {
    const s = await w.status();
    if (s.models.find((m) => m.modelKey === key)?.busyInstances === busy) return;
  }
}

const slowInput = (): TensorData =>
  tensor('X', 'FP32', [SLOW_N, SLOW_N], new Uint8Array(SLOW_N * SLOW_N * 4));
const slowOptions = {
  intraOpThreads: 1,
  interOpThreads: 1,
  graphOptimizationLevel: 'all',
  enableCpuMemArena: true,
  executionMode: 'sequential',
  enableMemPattern: true,
};

describe('worker process', () => {
  it('reports ready over IPC with the socket address, and answers Status', async () => {
    expect(worker.ready).toMatchObject({ type: 'ready', workerId: 'w-test' });
    expect(worker.ready.address).toMatch(/^unix:\/.*worker\.sock$/);
    const s = await worker.status();
    expect(s).toMatchObject({ workerId: 'w-test', deviceKind: 'cpu', deviceId: 0 });
  });

  it('loads a model and reports its inputs, outputs and provider', async () => {
    const r = await worker.load({ modelKey: 'identity_fp32/1', modelPath: models.path('identity_fp32'), instanceCount: 2 });
    expect(r.inputs).toEqual([{ name: 'INPUT0', datatype: 'FP32', shape: [-1n, 16n], dimNames: ['batch', ''] }]);
    expect(r.outputs).toEqual([{ name: 'OUTPUT0', datatype: 'FP32', shape: [-1n, 16n], dimNames: ['batch', ''] }]);
    expect(r).toMatchObject({ executionProvider: 'cpu', fallbackReason: '' });
    const s = await worker.status();
    expect(s.models).toContainEqual({ ...s.models[0], modelKey: 'identity_fp32/1', instanceCount: 2, busyInstances: 0, executionProvider: 'cpu' });
  });

  const cases: Array<[string, Datatype, number[]]> = [
    ['identity_fp32', 'FP32', [1, 16]],
    // 64 × 16 × 4 bytes: above Node's Buffer pool size, so the worker adopts the decoded buffer.
    ['identity_fp32', 'FP32', [64, 16]],
    ['identity_int64', 'INT64', [3, 5]],
    ['identity_bool', 'BOOL', [2, 7]],
    ['identity_fp16', 'FP16', [4, 3]],
    ['identity_string', 'BYTES', [2, 5]],
  ];
  it.each(cases)('executes %s with %s %j like onnxruntime-node in-process', async (name, datatype, shape) => {
    const key = `${name}/1`;
    if (!(await worker.status()).models.some((m) => m.modelKey === key)) {
      await worker.load({ modelKey: key, modelPath: models.path(name) });
    }
    const raw = sample(datatype, shape.reduce((a, b) => a * b, 1)).raw;
    const r = await worker.execute({ modelKey: key, inputs: [tensor('INPUT0', datatype, shape, raw)] });
    const expected = await runReference(models.path(name), [{ name: 'INPUT0', datatype, shape, raw }]);
    expect(r.outputs).toHaveLength(1);
    const [out] = r.outputs;
    expect(out?.name).toBe('OUTPUT0');
    expect(out?.datatype).toBe(datatype);
    expect(out?.shape.map(Number)).toEqual(expected.get('OUTPUT0')?.shape);
    expect(Buffer.compare(out?.data ?? Buffer.alloc(0), Buffer.from(expected.get('OUTPUT0')?.raw ?? []))).toBe(0);
    expect(r.computeInferNs).toBeGreaterThan(0n);
    expect(r.computeInputNs).toBeGreaterThan(0n);
    expect(r.computeOutputNs).toBeGreaterThan(0n);
  });

  it('carries batches far above gRPC’s 4 MiB default message size (16 MiB each way)', async () => {
    const rows = 262_144;
    const raw = new Uint8Array(new Float32Array(rows * 16).map((_, i) => i % 1000).buffer);
    const r = await worker.execute({ modelKey: 'identity_fp32/1', inputs: [tensor('INPUT0', 'FP32', [rows, 16], raw)] });
    expect(r.outputs[0]?.shape).toEqual([BigInt(rows), 16n]);
    expect(Buffer.compare(r.outputs[0]?.data ?? Buffer.alloc(0), raw)).toBe(0);
  });

  it('computes add_sub from model_bytes and returns only the requested outputs', async () => {
    const bytes = await readFile(models.path('add_sub'));
    await worker.load({ modelKey: 'add_sub/1', modelBytes: bytes });
    const a = sample('FP32', 32).raw;
    const b = Buffer.from(new Float32Array(32).map((_, i) => i * 0.25).buffer);
    const inputs = [
      { name: 'INPUT0', datatype: 'FP32' as const, shape: [2, 16], raw: a },
      { name: 'INPUT1', datatype: 'FP32' as const, shape: [2, 16], raw: b },
    ];
    const r = await worker.execute({
      modelKey: 'add_sub/1',
      inputs: inputs.map((i) => tensor(i.name, i.datatype, i.shape, i.raw)),
      outputs: ['OUTPUT1'],
    });
    const expected = await runReference(models.path('add_sub'), inputs);
    expect(r.outputs.map((o) => o.name)).toEqual(['OUTPUT1']);
    expect(Buffer.compare(r.outputs[0]?.data ?? Buffer.alloc(0), Buffer.from(expected.get('OUTPUT1')?.raw ?? []))).toBe(0);
  });

  it('answers NOT_FOUND for an unknown model key', async () => {
    await expectStatus(worker.execute({ modelKey: 'nope/1' }), GrpcStatus.NOT_FOUND, /"nope\/1" is not loaded/);
    await expectStatus(worker.unload('nope/1'), GrpcStatus.NOT_FOUND, /"nope\/1" is not loaded/);
  });

  it('rejects inputs that do not match the model with INVALID_ARGUMENT', async () => {
    const key = 'identity_fp32/1';
    const fp32 = sample('FP32', 16).raw;
    await expectStatus(
      worker.execute({ modelKey: key, inputs: [tensor('INPUT0', 'INT32', [1, 16], fp32)] }),
      GrpcStatus.INVALID_ARGUMENT,
      /datatype "INT32"; the model expects FP32/,
    );
    await expectStatus(
      worker.execute({ modelKey: key, inputs: [tensor('INPUT0', 'FP32', [2, 16], fp32)] }),
      GrpcStatus.INVALID_ARGUMENT,
      /has 64 bytes; shape \[2,16\] of FP32 needs 128/,
    );
    await expectStatus(
      worker.execute({ modelKey: key, inputs: [tensor('INPUT0', 'FP32', [1, 8, 2], fp32)] }),
      GrpcStatus.INVALID_ARGUMENT,
      /shape \[1,8,2\]; the model expects \[-1,16\]/,
    );
    await expectStatus(
      worker.execute({ modelKey: key, inputs: [tensor('BOGUS', 'FP32', [1, 16], fp32)] }),
      GrpcStatus.INVALID_ARGUMENT,
      /unknown input "BOGUS"/,
    );
    await expectStatus(worker.execute({ modelKey: key }), GrpcStatus.INVALID_ARGUMENT, /missing input\(s\) "INPUT0"/);
  });

  it('reports load errors clearly and keeps serving', async () => {
    await expectStatus(
      worker.load({ modelKey: 'bad/1', modelPath: models.notOnnx }),
      GrpcStatus.FAILED_PRECONDITION,
      /model "bad\/1" failed to load: instance bad\/1#0: .*Protobuf parsing failed/,
    );
    await expectStatus(
      worker.load({ modelKey: 'bf16/1', modelPath: models.path('bf16_identity') }),
      GrpcStatus.FAILED_PRECONDITION,
      /bfloat16/,
    );
    await expectStatus(worker.load({ modelKey: 'empty/1' }), GrpcStatus.INVALID_ARGUMENT, /exactly one of model_path/);
    expect((await worker.status()).models.map((m) => m.modelKey)).not.toContain('bad/1');
  });

  it('falls back from CUDA to WebGPU to CPU with a reason when a GPU provider cannot be used', async () => {
    const r = await worker.load({ modelKey: 'gpu/1', modelPath: models.path('identity_fp32'), deviceKind: 'gpu', deviceId: 0 });
    if (r.executionProvider === 'cpu') {
      // Each provider tried says why it was passed over, on one line each.
      expect(r.fallbackReason).toMatch(/^CUDA execution provider unavailable on device 0: [^\n]+; WebGPU execution provider unavailable on device 0: [^\n]+$/);
    } else expect(r).toMatchObject({ executionProvider: expect.stringMatching(/^(cuda|webgpu):0$/), fallbackReason: '' });
    await worker.unload('gpu/1');
    await expectStatus(worker.execute({ modelKey: 'gpu/1' }), GrpcStatus.NOT_FOUND, /not loaded/);
    // Dawn cannot be pointed at a second GPU: there only CUDA is tried.
    const second = await worker.load({ modelKey: 'gpu1/1', modelPath: models.path('identity_fp32'), deviceKind: 'gpu', deviceId: 1 });
    if (second.executionProvider === 'cpu') expect(second.fallbackReason).toMatch(/^CUDA execution provider unavailable on device 1: [^;]+$/);
    else expect(second).toMatchObject({ executionProvider: 'cuda:1', fallbackReason: '' });
    await worker.unload('gpu1/1');
  });

  it('queues Execute calls while every instance is busy, and answers RESOURCE_EXHAUSTED once the queue is full too', async () => {
    await worker.load({ modelKey: 'slow/1', modelPath: models.path('slow_matmul'), sessionOptions: slowOptions });
    const first = worker.execute({ modelKey: 'slow/1', inputs: [slowInput()] });
    await waitForBusy(worker, 'slow/1', 1);
    const slots = executionSlots(1, MAX_EXECUTIONS_AHEAD_PER_INSTANCE);
    // A worker's default queue is what the gateway that started it sends ahead of short runs: one
    // instance takes `slots` calls, the running one and slots - 1 waiting.
    // Sent together, the calls may arrive in any order, so count the refusals instead of naming one.
    const more = await Promise.allSettled(
      Array.from({ length: slots }, () => worker.execute({ modelKey: 'slow/1', inputs: [slowInput()] })),
    );
    const refused = more.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    expect(refused).toHaveLength(1);
    await expectStatus(
      Promise.reject(refused[0]),
      GrpcStatus.RESOURCE_EXHAUSTED,
      new RegExp(`all 1 instance\\(s\\) are busy and their queue is full; a worker accepts at most ${slots} `),
    );
    const served = [await first, ...more.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))];
    expect(served).toHaveLength(slots);
    for (const r of served) expect(r.outputs[0]?.shape).toEqual([BigInt(SLOW_N), BigInt(SLOW_N)]);
    await expect(worker.execute({ modelKey: 'slow/1', inputs: [slowInput()] })).resolves.toBeDefined();
  });
});

describe('worker process lifecycle', () => {
  it('on SIGTERM finishes the in-flight Execute, then exits 0', async () => {
    const w = await startWorker();
    await w.load({ modelKey: 'slow/1', modelPath: models.path('slow_matmul'), sessionOptions: slowOptions });
    const inFlight = w.execute({ modelKey: 'slow/1', inputs: [slowInput()] });
    await waitForBusy(w, 'slow/1', 1);
    w.child.kill('SIGTERM');
    const r = await inFlight;
    expect(r.outputs).toHaveLength(1);
    expect(await w.stop()).toBe(0);
    expect(w.stderr()).toMatch(/"msg":"worker stopped"/);
  });

  it('exits when its parent disconnects the IPC channel', async () => {
    const w = await startWorker();
    w.child.disconnect();
    expect(await w.exited).toBe(0);
    expect(w.stderr()).toMatch(/parent disconnected/);
  });

  it('exits 2 with usage on bad arguments', async () => {
    await expect(startWorker(['--device', 'tpu'])).rejects.toThrow(/exited with 2[\s\S]*--device "tpu"/);
  });
});
