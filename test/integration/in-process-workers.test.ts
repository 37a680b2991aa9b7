import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelInferRequest, type ModelStatistics } from '../../proto/gen/inference.js';
import { type GatewayProcess, httpUrlOf, runCli, startGateway } from '../helpers/gateway-process.js';
import { runReference } from '../helpers/ort-reference.js';
import { putModel } from '../helpers/model-dir.js';
import { childPids } from '../helpers/processes.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';
import { setTimeout as sleep } from 'node:timers/promises';

// `fabriek serve --local-workers in-process`: the worker's ONNX Runtime
// sessions in the gateway's own process. One process serves; batches of many
// requests and single requests answer what ONNX Runtime answers for each
// request alone; bad input gets the same statuses; SIGTERM ends it.
// (FABRIEK_TEST_LOCAL_WORKERS=in-process runs the other integration tests so.)

const SIXTEEN = Array.from({ length: 16 }, (_, i) => i * 0.5 - 3);

const src = (name: string): string => join(TEST_REPOSITORY, name, '1', 'model.onnx');

const addModel = async (repo: string, name: string, from: string, config?: string): Promise<void> => putModel(repo, name, config, await readFile(from));

function rowInput(i: number, cols: number, rows = 1): Uint8Array {
  const a = new Float32Array(rows * cols);
  for (let k = 0; k < a.length; k++) a[k] = Math.cos(i * 3.1 + k * 0.02);
  return new Uint8Array(a.buffer);
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

describe('local workers in the gateway process', () => {
  let repo: string;
  let gw: GatewayProcess;
  const stats = async (model: string): Promise<ModelStatistics> => {
    const s = (await gw.client.modelStatistics(model, '1')).modelStats[0];
    if (!s) throw new Error(`no statistics for ${model}`);
    return s;
  };

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-in-process-'));
    await addModel(repo, 'mlp', src('mlp'), 'max_batch_size: 16\ndynamic_batching { max_queue_delay_microseconds: 5000 }\ninstance_group [ { count: 1, kind: KIND_CPU } ]\n');
    await addModel(repo, 'identity_fp32', src('identity_fp32'));
    // One gateway process: in-process workers refuse more, so FABRIEK_TEST_GATEWAY_PROCESSES=2 must not apply here.
    gw = await startGateway(['--model-repository', repo, '--local-workers', 'in-process', '--gateway-processes', '1', '--log-level', 'silent']);
  });

  afterAll(async () => {
    if (gw) expect(await gw.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  it('runs its models in the one gateway process: no worker process', () => {
    expect(childPids(gw.child.pid as number)).toEqual([]);
    expect(gw.readyLine).toContain('2 model versions ready');
    expect(gw.readyLine).toContain('; workers in the gateway process; open: no --tenants');
  });

  it("merges concurrent requests into batches, each answer equal to ONNX Runtime's on that request alone", async () => {
    const before = await stats('mlp');
    const n = 48;
    const inputs = Array.from({ length: n }, (_, i) => rowInput(i, 784, 1 + (i % 2)));
    const answers = await Promise.all(inputs.map((x, i) => gw.client.modelInfer(req('mlp', 'input', 784, x, 1 + (i % 2)))));
    const after = await stats('mlp');
    expect(Number(after.executionCount - before.executionCount)).toBeLessThan(n);
    expect(after.batchStats.some((b) => b.batchSize > 2n)).toBe(true);
    for (const [i, answer] of answers.entries()) {
      const rows = 1 + (i % 2);
      const want = await runReference(src('mlp'), [{ name: 'input', datatype: 'FP32', shape: [rows, 784], raw: inputs[i]! }]);
      const w = new Float32Array(Uint8Array.from(want.get('logits')!.raw).buffer);
      const g = new Float32Array(Uint8Array.from(answer.rawOutputContents[0]!).buffer);
      expect(answer.outputs[0]?.shape.map(Number)).toEqual([rows, 10]);
      for (let k = 0; k < w.length; k++) expect(Math.abs(g[k]! - w[k]!), `request ${i} logit ${k}`).toBeLessThan(1e-4);
    }
  });

  it('answers over gRPC and HTTP with the bytes sent, the same request many times over', async () => {
    const x = rowInput(5, 16);
    const sent = req('identity_fp32', 'INPUT0', 16, x);
    // The same request object again and again: the gateway's bytes are lent to the worker, never moved away.
    for (let i = 0; i < 100; i++) {
      const answer = await gw.client.modelInfer(sent);
      expect(Buffer.from(answer.rawOutputContents[0]!)).toEqual(Buffer.from(x));
    }
    const r = await fetch(`${httpUrlOf(gw)}/v2/models/identity_fp32/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: SIXTEEN }] }),
    });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { outputs: { data: number[] }[] }).outputs[0]?.data).toEqual(SIXTEEN);
  });

  it('refuses bad input with the status and message it gets from worker processes, and keeps serving', async () => {
    const bad = await gw.client.modelInfer(req('mlp', 'input', 783, rowInput(1, 783))).catch((e: unknown) => e as ServiceError);
    expect(bad).toMatchObject({ code: GrpcStatus.INVALID_ARGUMENT });
    expect((bad as ServiceError).details).toBe("model 'mlp': input 'input': expected shape [-1,784], got [1,783]");
    const missing = await gw.client.modelInfer(req('nope', 'input', 4, rowInput(1, 4))).catch((e: unknown) => e as ServiceError);
    expect(missing).toMatchObject({ code: GrpcStatus.NOT_FOUND });
    const answer = await gw.client.modelInfer(req('identity_fp32', 'INPUT0', 16, rowInput(2, 16)));
    expect(Buffer.from(answer.rawOutputContents[0]!)).toEqual(Buffer.from(rowInput(2, 16)));
  });

  it('logs at the level LogSettings set, in its workers too', async () => {
    const settings = async (body: object): Promise<number> => (await fetch(`${httpUrlOf(gw)}/v2/logging`, { method: 'POST', body: JSON.stringify(body) })).status;
    const workerLoads = (): number => gw.stderr().split('\n').filter((l) => l.includes('"workerId":"cpu0"') && l.includes('"msg":"model loaded"')).length;
    const load = async (): Promise<void> => {
      expect((await fetch(`${httpUrlOf(gw)}/v2/repository/models/identity_fp32/load`, { method: 'POST', body: '{}' })).status).toBe(200);
    };
    // The gateway's stderr reaches this process through a pipe, after the answer at times: poll for a line,
    // and give one that must not come the same time.
    const lines = async (n: number): Promise<number> => {
      for (let waited = 0; workerLoads() < n && waited < 3_000; waited += 50) await sleep(50);
      return workerLoads();
    };
    await load();
    await sleep(300);
    expect(workerLoads()).toBe(0);
    expect(await settings({ log_error: true, log_warning: true, log_info: true, log_verbose_level: 1 })).toBe(200);
    await load();
    expect(await lines(1)).toBe(1);
    expect(await settings({ log_error: false, log_warning: false, log_info: false, log_verbose_level: 0 })).toBe(200);
    await load();
    await sleep(300);
    expect(workerLoads()).toBe(1);
  });

  it('refuses in-process workers with several gateway processes, and an unknown mode, as usage errors', async () => {
    const several = await runCli(['serve', '--model-repository', repo, '--local-workers', 'in-process', '--gateway-processes', '2']);
    expect(several.code).toBe(2);
    expect(several.stderr).toContain('--local-workers in-process runs in one gateway process');
    const unknown = await runCli(['serve', '--model-repository', repo, '--local-workers', 'threads']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('--local-workers "threads" is not "process" or "in-process"');
  });
});
