import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceGrpcClient, input } from '../../client/index.js';
import { WorkerConnection } from '../../gateway/scheduling/worker-connection.js';
import { buildManyModels, constantOf, MANY_MODELS_WIDTH, manyModelName } from '../../models/build/many-models.js';
import { slowChainModel } from '../../models/build/test-models.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { sampleValue } from '../helpers/metrics-text.js';

// --model-control-mode on-demand with --gateway-processes 2: the memory
// budget is the host's. Clients on separate connections reach both gateway
// processes; every load asks the primary for room, which evicts in either
// process, never a model busy in either. The worker itself (its Status,
// polled throughout) never holds more models than the budget.

const COUNT = 12;
const BUDGET = 4;
const X = Float32Array.from({ length: MANY_MODELS_WIDTH }, (_, k) => k);
const SLOW_WIDTH = 512;
const SLOW_CALLS = 48;

async function expectOwnAnswer(client: InferenceGrpcClient, i: number): Promise<void> {
  const r = await client.infer(manyModelName(i), [input('x', 'FP32', [1, MANY_MODELS_WIDTH], X)], { timeoutMs: 20_000 });
  expect([...r.data('y', 'FP32')], manyModelName(i)).toEqual([...X].map((v) => v + constantOf(i)));
}

describe(`on demand with 2 gateway processes, ${COUNT} models, --model-memory-budget ${BUDGET}models`, () => {
  let repo: string;
  let gw: GatewayProcess;
  let clients: InferenceGrpcClient[];
  let metricsUrl: string;
  let worker: WorkerConnection;

  const metrics = async (): Promise<string> => (await fetch(metricsUrl)).text();
  /** Requests ended by each gateway process, by pid. */
  const perProcess = async (): Promise<Map<number, number>> =>
    new Map([...(await metrics()).matchAll(/^fabriek_gateway_process_requests\{pid="(\d+)"\} (\d+)/gm)].map((m) => [Number(m[1]), Number(m[2])]));
  /** The gateway process a client's connection reached: the one whose count of ended requests its call moved. */
  const processOf = async (client: InferenceGrpcClient): Promise<number> => {
    const before = await perProcess();
    await expectOwnAnswer(client, 0);
    const after = await perProcess();
    const moved = [...after].filter(([pid, n]) => n !== (before.get(pid) ?? 0)).map(([pid]) => pid);
    expect(moved).toHaveLength(1);
    return moved[0] as number;
  };
  /** The most models the worker held at once while `during` ran (its Status, every 5 ms). */
  const workerPeak = async (during: () => Promise<unknown>): Promise<number> => {
    let peak = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        peak = Math.max(peak, (await worker.status()).models.length);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    try {
      await during();
    } finally {
      polling = false;
      await poll;
    }
    return Math.max(peak, (await worker.status()).models.length);
  };

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-on-demand-processes-'));
    await buildManyModels(repo, COUNT);
    await mkdir(join(repo, 'slow', '1'), { recursive: true });
    await writeFile(join(repo, 'slow', '1', 'model.onnx'), slowChainModel('slow', SLOW_WIDTH, 2048));
    gw = await startGateway(
      ['--model-repository', repo, '--model-control-mode', 'on-demand', '--model-memory-budget', `${BUDGET}models`, '--workers', '1', '--gateway-processes', '2', '--log-level', 'warn'],
      120_000,
    );
    metricsUrl = `http://127.0.0.1:${/metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}/metrics`;
    // Separate connections (no shared subchannel pool): node:cluster hands them to both processes.
    clients = Array.from({ length: 4 }, () => new InferenceGrpcClient(gw.address, { channelOptions: { 'grpc.use_local_subchannel_pool': 1 } }));
    const socket = join(tmpdir(), `fabriek-${gw.child.pid}-cpu0.sock`);
    worker = new WorkerConnection({ id: 'cpu0', address: `unix:${socket}`, deviceKind: 'cpu', deviceId: 0 }, { maxMessageBytes: 1 << 20 });
  }, 150_000);

  afterAll(async () => {
    worker?.close();
    for (const c of clients ?? []) c.close();
    if (gw) expect(await gw.stop()).toBe(0);
    if (repo) await rm(repo, { recursive: true, force: true });
  });

  it('the ready line states the whole budget; the primary reports it once', async () => {
    expect(gw.readyLine).toContain(`on demand within ${BUDGET} models per worker: ${COUNT + 1} model versions`);
    expect(sampleValue(await metrics(), 'fabriek_model_memory_budget{unit="models"}')).toBe(BUDGET);
  });

  it('answers every model through both processes in random order; the worker never holds more than the budget', async () => {
    const pids = new Set<number>();
    for (const c of clients) pids.add(await processOf(c));
    expect(pids.size, 'the clients reached both gateway processes').toBe(2);
    const evictionsBefore = sampleValue(await metrics(), 'fabriek_model_evictions_total') ?? 0;
    const peak = await workerPeak(() =>
      Promise.all(
        clients.map(async (c, ci) => {
          for (let k = 0; k < 2 * COUNT; k++) await expectOwnAnswer(c, (k * 5 + ci * 3) % COUNT);
        }),
      ),
    );
    expect(peak).toBeLessThanOrEqual(BUDGET);
    const text = await metrics();
    expect(sampleValue(text, 'fabriek_models_loaded_peak{worker="cpu0"}')).toBeLessThanOrEqual(BUDGET);
    expect(sampleValue(text, 'fabriek_models_loaded{worker="cpu0"}')).toBeLessThanOrEqual(BUDGET);
    expect(sampleValue(text, 'fabriek_model_evictions_total')).toBeGreaterThan(evictionsBefore);
    for (const [pid, n] of await perProcess()) expect(n, `gateway process ${pid} served none`).toBeGreaterThan(0);
  }, 60_000);

  it('never evicts a model busy in the other process to load one in this', async () => {
    const byProcess = new Map<number, InferenceGrpcClient>();
    for (const c of clients) byProcess.set(await processOf(c), c);
    const [busyHere, loadsThere] = [...byProcess.values()];
    if (!busyHere || !loadsThere) throw new Error('the clients did not reach both gateway processes');
    let slowDone = false;
    const rows = 4;
    const slow = Promise.all(
      Array.from({ length: SLOW_CALLS }, () =>
        busyHere.infer('slow', [input('input', 'FP32', [rows, SLOW_WIDTH], new Float32Array(rows * SLOW_WIDTH).fill(0.5))], { timeoutMs: 30_000 }),
      ),
    ).finally(() => {
      slowDone = true;
    });
    while (!(await worker.status()).models.some((m) => m.modelKey === 'slow/1')) await new Promise((r) => setTimeout(r, 10));
    const evictionsBefore = sampleValue(await metrics(), 'fabriek_model_evictions_total') ?? 0;
    const peak = await workerPeak(async () => {
      for (let i = 1; i < 1 + BUDGET + 1; i++) await expectOwnAnswer(loadsThere, i);
    });
    expect(slowDone).toBe(false);
    expect(peak).toBeLessThanOrEqual(BUDGET);
    expect(sampleValue(await metrics(), 'fabriek_model_evictions_total')).toBeGreaterThan(evictionsBefore);
    await slow;
    // Never unloaded: its series (dropped at an unload) counts every request.
    expect(sampleValue(await metrics(), 'nv_inference_request_success{model="slow",version="1"}')).toBe(SLOW_CALLS);
  }, 60_000);
});
