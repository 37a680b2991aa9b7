import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { InferenceGrpcClient, input } from '../../client/index.js';
import { buildManyModels, constantOf, MANY_MODELS_WIDTH, manyModelName } from '../../models/build/many-models.js';
import { CLI, type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { childPids, waitFor } from '../helpers/processes.js';
import { reapAtExit } from '../helpers/reap.js';

// Issue 13: many small distinct models (y = x + c_i, no config files) with
// DEFAULT flags (the worker liveness check on): every one loads READY and
// answers its own c_i; the worker answers its pings and keeps serving loaded
// models while hundreds more load; and a worker SIGKILLed in the middle of
// the mass load comes back with every model READY, without an operator.
// Counts are kept small for CI; `fabriek bench many-models --count 1000`
// measures the full size.

const COUNT = 200;
const EXTRA = 100;
const X = Float32Array.from({ length: MANY_MODELS_WIDTH }, (_, k) => k);

async function expectOwnAnswer(client: InferenceGrpcClient, i: number): Promise<void> {
  const r = await client.infer(manyModelName(i), [input('x', 'FP32', [1, MANY_MODELS_WIDTH], X)], { timeoutMs: 30_000 });
  expect([...r.data('y', 'FP32')], manyModelName(i)).toEqual([...X].map((v) => v + constantOf(i)));
}

/** Calls models [from, to) a few at a time; each must give its own answer. */
async function expectEveryAnswer(client: InferenceGrpcClient, from: number, to: number): Promise<void> {
  let next = from;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = next++; i < to; i = next++) await expectOwnAnswer(client, i);
    }),
  );
}

async function readyCount(client: InferenceGrpcClient): Promise<number> {
  const index = await client.repositoryIndex(false, { timeoutMs: 10_000 });
  return index.models.filter((m) => m.state === 'READY').length;
}

describe(`${COUNT} distinct models, no configs, default flags`, () => {
  let repository: string;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    repository = mkdtempSync(join(tmpdir(), 'fabriek-many-'));
    await buildManyModels(repository, COUNT + EXTRA);
    // The extra ones are not in the repository at start: they are loaded later, by name.
    // Moved aside while the server starts, and back before their load requests.
    const extra = mkdtempSync(join(tmpdir(), 'fabriek-many-extra-'));
    for (let i = COUNT; i < COUNT + EXTRA; i++) await rename(join(repository, manyModelName(i)), join(extra, manyModelName(i)));
    gateway = await startGateway(['--model-repository', repository, '--log-level', 'info'], 120_000);
    for (let i = COUNT; i < COUNT + EXTRA; i++) await rename(join(extra, manyModelName(i)), join(repository, manyModelName(i)));
    rmSync(extra, { recursive: true, force: true });
  }, 180_000);

  afterAll(async () => {
    await gateway?.stop();
    if (repository) rmSync(repository, { recursive: true, force: true });
  });

  it('loads every model READY and each answers its own c_i', async () => {
    expect(gateway.readyLine).toContain(`${COUNT} model versions ready`);
    expect(await readyCount(gateway.client)).toBe(COUNT);
    await expectEveryAnswer(gateway.client, 0, COUNT);
    // The liveness check never gave up on the worker.
    expect(gateway.stderr()).not.toMatch(/unresponsive|worker exited/);
  }, 120_000);

  it(`keeps answering a loaded model at once while ${EXTRA} more load`, async () => {
    const workers = childPids(gateway.child.pid ?? -1);
    const loads = Array.from({ length: EXTRA }, (_, j) => gateway.client.loadModel(manyModelName(COUNT + j), { timeoutMs: 120_000 }));
    let loading = true;
    const settled = Promise.allSettled(loads).finally(() => {
      loading = false;
    });
    // A loaded model, called one at a time for as long as the loads go on.
    const latencies: number[] = [];
    for (let n = 0; loading && n < 10_000; n++) {
      const started = performance.now();
      await expectOwnAnswer(gateway.client, n % COUNT);
      latencies.push(performance.now() - started);
    }
    const results = await settled;
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(latencies.length).toBeGreaterThan(0);
    // Sessions are created on the pool threads, one per thread at a time: a
    // call waits for at most one small model's creation, never for the batch
    // of loads. Generous for a shared 2-core machine; a main thread busy
    // creating 100 sessions would take seconds.
    expect(Math.max(...latencies)).toBeLessThan(2_000);
    await expectEveryAnswer(gateway.client, COUNT, COUNT + EXTRA);
    expect(childPids(gateway.child.pid ?? -1)).toEqual(workers);
    expect(gateway.stderr()).not.toMatch(/unresponsive|worker exited/);
  }, 180_000);
});

describe('a worker SIGKILLed during a mass load', () => {
  let repository: string;
  let child: ChildProcess | undefined;
  let client: InferenceGrpcClient | undefined;

  beforeAll(async () => {
    repository = mkdtempSync(join(tmpdir(), 'fabriek-many-kill-'));
    await buildManyModels(repository, COUNT);
  }, 60_000);

  afterEach(() => {
    client?.close();
    child?.kill('SIGKILL');
  });

  afterAll(() => {
    if (repository) rmSync(repository, { recursive: true, force: true });
  });

  it('comes back and loads what the dead one had: every model READY, without an operator', async () => {
    // Spawned here (not startGateway): the kill comes before the ready line.
    const gateway = spawn(
      process.execPath,
      [CLI, 'serve', '--model-repository', repository, '--grpc-address', '127.0.0.1', '--grpc-port', '0', '--allow-http', 'false', '--allow-metrics', 'false', '--log-level', 'debug'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    reapAtExit(gateway);
    child = gateway;
    let stdout = '';
    let stderr = '';
    gateway.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    gateway.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const readyCountLogged = (): number => (stderr.match(/"msg":"model ready"/g) ?? []).length;

    // Some models are loaded, most are not: kill the worker in the middle.
    await waitFor(() => readyCountLogged() >= 10, 60_000, 'the first models to load');
    const [worker] = childPids(gateway.pid ?? -1);
    expect(worker).toBeDefined();
    process.kill(worker as number, 'SIGKILL');

    await waitFor(() => stdout.includes(' ready: '), 120_000, 'the ready line');
    const port = Number(/gRPC on [^ ;]+:(\d+)/.exec(stdout)?.[1]);
    client = new InferenceGrpcClient(`127.0.0.1:${port}`);
    const c = client;
    await waitFor(async () => (await readyCount(c)) === COUNT, 120_000, `all ${COUNT} models READY again`);
    expect(stderr).toMatch(/loading again the models whose load a lost worker cut short/);
    const [restarted] = childPids(gateway.pid ?? -1);
    expect(restarted).not.toBe(worker);
    await expectEveryAnswer(c, 0, COUNT);
  }, 300_000);
});
