import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelInferRequest, type ModelStatistics } from '../../proto/gen/inference.js';
import { type GatewayProcess, httpUrlOf, startGateway } from '../helpers/gateway-process.js';
import { slowChainModel } from '../../models/build/test-models.js';
import { runReference } from '../helpers/ort-reference.js';
import { waitFor } from '../helpers/processes.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

const src = (name: string): string => join(TEST_REPOSITORY, name, '1', 'model.onnx');

async function addModel(repo: string, name: string, from: string, config: string): Promise<void> {
  await mkdir(join(repo, name, '1'), { recursive: true });
  await copyFile(from, join(repo, name, '1', 'model.onnx'));
  await writeFile(join(repo, name, 'config.pbtxt'), config);
}

function req(model: string, name: string, cols: number, data: Uint8Array, rows = 1): ModelInferRequest {
  return {
    modelName: model,
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [{ name, datatype: 'FP32', shape: [BigInt(rows), BigInt(cols)], parameters: {} }],
    outputs: [],
    rawInputContents: [Buffer.from(data.buffer, data.byteOffset, data.byteLength)],
  };
}

/** A distinct input per request, so a mixed-up answer cannot pass. */
function rowInput(i: number, cols: number, rows = 1): Uint8Array {
  const a = new Float32Array(rows * cols);
  for (let k = 0; k < a.length; k++) a[k] = Math.sin(i * 7.3 + k * 0.01);
  return new Uint8Array(a.buffer);
}

const failure = (p: Promise<unknown>): Promise<ServiceError | undefined> =>
  p.then(
    () => undefined,
    (e: unknown) => e as ServiceError,
  );

describe('dynamic batching through the real server', () => {
  let repo: string;
  let gw: GatewayProcess;
  const stats = async (model: string): Promise<ModelStatistics> => {
    const s = (await gw.client.modelStatistics(model, '1')).modelStats[0];
    if (!s) throw new Error(`no statistics for ${model}`);
    return s;
  };

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-batching-'));
    await addModel(
      repo,
      'mlp',
      src('mlp'),
      'max_batch_size: 16\ndynamic_batching { max_queue_delay_microseconds: 5000 }\ninstance_group [ { count: 1, kind: KIND_CPU } ]\n',
    );
    // Waits up to 30 s for a batch of exactly 8: queued requests stay queued.
    await addModel(
      repo,
      'waiting',
      src('identity_fp32'),
      'max_batch_size: 8\ndynamic_batching { preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 30000000 }\n',
    );
    await addModel(
      repo,
      'rejecting',
      src('identity_fp32'),
      'max_batch_size: 8\ndynamic_batching { preferred_batch_size: [ 8 ] max_queue_delay_microseconds: 30000000 ' +
        'default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 300000 max_queue_size: 2 } }\n',
    );
    // No dynamic batching, one instance: a long run holds it, and what comes next waits in the gateway's queue.
    // 4,096 MatMuls by one 512×512 weight: about 5 ms a row here, from 2 KB of request.
    await mkdir(join(repo, 'blocking', '1'), { recursive: true });
    await writeFile(join(repo, 'blocking', '1', 'model.onnx'), slowChainModel('blocking', 512, 4096));
    await writeFile(join(repo, 'blocking', 'config.pbtxt'), 'max_batch_size: 256\ninstance_group [ { count: 1, kind: KIND_CPU } ]\n');
    gw = await startGateway(['--model-repository', repo, '--log-level', 'silent']);
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  it('merges 64 concurrent clients into fewer executions, each answer equal to ONNX Runtime on that request alone', async () => {
    const before = await stats('mlp');
    const n = 64;
    const inputs = Array.from({ length: n }, (_, i) => rowInput(i, 784, 1 + (i % 3)));
    const answers = await Promise.all(inputs.map((x, i) => gw.client.modelInfer(req('mlp', 'input', 784, x, 1 + (i % 3)))));
    const after = await stats('mlp');
    const rows = inputs.reduce((sum, _, i) => sum + 1 + (i % 3), 0);
    expect(Number(after.inferenceCount - before.inferenceCount)).toBe(rows);
    const executions = Number(after.executionCount - before.executionCount);
    expect(executions).toBeLessThan(n);
    expect(executions).toBeGreaterThanOrEqual(Math.ceil(rows / 16));
    expect(after.batchStats.some((b) => b.batchSize > 3n)).toBe(true);
    for (const [i, answer] of answers.entries()) {
      const r = 1 + (i % 3);
      const want = await runReference(src('mlp'), [{ name: 'input', datatype: 'FP32', shape: [r, 784], raw: inputs[i]! }]);
      const w = new Float32Array(Uint8Array.from(want.get('logits')!.raw).buffer);
      const g = new Float32Array(Uint8Array.from(answer.rawOutputContents[0]!).buffer);
      expect(answer.outputs[0]?.shape.map(Number)).toEqual([r, 10]);
      expect(g.length).toBe(w.length);
      for (let k = 0; k < w.length; k++) expect(Math.abs(g[k]! - w[k]!), `request ${i} logit ${k}`).toBeLessThan(1e-4);
    }
  });

  it('never runs a request cancelled or expired while queued', async () => {
    const before = await stats('waiting');
    const controller = new AbortController();
    const cancelled = failure(gw.client.modelInfer(req('waiting', 'INPUT0', 16, rowInput(1, 16)), { signal: controller.signal }));
    const expired = failure(gw.client.modelInfer(req('waiting', 'INPUT0', 16, rowInput(2, 16)), { timeoutMs: 300 }));
    await new Promise((r) => setTimeout(r, 100));
    controller.abort();
    expect((await cancelled)?.code).toBe(GrpcStatus.CANCELLED);
    expect((await expired)?.code).toBe(GrpcStatus.DEADLINE_EXCEEDED);
    // Both left the queue: the server counts two failures and no execution.
    await waitFor(async () => Number((await stats('waiting')).inferenceStats?.fail?.count ?? 0n) - Number(before.inferenceStats?.fail?.count ?? 0n) === 2, 5_000, 'two failures');
    const mid = await stats('waiting');
    expect(mid.executionCount).toBe(before.executionCount);
    // Exactly 8 new requests form one batch of 8: the two that left are not in it.
    const eight = await Promise.all(Array.from({ length: 8 }, (_, i) => gw.client.modelInfer(req('waiting', 'INPUT0', 16, rowInput(10 + i, 16)))));
    for (const [i, a] of eight.entries()) expect(Buffer.from(a.rawOutputContents[0]!)).toEqual(Buffer.from(rowInput(10 + i, 16)));
    const after = await stats('waiting');
    expect(Number(after.executionCount - before.executionCount)).toBe(1);
    expect(Number(after.inferenceCount - before.inferenceCount)).toBe(8);
    expect(after.batchStats.find((b) => b.batchSize === 8n)?.computeInfer?.count).toBe(1n);
  });

  it('over HTTP as well: a request whose client goes away, or whose Timeout-Ms passes, leaves the queue unrun', async () => {
    const before = await stats('waiting');
    const url = `${httpUrlOf(gw)}/v2/models/waiting/infer`;
    const body = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: Array.from({ length: 16 }, (_, k) => k) }] });
    const gone = new AbortController();
    const cancelled = fetch(url, { method: 'POST', body, signal: gone.signal }).then(
      () => 'answered',
      () => 'aborted',
    );
    const timedOut = fetch(url, { method: 'POST', body, headers: { 'timeout-ms': '300' } });
    await new Promise((r) => setTimeout(r, 100));
    gone.abort();
    expect(await cancelled).toBe('aborted');
    const late = await timedOut;
    expect(late.status).toBe(400); // Triton's mapping: DEADLINE_EXCEEDED is not one of the codes with an HTTP status of its own
    expect(((await late.json()) as { error: string }).error).toMatch(/deadline exceeded before the request ran/);
    // Both left the queue: two failures, no execution.
    await waitFor(async () => Number((await stats('waiting')).inferenceStats?.fail?.count ?? 0n) - Number(before.inferenceStats?.fail?.count ?? 0n) === 2, 5_000, 'two failures');
    expect((await stats('waiting')).executionCount).toBe(before.executionCount);
  });

  it('over HTTP, a request queued behind a busy instance is answered at its Timeout-Ms, not when the instance frees, and never runs', async () => {
    const before = await stats('blocking');
    // Two runs of 256 rows (over a second each here) hold the instance and the one execution sent ahead of it.
    const settled: string[] = [];
    const blockers = [1, 2].map((i) =>
      gw.client.modelInfer(req('blocking', 'input', 512, rowInput(i, 512, 256), 256)).then(() => settled.push(`blocker ${i}`)),
    );
    await new Promise((r) => setTimeout(r, 200));
    const body = JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 512], data: Array.from({ length: 512 }, (_, k) => k / 512) }] });
    const probe = fetch(`${httpUrlOf(gw)}/v2/models/blocking/infer`, { method: 'POST', body, headers: { 'timeout-ms': '300' } }).then(async (r) => {
      settled.push('probe');
      return { status: r.status, text: await r.text() };
    });
    const answer = await probe;
    await Promise.all(blockers);
    expect(answer.status).toBe(400);
    // Ended in the gateway's queue by its Timeout-Ms, or at the worker link by the same deadline: either way unrun.
    expect(answer.text).toMatch(/deadline exceeded before the request (ran|was sent to worker)/);
    // It did not wait for the instance to free.
    expect(settled[0]).toBe('probe');
    expect(settled).toHaveLength(3);
    const after = await stats('blocking');
    expect(after.executionCount - before.executionCount).toBe(2n);
  });

  it("answers Triton's UNAVAILABLE for a full queue at once and for a queue timeout with REJECT", async () => {
    const settledAt = new Map<string, number>();
    const timed = (name: string, p: Promise<unknown>): Promise<ServiceError | undefined> =>
      failure(p).finally(() => settledAt.set(name, Date.now()));
    const t0 = Date.now();
    const first = timed('first', gw.client.modelInfer(req('rejecting', 'INPUT0', 16, rowInput(1, 16))));
    const second = timed('second', gw.client.modelInfer(req('rejecting', 'INPUT0', 16, rowInput(2, 16))));
    await new Promise((r) => setTimeout(r, 50));
    const third = await timed('third', gw.client.modelInfer(req('rejecting', 'INPUT0', 16, rowInput(3, 16))));
    expect(third?.code).toBe(GrpcStatus.UNAVAILABLE);
    expect(third?.details).toMatch(/^Exceeds maximum queue size/);
    for (const e of [await first, await second]) {
      expect(e?.code).toBe(GrpcStatus.UNAVAILABLE);
      expect(e?.details).toMatch(/^Request timeout expired/);
    }
    // The full queue answered at once, before the queued ones timed out (300 ms).
    expect(settledAt.get('third')!).toBeLessThan(settledAt.get('first')!);
    expect(settledAt.get('first')! - t0).toBeGreaterThanOrEqual(290);
    expect((await stats('rejecting')).executionCount).toBe(0n);
  });
});
