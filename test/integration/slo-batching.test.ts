import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelInferRequest, type ModelStatistics } from '../../proto/gen/inference.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { sampleValue } from '../helpers/metrics-text.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

// SLO-aware batching (batching_slo_ms, --batching-slo-ms) through the real
// CLI, its worker and the MLP 784→1024×3→10: the parameter round-trips in
// ModelConfig, and it sheds what cannot meet the SLO without computing it.
// How full its batches are under load is a figure of the machine's load, not
// a property: the benches measure it (bench:slo-goodput, bench:rayserve), and
// the batcher's choices (hold a send-ahead, wait for keep-up size, cut the
// efficient size) are tested with a fake clock in test/unit/slo-batcher.test.ts.

const ROW = 784;
const src = (name: string): string => join(TEST_REPOSITORY, name, '1', 'model.onnx');
const slo = (ms: string): string => `parameters { key: "batching_slo_ms" value { string_value: "${ms}" } }\n`;
const BATCHED = 'max_batch_size: 64\ndynamic_batching { max_queue_delay_microseconds: 0 }\ninstance_group [ { count: 1, kind: KIND_CPU } ]\n';

async function addModel(repo: string, name: string, from: string, config: string): Promise<void> {
  await mkdir(join(repo, name, '1'), { recursive: true });
  await copyFile(from, join(repo, name, '1', 'model.onnx'));
  await writeFile(join(repo, name, 'config.pbtxt'), `name: "${name}"\n${config}`);
}

function rowRequest(model: string, i: number): ModelInferRequest {
  const a = new Float32Array(ROW);
  for (let k = 0; k < ROW; k++) a[k] = Math.sin(i * 7.3 + k * 0.01);
  return {
    modelName: model,
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [{ name: 'input', datatype: 'FP32', shape: [1n, BigInt(ROW)], parameters: {} }],
    outputs: [],
    rawInputContents: [Buffer.from(a.buffer)],
  };
}

describe('SLO-aware batching through the real server', () => {
  let repo: string;
  let gw: GatewayProcess;
  let metricsUrl: string;
  const stats = async (model: string): Promise<ModelStatistics> => {
    const s = (await gw.client.modelStatistics(model, '1')).modelStats[0];
    if (!s) throw new Error(`no statistics for ${model}`);
    return s;
  };
  const metric = async (series: string): Promise<number | undefined> => sampleValue(await (await fetch(metricsUrl)).text(), series);

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-slo-'));
    // The server default (--batching-slo-ms 40) applies unless a model says otherwise; "0" opts out.
    await addModel(repo, 'fixed0', src('mlp'), BATCHED + slo('0'));
    // A loose SLO: nothing is shed, so the batches compare alone.
    await addModel(repo, 'slo', src('mlp'), BATCHED + slo('1000'));
    await addModel(repo, 'by_default', src('mlp'), BATCHED);
    await addModel(repo, 'tight', src('mlp'), BATCHED + slo('15'));
    await addModel(repo, 'bad_slo', src('identity_fp32'), 'max_batch_size: 8\ndynamic_batching { }\n' + slo('soon'));
    gw = await startGateway(['--model-repository', repo, '--log-level', 'silent', '--batching-slo-ms', '40', '--strict-readiness', 'false']);
    metricsUrl = `http://127.0.0.1:${/metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}/metrics`;
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  it('serves the SLO in force back in ModelConfig, from the model or the server default, and refuses a malformed one', async () => {
    const param = async (model: string): Promise<string | undefined> =>
      (await gw.client.modelConfig(model)).config?.parameters['batching_slo_ms']?.stringValue;
    expect(await param('slo')).toBe('1000');
    expect(await param('by_default')).toBe('40');
    expect(await param('fixed0')).toBe('0');
    expect(await metric('fabriek_batching_slo_seconds{model="slo",version="1"}')).toBe(1);
    expect(await metric('fabriek_batching_slo_seconds{model="by_default",version="1"}')).toBe(0.04);
    expect(await metric('fabriek_batching_slo_seconds{model="fixed0",version="1"}')).toBeUndefined();
    // Cold (nothing ran yet): a full batch is max_batch_size; fixed delays have none of their own.
    expect(await metric('fabriek_batch_full_rows{model="by_default",version="1"}')).toBeGreaterThanOrEqual(1);
    expect(await metric('fabriek_batch_full_rows{model="fixed0",version="1"}')).toBeUndefined();
    const bad = (await gw.client.repositoryIndex()).models.find((m) => m.name === 'bad_slo');
    expect(bad?.state).toBe('UNAVAILABLE');
    expect(bad?.reason).toMatch(/parameter 'batching_slo_ms': expected milliseconds between 0 and \d+ \(0 = off\), got 'soon'/);
  });

  it('sheds requests that cannot meet the SLO without computing them: UNAVAILABLE, counted as shed, never past the deadline', async () => {
    // Warm the cost model (on a busy machine one of these may be shed already).
    for (let i = 0; i < 4; i++) await gw.client.modelInfer(rowRequest('tight', i), {}).catch(() => undefined);
    const before = await stats('tight');
    const shedBefore = (await metric('nv_inference_request_failure{model="tight",version="1",reason="SHED"}')) ?? 0;
    const BURST = 400;
    const outcomes = await Promise.all(
      Array.from({ length: BURST }, (_, i) =>
        gw.client.modelInfer(rowRequest('tight', i), {}).then(
          () => 'ok' as const,
          (e: unknown) => e as ServiceError,
        ),
      ),
    );
    const failed = outcomes.filter((o): o is ServiceError => o !== 'ok');
    expect(failed.length).toBeGreaterThan(0);
    for (const e of failed) {
      expect(e.code).toBe(GrpcStatus.UNAVAILABLE);
      expect(e.details).toMatch(/^Request timeout expired: model 'tight\/1' shed the request before it ran/);
    }
    const after = await stats('tight');
    const answered = BURST - failed.length;
    // Statistics: every computed row was answered; every failure is a shed one, never computed.
    expect(Number(after.inferenceStats?.success?.count ?? 0n) - Number(before.inferenceStats?.success?.count ?? 0n)).toBe(answered);
    expect(Number(after.inferenceCount - before.inferenceCount)).toBe(answered);
    expect(Number(after.inferenceStats?.fail?.count ?? 0n) - Number(before.inferenceStats?.fail?.count ?? 0n)).toBe(failed.length);
    expect(((await metric('nv_inference_request_failure{model="tight",version="1",reason="SHED"}')) ?? 0) - shedBefore).toBe(failed.length);
    expect(await metric('fabriek_batch_computed_past_deadline{model="tight",version="1"}')).toBe(0);
  });
});
