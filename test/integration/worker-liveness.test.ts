import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addSubRequest, isExpectedSum } from '../../bench/fault/add-sub.js';
import { WorkerConnection } from '../../gateway/scheduling/worker-connection.js';
import { type GatewayProcess, startGateway, TEST_GATEWAY_PROCESSES } from '../helpers/gateway-process.js';
import { expectEachAnsweredOnce, failureSummary, type Outcome, servedCounts, startLoad } from '../helpers/load-driver.js';
import { childPids, waitFor, workerPids } from '../helpers/processes.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { type RegisteredWorker, startRegisteredWorker } from '../helpers/registered-worker.js';
import { buildWorkerModels, SLOW_N } from '../helpers/worker-fixtures.js';
import { startWorker, type WorkerProcess } from '../helpers/worker-process.js';

// The gateway's worker liveness check (--worker-ping-timeout-ms) with real
// processes: a worker frozen with SIGSTOP keeps its sockets open, so only the
// check notices it. Margins are generous: this runs on a noisy 2-core machine.

const EXAMPLES = fileURLToPath(new URL('../../models/examples', import.meta.url));
const PING_TIMEOUT_MS = 1_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The epoch ms of the first gateway log line with `msg` about `worker` at or after `since`. */
function loggedAt(gateway: GatewayProcess, msg: string, worker: string, since: number): number | undefined {
  for (const line of gateway.stderr().split('\n')) {
    if (!line.includes(`"msg":"${msg}`) || !line.includes(`"worker":"${worker}"`)) continue;
    const time = Number(/"time":(\d+)/.exec(line)?.[1]);
    if (time >= since) return time;
  }
  return undefined;
}

describe('worker liveness: registered workers, one SIGSTOPped under load', () => {
  let redis: RedisServer;
  let repository: string;
  let gateway: GatewayProcess;
  const workers = new Map<string, RegisteredWorker>();

  beforeAll(async () => {
    redis = await startRedis();
    repository = mkdtempSync(join(tmpdir(), 'fabriek-liveness-repo-'));
    cpSync(join(EXAMPLES, 'add_sub'), join(repository, 'add_sub'), { recursive: true });
    // A long lease: only the liveness check can notice a stopped worker here.
    for (const w of await Promise.all(['w1', 'w2'].map((id) => startRegisteredWorker(id, redis.url, repository, ['--registry-ttl-secs', '60'])))) workers.set(w.id, w);
    gateway = await startGateway(['--model-repository', repository, '--registry', redis.url, '--workers', '0', '--worker-ping-timeout-ms', String(PING_TIMEOUT_MS)]);
    // Each gateway process logs each join.
    await waitFor(() => (gateway.stderr().match(/registered worker joined/g) ?? []).length === 2 * TEST_GATEWAY_PROCESSES, 10_000, 'the gateway to see both workers');
  }, 120_000);

  afterAll(async () => {
    for (const w of workers.values()) w.child.kill('SIGCONT');
    await gateway?.stop('SIGKILL');
    await Promise.all([...workers.values()].map((w) => w.stop('SIGKILL')));
    await redis?.close();
    if (repository) rmSync(repository, { recursive: true, force: true });
  });

  const stopUnderLoad = async (stopped: RegisteredWorker): Promise<{ outcomes: Outcome[]; stoppedAt: number; detectedAt: number }> => {
    const before = await servedCounts([gateway]);
    const load = startLoad(() => gateway.client, 8);
    await sleep(700);
    const stoppedAt = Date.now();
    stopped.child.kill('SIGSTOP');
    await waitFor(() => loggedAt(gateway, 'registered worker unresponsive', stopped.id, stoppedAt) !== undefined, PING_TIMEOUT_MS + 5_000, `the gateway to find ${stopped.id} unresponsive`);
    await sleep(1_500); // load after the detection goes to the other worker alone
    const outcomes = await load.stop();
    expectEachAnsweredOnce(outcomes, before, await servedCounts([gateway]));
    return { outcomes, stoppedAt, detectedAt: loggedAt(gateway, 'registered worker unresponsive', stopped.id, stoppedAt) ?? NaN };
  };

  it('a stopped worker is out of service within the timeout (+ margin); every request is answered once, those on it are retried', async () => {
    const w1 = workers.get('w1') as RegisteredWorker;
    const { outcomes, stoppedAt, detectedAt } = await stopUnderLoad(w1);
    const detection = detectedAt - stoppedAt;
    console.log(`liveness: w1 found unresponsive ${detection} ms after SIGSTOP (ping timeout ${PING_TIMEOUT_MS} ms); ${outcomes.length} requests, failures ${JSON.stringify(failureSummary(outcomes))}`);
    expect(detection).toBeGreaterThanOrEqual(PING_TIMEOUT_MS - 100);
    expect(detection).toBeLessThanOrEqual(PING_TIMEOUT_MS + 2_000);
    expect(outcomes.some((o) => o.code === 'WRONG_ANSWER')).toBe(false);
    // The batches that were on w1 are retried on w2, in its next free slot.
    expect(failureSummary(outcomes)).toEqual({});
    expect(outcomes.filter((o) => o.ok).length).toBeGreaterThan(50);
    // Nothing sent after the detection waits on the stopped worker.
    const late = outcomes.filter((o) => o.start > detectedAt + 200);
    expect(late.length).toBeGreaterThan(10);
    expect(late.every((o) => o.ok)).toBe(true);
    expect(Math.max(...late.map((o) => o.end - o.start))).toBeLessThan(1_000);
  });

  it('after SIGCONT it serves again: with the other worker stopped, it carries the load', async () => {
    const w1 = workers.get('w1') as RegisteredWorker;
    const resumedAt = Date.now();
    w1.child.kill('SIGCONT');
    await waitFor(() => loggedAt(gateway, 'worker answered again after a failure; back in service', 'w1', resumedAt) !== undefined, 10_000, 'w1 back in service');
    console.log(`liveness: w1 back in service ${(loggedAt(gateway, 'worker answered again after a failure; back in service', 'w1', resumedAt) ?? NaN) - resumedAt} ms after SIGCONT`);
    const w2 = workers.get('w2') as RegisteredWorker;
    const { outcomes } = await stopUnderLoad(w2);
    const late = outcomes.filter((o) => o.start > Date.now() - 1_300);
    expect(late.length).toBeGreaterThan(10);
    expect(late.every((o) => o.ok)).toBe(true);
    expect(failureSummary(outcomes)).toEqual({});
    w2.child.kill('SIGCONT');
  });
});

describe('worker liveness: local workers', () => {
  let gateway: GatewayProcess;
  let repository: string;

  beforeAll(async () => {
    repository = mkdtempSync(join(tmpdir(), 'fabriek-liveness-local-'));
    cpSync(join(EXAMPLES, 'add_sub'), join(repository, 'add_sub'), { recursive: true });
    gateway = await startGateway(['--model-repository', repository, '--workers', '1', '--worker-ping-timeout-ms', String(PING_TIMEOUT_MS)]);
  }, 120_000);

  afterAll(async () => {
    for (const pid of gateway ? childPids(gateway.child.pid ?? -1) : []) process.kill(pid, 'SIGCONT');
    await gateway?.stop('SIGKILL');
    if (repository) rmSync(repository, { recursive: true, force: true });
  });

  it('a SIGSTOPped local worker is killed (SIGKILL) and restarted, and the model serves again', async () => {
    const [pid] = workerPids(gateway.child.pid ?? -1);
    expect(pid).toBeDefined();
    const stoppedAt = Date.now();
    process.kill(pid as number, 'SIGSTOP');
    await waitFor(() => gateway.stderr().includes('worker unresponsive; killing it (SIGKILL) to restart it'), PING_TIMEOUT_MS + 5_000, 'the gateway to kill the stopped worker');
    await waitFor(() => workerPids(gateway.child.pid ?? -1).some((p) => p !== pid), 30_000, 'a new worker process');
    expect(workerPids(gateway.child.pid ?? -1)).not.toContain(pid);
    const { request, expected } = addSubRequest(1);
    let answer: Uint8Array | undefined;
    await waitFor(
      async () => {
        answer = (await gateway.client.modelInfer(request, { timeoutMs: 5_000 }).catch(() => undefined))?.rawOutputContents[0];
        return answer !== undefined;
      },
      30_000,
      'the restarted worker to serve',
    );
    expect(isExpectedSum(answer, expected)).toBe(true);
    console.log(`liveness: local worker killed and serving again ${Date.now() - stoppedAt} ms after SIGSTOP`);
  });
});

describe('worker liveness: a worker busy in long ONNX Runtime runs still answers pings', () => {
  let worker: WorkerProcess;
  beforeAll(async () => {
    const models = await buildWorkerModels();
    worker = await startWorker(['--worker-id', 'w-slow']);
    await worker.load({
      modelKey: 'slow/1',
      modelPath: models.path('slow_matmul'),
      sessionOptions: { intraOpThreads: 1, interOpThreads: 1, graphOptimizationLevel: 'all', enableCpuMemArena: true, executionMode: 'sequential', enableMemPattern: true },
    });
  }, 120_000);
  afterAll(async () => {
    await worker?.stop();
  });

  it('several back-to-back runs, far longer than a 300 ms ping timeout, finish on a connection that is never given up', async () => {
    const conn = new WorkerConnection({ id: 'w-slow', address: worker.ready.address, deviceKind: 'cpu', deviceId: 0 }, { maxMessageBytes: 64 << 20, pingTimeoutMs: 300 });
    const reasons: string[] = [];
    conn.onUnresponsive((r) => reasons.push(r));
    const input = { name: 'X', datatype: 'FP32', shape: [BigInt(SLOW_N), BigInt(SLOW_N)], data: Buffer.alloc(SLOW_N * SLOW_N * 4) };
    const started = Date.now();
    for (let i = 0; i < 4; i++) {
      const response = await conn.execute({ modelKey: 'slow/1', inputs: [input], outputs: [] }, Date.now() + 60_000);
      expect(response.outputs[0]?.shape).toEqual([BigInt(SLOW_N), BigInt(SLOW_N)]);
    }
    const took = Date.now() - started;
    conn.close();
    console.log(`liveness: 4 slow_matmul runs took ${took} ms with a 300 ms ping timeout`);
    expect(took).toBeGreaterThan(900); // at least three timeouts' worth of work
    expect(reasons).toEqual([]);
  });
});
