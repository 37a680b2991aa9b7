import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRecord } from '../../core/worker-record.js';
import { WorkerConnection } from '../../gateway/scheduling/worker-connection.js';
import { buildModel } from '../../models/build/test-models.js';
import { type GatewayProcess, httpUrlOf, startGateway } from '../helpers/gateway-process.js';
import { sampleValue } from '../helpers/metrics-text.js';
import { waitFor } from '../helpers/processes.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { type RegisteredWorker, startRegisteredWorker } from '../helpers/registered-worker.js';

// Two gateways sharing two registered workers, each keeping one request in
// flight to a slow model. On its own count, each gateway sees both workers
// idle between its calls and picks the first it knows, the same one for
// both (they read the same registry in the same order): every call would
// wait behind the other gateway's on one worker while the other idles. The
// workers report in each answer what they hold from every gateway, and the
// gateways spread over them.

const CONFIG = `name: "slow_chain"
platform: "onnxruntime_onnx"
max_batch_size: 0
instance_group [ { count: 1, kind: KIND_CPU } ]
`;
const ROW = Array.from({ length: 512 }, (_, i) => (i % 7) / 7);

describe('gateways sharing workers spread over them by the workers’ load reports', () => {
  let redis: RedisServer;
  let repo: string;
  const workers: RegisteredWorker[] = [];
  const gateways: GatewayProcess[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    repo = await mkdtemp(join(tmpdir(), 'fabriek-shared-'));
    await mkdir(join(repo, 'slow_chain', '1'), { recursive: true });
    await writeFile(join(repo, 'slow_chain', '1', 'model.onnx'), buildModel('slow_chain'));
    await writeFile(join(repo, 'slow_chain', 'config.pbtxt'), CONFIG);
    for (const id of ['w1', 'w2']) workers.push(await startRegisteredWorker(id, redis.url, repo));
    for (let i = 0; i < 2; i++) gateways.push(await startGateway(['--registry', redis.url, '--log-level', 'warn']));
    for (const g of gateways) await waitFor(async () => g.client.modelReady('slow_chain'), 15_000, 'slow_chain ready');
  }, 120_000);

  afterAll(async () => {
    await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
    await Promise.all(workers.map((w) => w.stop('SIGKILL')));
    await redis?.close();
    if (repo) await rm(repo, { recursive: true, force: true });
  });

  /** Runs of slow_chain on each worker so far, from its own Status. */
  const runs = async (): Promise<number[]> => {
    const client = redis.client();
    const counts: number[] = [];
    for (const id of ['w1', 'w2']) {
      const record = decodeRecord((await client.get(`fabriek:worker:${id}`)) ?? '');
      const connection = new WorkerConnection({ id, address: record.address, deviceKind: 'cpu', deviceId: 0 }, { maxMessageBytes: 1 << 20 });
      try {
        const status = await connection.status();
        counts.push(Number(status.models.find((m) => m.modelKey === 'slow_chain/1')?.runs ?? 0n));
      } finally {
        connection.close();
      }
    }
    return counts;
  };

  it('each gateway with one call in flight: the two workers share the runs', async () => {
    const call = (g: GatewayProcess): Promise<unknown> => g.client.infer('slow_chain', [{ name: 'input', datatype: 'FP32', shape: [1, 512], data: ROW }], { timeoutMs: 30_000 });
    for (const g of gateways) await call(g);
    const before = await runs();
    const end = performance.now() + 4_000;
    const loop = async (g: GatewayProcess): Promise<number> => {
      let n = 0;
      while (performance.now() < end) {
        await call(g);
        n++;
      }
      return n;
    };
    const calls = await Promise.all(gateways.map(loop));
    const after = await runs();
    const served = after.map((n, i) => n - (before[i] ?? 0));
    const total = served.reduce((a, b) => a + b, 0);
    expect(total).toBe(calls.reduce((a, b) => a + b, 0));
    expect(total).toBeGreaterThan(20);
    // Together on one worker (the count of each gateway alone) each would take ≥ 95 % of one worker's runs.
    for (const n of served) expect(n / total, `runs per worker ${JSON.stringify(served)}`).toBeGreaterThan(0.25);
  });

  it('each gateway knows both workers’ speed, and the others’ work each reported in time', async () => {
    const call = (g: GatewayProcess): Promise<unknown> => g.client.infer('slow_chain', [{ name: 'input', datatype: 'FP32', shape: [1, 512], data: ROW }], { timeoutMs: 30_000 });
    // A few calls from both at once: every answer carries its worker's report, timed by the worker's own runs.
    await Promise.all(gateways.flatMap((g) => [call(g), call(g), call(g), call(g)]));
    for (const g of gateways) {
      const state = (await (await fetch(`${httpUrlOf(g)}/v2/models/slow_chain/batching`)).json()) as { workers: Record<string, unknown>[] };
      expect(state.workers.map((w) => w['worker']).sort()).toEqual(['w1', 'w2']);
      for (const w of state.workers) {
        expect(w, JSON.stringify(state.workers)).toMatchObject({ instances: 1, busy: 0 });
        // slow_chain computes in ms here; the report came within the last second.
        expect(w['execution_ms']).toBeGreaterThan(0);
        // Its speed there against the version's cost model too (near 1: the model learned from both workers).
        expect(w['compute_ratio']).toBeGreaterThan(0);
        expect(typeof w['others_reported']).toBe('number');
        expect(w['others_wait_ms']).toBeGreaterThanOrEqual(0);
      }
    }
  });

  it('each gateway exports its share of each worker: executions sent and out, the worker’s speed and the others’ wait', async () => {
    const call = (g: GatewayProcess): Promise<unknown> => g.client.infer('slow_chain', [{ name: 'input', datatype: 'FP32', shape: [1, 512], data: ROW }], { timeoutMs: 30_000 });
    await Promise.all(gateways.flatMap((g) => [call(g), call(g), call(g), call(g)]));
    for (const g of gateways) {
      const port = /metrics on [^ ;]+:(\d+)/.exec(g.readyLine)?.[1];
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const series = (name: string, worker: string): number | undefined => sampleValue(text, `${name}{model="slow_chain",version="1",worker="${worker}"}`);
      const sent = ['w1', 'w2'].map((w) => series('fabriek_worker_executions_total', w) ?? NaN);
      // Every execution of the gateway went to one of the two (no retries here), and each got some.
      expect(sent[0]! + sent[1]!, text).toBe(sampleValue(text, 'nv_inference_exec_count{model="slow_chain",version="1"}'));
      for (const [i, w] of ['w1', 'w2'].entries()) {
        expect(sent[i]).toBeGreaterThan(0);
        expect(series('fabriek_worker_executions_out', w)).toBe(0);
        expect(series('fabriek_worker_execution_seconds', w)).toBeGreaterThan(0);
        expect(series('fabriek_worker_others_wait_seconds', w)).toBeGreaterThanOrEqual(0);
        expect(series('fabriek_worker_compute_ratio', w)).toBeGreaterThan(0);
      }
    }
  });
});
