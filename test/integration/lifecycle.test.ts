import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { connect as http2Connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executionSlots } from '../../core/pipelining.js';
import { buildModels } from '../../models/build/test-models.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { type GatewayProcess, runCli, startGateway, TEST_GATEWAY_PROCESSES } from '../helpers/gateway-process.js';
import { childPids, waitFor, workerPids } from '../helpers/processes.js';
import { sample } from '../helpers/tensor-data.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

const src = (name: string): string => join(TEST_REPOSITORY, name, '1', 'model.onnx');

async function addModel(repo: string, name: string, from: string, config?: string): Promise<void> {
  await mkdir(join(repo, name, '1'), { recursive: true });
  await copyFile(from, join(repo, name, '1', 'model.onnx'));
  if (config !== undefined) await writeFile(join(repo, name, 'config.pbtxt'), config);
}

function mlpRequest(rows: number): ModelInferRequest {
  return {
    modelName: 'mlp',
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [{ name: 'input', datatype: 'FP32', shape: [BigInt(rows), 784n], parameters: {} }],
    outputs: [],
    rawInputContents: [Buffer.from(sample('FP32', rows * 784).raw)],
  };
}

type Outcome = 'OK' | string;
const outcome = (p: Promise<unknown>): Promise<Outcome> =>
  p.then(
    () => 'OK',
    (e: unknown) => GrpcStatus[(e as ServiceError).code] ?? 'UNKNOWN',
  );

describe('startup failures', () => {
  it('exits non-zero with a clear message for a missing repository', async () => {
    const r = await runCli(['serve', '--model-repository', '/nonexistent/models', '--grpc-port', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("model repository '/nonexistent/models' does not exist");
  });

  it('fabriek bench --help runs the benchmark entry and prints its usage', async () => {
    const r = await runCli(['bench', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: fabriek bench -m MODEL/);
    expect(r.stdout).toMatch(/fabriek bench suite/);
    expect(r.stdout).toMatch(/batching\|http/);
  });

  it('exits 2 with usage for a bad flag', async () => {
    const r = await runCli(['serve', '--model-repository', TEST_REPOSITORY, '--grpc-port', 'abc']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--grpc-port: expected an integer from 0 to 65535, got 'abc'");
    const u = await runCli(['serve', '--bogus']);
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/bogus/);
  });
});

describe('a repository with broken models', () => {
  let repo: string;
  let gw: GatewayProcess;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-bad-'));
    const built = await mkdtemp(join(tmpdir(), 'fabriek-bf16-'));
    const [bf16] = await buildModels(built, ['bf16_identity']);
    await addModel(repo, 'good', src('identity_fp32'));
    await addModel(repo, 'bad_syntax', src('identity_fp32'), 'max_batch_size: 4\ninput [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] \n');
    await addModel(repo, 'bad_field', src('identity_fp32'), 'max_batch_size: "many"\n');
    await addModel(repo, 'wrong_type', src('identity_fp32'), 'input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] } ]\n');
    await addModel(repo, 'bf16', bf16 as string);
    await mkdir(join(repo, 'no_versions'));
    await addModel(repo, 'not_onnx', src('identity_fp32'));
    await writeFile(join(repo, 'not_onnx', '1', 'model.onnx'), 'this is not an ONNX model');
    gw = await startGateway(['--model-repository', repo, '--log-level', 'silent']);
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  it('marks each bad model UNAVAILABLE with the file and field, and serves the good one', async () => {
    const index = await gw.client.repositoryIndex();
    const byName = new Map(index.models.map((m) => [m.name, m]));
    expect(byName.get('good')?.state).toBe('READY');
    for (const name of ['bad_syntax', 'bad_field', 'wrong_type', 'bf16', 'no_versions', 'not_onnx']) {
      expect(byName.get(name)?.state, name).toBe('UNAVAILABLE');
      expect(byName.get(name)?.reason, name).not.toBe('');
    }
    expect(byName.get('bad_field')?.reason).toMatch(/bad_field\/config\.pbtxt: max_batch_size: .*"many"/);
    expect(byName.get('bad_syntax')?.reason).toMatch(/bad_syntax\/config\.pbtxt/);
    expect(byName.get('wrong_type')?.reason).toMatch(/wrong_type\/config\.pbtxt: input\[0\]\.data_type: .*TYPE_FP32.*TYPE_INT32|wrong_type\/config\.pbtxt: input\[0\]\.data_type/);
    expect(byName.get('bf16')?.reason).toMatch(/[Uu]nsupported data type|bfloat16|BF16/);

    const ready = await gw.client.repositoryIndex(true);
    expect(ready.models.map((m) => m.name)).toEqual(['good']);

    const res = await gw.client.modelInfer({
      modelName: 'good',
      modelVersion: '',
      id: '',
      parameters: {},
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1n, 16n], parameters: {} }],
      outputs: [],
      rawInputContents: [Buffer.from(sample('FP32', 16).raw)],
    });
    expect(res.outputs[0]?.name).toBe('OUTPUT0');
  });

  it('answers UNAVAILABLE for a model that failed, and is not ready under strict readiness', async () => {
    const error = await gw.client.modelInfer({ ...mlpRequest(1), modelName: 'bad_field' }).catch((e: unknown) => e as ServiceError);
    expect((error as ServiceError).code).toBe(GrpcStatus.UNAVAILABLE);
    expect((error as ServiceError).details).toMatch(/bad_field/);
    expect(await gw.client.serverReady()).toBe(false);
    expect(await gw.client.serverLive()).toBe(true);
  });
});

/** The worker sockets of the gateway `pid` left in the temp dir. */
async function workerSockets(pid: number): Promise<string[]> {
  return (await readdir(tmpdir())).filter((n) => n.startsWith(`fabriek-${pid}-`));
}

describe('worker crash and graceful shutdown', () => {
  let repo: string;
  let gw: GatewayProcess;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-life-'));
    await addModel(repo, 'mlp', src('mlp'));
    gw = await startGateway(['--model-repository', repo, '--log-level', 'silent', '--default-max-batch-size', '8']);
  });

  afterAll(async () => {
    if (gw.child.exitCode === null) await gw.stop();
    await rm(repo, { recursive: true, force: true });
  });

  it('answers every request once when a worker is killed, restarts it, and serves again', async () => {
    const workers = workerPids(gw.child.pid as number);
    expect(workers).toHaveLength(1);
    const inflight = Array.from({ length: 40 }, () => outcome(gw.client.modelInfer(mlpRequest(8), { timeoutMs: 60_000 })));
    await new Promise((r) => setTimeout(r, 30));
    const gatewayPid = gw.child.pid as number;
    const children = childPids(gatewayPid).length;
    process.kill(workers[0] as number, 'SIGKILL');
    // The killed worker's socket goes when its exit is seen, before the restart (at least 200 ms later) forks
    // another: a moment with one child fewer and no socket. Left to the restart, the socket would only go as
    // the new child is forked.
    const socketGone = waitFor(
      async () => childPids(gatewayPid).length === children - 1 && (await workerSockets(gatewayPid)).length === 0,
      10_000,
      "the killed worker's socket to be removed before its restart",
    );
    const results = await Promise.all(inflight);
    await socketGone;
    // Every request got exactly one answer: success, or UNAVAILABLE for those the dead worker held.
    for (const r of results) expect(['OK', 'UNAVAILABLE']).toContain(r);
    // Only the executions the killed worker held can fail: one instance, plus the one queued ahead of it (per gateway process).
    expect(results.filter((r) => r === 'UNAVAILABLE').length).toBeLessThanOrEqual(executionSlots(1) * TEST_GATEWAY_PROCESSES);
    await waitFor(async () => (await outcome(gw.client.modelInfer(mlpRequest(1)))) === 'OK', 30_000, 'the model to serve again');
    const after = workerPids(gw.child.pid as number);
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(workers[0]);
    expect(await gw.client.serverReady()).toBe(true);
  });

  it('a worker ignores SIGHUP (a HUP to the process group must not end it), and serves on', async () => {
    const [worker] = workerPids(gw.child.pid as number);
    process.kill(worker as number, 'SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    expect(workerPids(gw.child.pid as number)).toEqual([worker]);
    expect(await outcome(gw.client.modelInfer(mlpRequest(1)))).toBe('OK');
  });

  it('says, when the exit timeout ends a shutdown, what it still waited for: the gRPC sessions and their open streams', async () => {
    const held = await startGateway(['--model-repository', TEST_REPOSITORY, '--workers', '1', '--exit-timeout-secs', '1']);
    // A call whose message never comes: its 5-byte prefix announces 100 bytes, and the stream stays open.
    const session = http2Connect(`http://${held.address}`);
    session.on('error', () => undefined);
    try {
      const call = session.request({ ':method': 'POST', ':path': '/inference.GRPCInferenceService/ModelInfer', 'content-type': 'application/grpc', te: 'trailers' });
      call.on('error', () => undefined);
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(100, 1);
      call.write(prefix);
      await new Promise((r) => setTimeout(r, 300));
      expect(await held.stop('SIGTERM')).toBe(0);
    } finally {
      session.destroy();
    }
    const line = held
      .stderr()
      .split('\n')
      .find((l) => l.includes('exit timeout reached'));
    expect(line).toBeDefined();
    const { waitingFor } = JSON.parse(line as string) as {
      waitingFor: { grpc: boolean; http: boolean; grpcSessions: number; sessions: { peer: string; streams: number; first: { requestEnded: boolean; answered: boolean; responseEnded: boolean }[] }[] };
    };
    expect(waitingFor.grpc).toBe(true);
    expect(waitingFor.grpcSessions).toBe(1);
    expect(waitingFor.sessions[0]?.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(waitingFor.sessions[0]?.streams).toBe(1);
    expect(waitingFor.sessions[0]?.first[0]).toEqual({ id: 1, requestEnded: false, answered: false, responseEnded: false });
  });

  it('finishes in-flight requests on SIGTERM and exits 0', async () => {
    const inflight = Array.from({ length: 30 }, () => outcome(gw.client.modelInfer(mlpRequest(8), { timeoutMs: 60_000 })));
    await Promise.race(inflight);
    const code = gw.stop('SIGTERM');
    const results = await Promise.all(inflight);
    expect(results.every((r) => r === 'OK')).toBe(true);
    expect(await code).toBe(0);
    await waitFor(() => childPids(gw.child.pid as number).length === 0, 10_000, 'workers to exit');
    // The workers' sockets went with them (gateway/scheduling/worker-sockets.ts).
    expect(await workerSockets(gw.child.pid as number)).toEqual([]);
  });
});
