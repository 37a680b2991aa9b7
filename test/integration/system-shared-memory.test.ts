import { status as GrpcStatus } from '@grpc/grpc-js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceHttpClient } from '../../client/http-client.js';
import { createSharedMemoryRegion, destroySharedMemoryRegion, readSharedMemory, writeSharedMemory } from '../../client/system-shared-memory.js';
import { input, sharedMemoryInput } from '../../client/typed-tensors.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { failure } from '../helpers/call-outcome.js';
import { type GatewayProcess, httpUrlOf, runCli, startGateway } from '../helpers/gateway-process.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';
import { buildModel } from '../../models/build/test-models.js';
import { putModel } from '../helpers/model-dir.js';
import { childPids, isWorkerProcess, waitFor } from '../helpers/processes.js';
import { InferenceGrpcClient } from '../../client/grpc-client.js';

// Triton's system shared memory on the real server and the real /dev/shm:
// regions registered over gRPC and HTTP, inputs read from them and outputs
// written to them, Triton's refusals, and a gateway without the flag.

const KEY = `/fabriek-test-${process.pid}`;
const BIG_KEY = `/fabriek-test-${process.pid}-big`;

const f32 = (values: readonly number[]): Buffer => Buffer.from(Float32Array.from(values).buffer);
const floats = (b: Buffer): number[] => [...new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4)];
const str = (region: string) => ({ parameterChoice: { $case: 'stringParam' as const, value: region } });
const int = (n: number) => ({ parameterChoice: { $case: 'int64Param' as const, value: BigInt(n) } });
const sixteen = (from: number): number[] => Array.from({ length: 16 }, (_, i) => from + i);

describe('system shared memory', () => {
  let gw: GatewayProcess;
  let http: InferenceHttpClient;
  let url: string;

  beforeAll(async () => {
    // 0–63: an input row; 64–127: a second input; 128–255: outputs.
    await createSharedMemoryRegion(KEY, 256);
    await writeSharedMemory(KEY, Buffer.concat([f32(sixteen(0)), f32(sixteen(100))]));
    // A batch limit large enough for the 16 MiB tensor below (the test models' configs are completed from them).
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--system-shared-memory', 'true', '--default-max-batch-size', '65536', '--log-level', 'warn']);
    url = httpUrlOf(gw);
    http = new InferenceHttpClient(url);
  });

  afterAll(async () => {
    http?.close();
    expect(await gw?.stop()).toBe(0);
    await destroySharedMemoryRegion(KEY);
    await destroySharedMemoryRegion(BIG_KEY);
  });

  it('registers regions over gRPC and HTTP, lists them, and lists the extension', async () => {
    await gw.client.registerSystemSharedMemory('in0', KEY, 64, 0);
    await http.registerSystemSharedMemory('in1', KEY, 64, 64);
    await gw.client.registerSystemSharedMemory('out', KEY, 128, 128);
    const byName = (list: { name: string }[]): unknown[] => [...list].sort((a, b) => a.name.localeCompare(b.name));
    const expected = [
      { name: 'in0', key: KEY, offset: 0, byteSize: 64 },
      { name: 'in1', key: KEY, offset: 64, byteSize: 64 },
      { name: 'out', key: KEY, offset: 128, byteSize: 128 },
    ];
    expect(byName(await gw.client.getSystemSharedMemoryStatus())).toEqual(expected);
    expect(byName(await http.getSystemSharedMemoryStatus())).toEqual(expected);
    expect(await http.getSystemSharedMemoryStatus('in1')).toEqual([expected[1]]);
    expect((await gw.client.getServerMetadata()).extensions).toContain('system_shared_memory');
  });

  it('gRPC: an input from a region beside one in raw_input_contents (Triton\'s indexing), an output to a region beside one answered', async () => {
    const request: ModelInferRequest = {
      modelName: 'add_sub',
      modelVersion: '',
      id: '',
      parameters: {},
      inputs: [
        { name: 'INPUT0', datatype: 'FP32', shape: [1n, 16n], parameters: { shared_memory_region: str('in0'), shared_memory_byte_size: int(64) } },
        { name: 'INPUT1', datatype: 'FP32', shape: [1n, 16n], parameters: {} },
      ],
      outputs: [
        { name: 'OUTPUT0', parameters: { shared_memory_region: str('out'), shared_memory_byte_size: int(64), shared_memory_offset: int(64) } },
        { name: 'OUTPUT1', parameters: {} },
      ],
      rawInputContents: [f32(Array(16).fill(1))],
    };
    const answer = await gw.client.modelInfer(request);
    expect(answer.outputs.map((o) => [o.name, o.datatype, o.shape.map(Number)])).toEqual([
      ['OUTPUT0', 'FP32', [1, 16]],
      ['OUTPUT1', 'FP32', [1, 16]],
    ]);
    // Triton: an empty raw_output_contents entry for the output in shared memory.
    expect(answer.rawOutputContents.map((b) => b.byteLength)).toEqual([0, 64]);
    expect(floats(Buffer.from(answer.rawOutputContents[1] as Uint8Array))).toEqual(sixteen(-1));
    expect(floats(await readSharedMemory(KEY, 64, 192))).toEqual(sixteen(1));
  });

  it('HTTP: inputs and an output through regions, the answer saying what the output is but not holding it', async () => {
    const body = {
      inputs: [
        { name: 'INPUT0', datatype: 'FP32', shape: [1, 16], parameters: { shared_memory_region: 'in0', shared_memory_byte_size: 64 } },
        { name: 'INPUT1', datatype: 'FP32', shape: [1, 16], parameters: { shared_memory_region: 'in1', shared_memory_byte_size: 64 } },
      ],
      outputs: [{ name: 'OUTPUT0', parameters: { shared_memory_region: 'out', shared_memory_byte_size: 64 } }, { name: 'OUTPUT1' }],
    };
    const res = await fetch(`${url}/v2/models/add_sub/infer`, { method: 'POST', body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    const json = (await res.json()) as { outputs: { name: string; data?: number[] }[] };
    expect(json.outputs[0]).toEqual({ name: 'OUTPUT0', datatype: 'FP32', shape: [1, 16] });
    expect(json.outputs[1]?.data).toEqual(Array(16).fill(-100));
    expect(floats(await readSharedMemory(KEY, 64, 128))).toEqual(sixteen(0).map((x) => 2 * x + 100));
  });

  it.each([0, 1])("the client's sharedMemoryInput and sharedMemoryOutputs (%#: gRPC, HTTP)", async (which) => {
    const client = which === 0 ? gw.client : http;
    const result = await client.infer('add_sub', [sharedMemoryInput('INPUT0', 'FP32', [1, 16], { region: 'in0', byteSize: 64 }), input('INPUT1', 'FP32', [1, 16], Array(16).fill(2))], {
      outputs: ['OUTPUT1'],
      sharedMemoryOutputs: { OUTPUT0: { region: 'out', byteSize: 64, offset: 64 } },
    });
    expect(result.outputs.map((o) => [o.name, o.inSharedMemory])).toEqual([
      ['OUTPUT1', false],
      ['OUTPUT0', true],
    ]);
    expect([...result.data('OUTPUT1', 'FP32')]).toEqual(sixteen(-2));
    expect(() => result.output('OUTPUT0').data).toThrow("output 'OUTPUT0' is not in the answer: the server wrote it to shared memory (read it with readSharedMemory)");
    expect(floats(await readSharedMemory(KEY, 64, 192))).toEqual(sixteen(2));
  });

  it('moves a 16 MiB tensor in and out through shared memory', async () => {
    const rows = 65_536;
    const bytes = rows * 64;
    await createSharedMemoryRegion(BIG_KEY, 2 * bytes);
    const data = Buffer.alloc(bytes);
    for (let i = 0; i < bytes / 4; i++) data.writeFloatLE((i % 1000) / 8, i * 4);
    await writeSharedMemory(BIG_KEY, data);
    await http.registerSystemSharedMemory('big', BIG_KEY, 2 * bytes);
    const body = {
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [rows, 16], parameters: { shared_memory_region: 'big', shared_memory_byte_size: bytes } }],
      outputs: [{ name: 'OUTPUT0', parameters: { shared_memory_region: 'big', shared_memory_byte_size: bytes, shared_memory_offset: bytes } }],
    };
    const res = await fetch(`${url}/v2/models/identity_fp32/infer`, { method: 'POST', body: JSON.stringify(body) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { outputs: unknown[] }).outputs).toEqual([{ name: 'OUTPUT0', datatype: 'FP32', shape: [rows, 16] }]);
    expect((await readSharedMemory(BIG_KEY, bytes, bytes)).equals(data)).toBe(true);
    await http.unregisterSystemSharedMemory('big');
  });

  it.each([
    ['an unknown region', { shared_memory_region: 'nope', shared_memory_byte_size: 64 }, 404, "Unable to find shared memory region: 'nope'"],
    ['an offset past the region', { shared_memory_region: 'in0', shared_memory_byte_size: 4, shared_memory_offset: 64 }, 400, "Invalid offset for shared memory region: 'in0'"],
    ['a byte size past the region', { shared_memory_region: 'in0', shared_memory_byte_size: 64, shared_memory_offset: 4 }, 400, "Invalid offset + byte size for shared memory region: 'in0'"],
    ['a byte size the shape does not need', { shared_memory_region: 'in0', shared_memory_byte_size: 32 }, 400, "'shared_memory_byte_size' is 32, but shape [1,16] of FP32 needs 64 bytes"],
  ])('refuses an input naming %s, and keeps serving', async (_what, parameters, code, message) => {
    const body = { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], parameters }] };
    const res = await fetch(`${url}/v2/models/identity_fp32/infer`, { method: 'POST', body: JSON.stringify(body) });
    expect(res.status).toBe(code);
    expect(((await res.json()) as { error: string }).error).toContain(message);
    const ok = await fetch(`${url}/v2/models/identity_fp32/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: sixteen(0) }] }) });
    expect(ok.status).toBe(200);
  });

  it('refuses an output region too small for the output, with data, or with classification', async () => {
    const input = { name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: sixteen(0) };
    const post = async (output: object): Promise<[number, string]> => {
      const res = await fetch(`${url}/v2/models/identity_fp32/infer`, { method: 'POST', body: JSON.stringify({ inputs: [input], outputs: [output] }) });
      return [res.status, ((await res.json()) as { error: string }).error];
    };
    expect(await post({ name: 'OUTPUT0', parameters: { shared_memory_region: 'out', shared_memory_byte_size: 32 } })).toEqual([
      400,
      "model 'identity_fp32': shared memory size specified with the request for output 'OUTPUT0' (32 bytes) should be at least 64 bytes to hold the results",
    ]);
    expect((await post({ name: 'OUTPUT0', parameters: { shared_memory_region: 'out', shared_memory_byte_size: 64, classification: 2 } }))[1]).toBe(
      "model 'identity_fp32': output 'OUTPUT0': an output can't set both 'shared_memory_region' and 'classification'",
    );
    expect((await post({ name: 'OUTPUT0', parameters: { shared_memory_region: 'out', shared_memory_byte_size: 64, binary_data: true } }))[1]).toBe(
      "model 'identity_fp32': output 'OUTPUT0': an output can't set both 'shared_memory_region' and 'binary_data'",
    );
    const both = await fetch(`${url}/v2/models/identity_fp32/infer`, {
      method: 'POST',
      body: JSON.stringify({ inputs: [{ ...input, parameters: { shared_memory_region: 'in0', shared_memory_byte_size: 64 } }] }),
    });
    expect(((await both.json()) as { error: string }).error).toBe("model 'identity_fp32': input 'INPUT0': has 'shared_memory_region' and data ('data' or binary_data_size); send only one");
  });

  it("refuses a second registration of a name, a key that is not a POSIX name or not there, and CUDA shared memory", async () => {
    const dup = await failure(gw.client.registerSystemSharedMemory('in0', KEY, 4));
    expect([dup.code, dup.details]).toEqual([GrpcStatus.ALREADY_EXISTS, "shared memory region 'in0' already in manager"]);
    const bad = await failure(http.registerSystemSharedMemory('x', '../etc/passwd', 4));
    expect(bad.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/is not a POSIX shared memory name/);
    const missing = await failure(gw.client.registerSystemSharedMemory('x', `${KEY}-missing`, 4));
    expect(missing.details).toMatch(new RegExp(`^Unable to open shared memory region: '${KEY}-missing' \\(ENOENT`));
    const tooBig = await failure(gw.client.registerSystemSharedMemory('x', KEY, 257));
    expect(tooBig.details).toMatch(/^failed to register shared memory region 'x': invalid args/);
    expect((await fetch(`${url}/v2/cudasharedmemory/status`)).status).toBe(501);
    const cuda = await failure(new Promise((resolve, reject) => gw.client.raw.cudaSharedMemoryStatus({ name: '' }, (e, r) => (e ? reject(e) : resolve(r)))));
    expect(cuda.code).toBe(GrpcStatus.UNIMPLEMENTED);
  });

  it('unregisters one region, then all; a request naming one unregistered fails NOT_FOUND', async () => {
    await http.unregisterSystemSharedMemory('in1');
    expect((await gw.client.getSystemSharedMemoryStatus()).map((r) => r.name).sort()).toEqual(['in0', 'out']);
    await gw.client.unregisterSystemSharedMemory();
    expect(await http.getSystemSharedMemoryStatus()).toEqual([]);
    const gone = await failure(http.getSystemSharedMemoryStatus('in0'));
    expect([gone.code, gone.details]).toEqual([GrpcStatus.NOT_FOUND, "Unable to find system shared memory region: 'in0'"]);
  });
});

describe('system shared memory off (the default)', () => {
  let gw: GatewayProcess;
  beforeAll(async () => {
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--log-level', 'warn']);
  });
  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
  });

  it('refuses registration and requests that name a region with FAILED_PRECONDITION, saying how to turn it on', async () => {
    const error = await failure(gw.client.registerSystemSharedMemory('r', KEY, 4));
    expect([error.code, error.details]).toEqual([GrpcStatus.FAILED_PRECONDITION, 'system shared memory is off on this gateway (start it with --system-shared-memory true)']);
    const body = { inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], parameters: { shared_memory_region: 'r', shared_memory_byte_size: 64 } }] };
    const res = await fetch(`${httpUrlOf(gw)}/v2/models/identity_fp32/infer`, { method: 'POST', body: JSON.stringify(body) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe(
      "model 'identity_fp32': input 'INPUT0': names a shared memory region, but system shared memory is off on this gateway (start it with --system-shared-memory true)",
    );
    expect((await gw.client.getServerMetadata()).extensions).not.toContain('system_shared_memory');
  });

  it('refuses --system-shared-memory with --tenants, at start', async () => {
    const tenants = await runCli(['serve', '--model-repository', TEST_REPOSITORY, '--system-shared-memory', 'true', '--tenants', '/nonexistent.yaml']);
    expect(tenants.code).toBe(2);
    expect(tenants.stderr).toMatch(/--system-shared-memory: not with --tenants/);
  });
});

describe('system shared memory with two gateway processes', () => {
  const CLUSTER_KEY = `/fabriek-test-${process.pid}-cluster`;
  let gw: GatewayProcess;
  let clients: InferenceGrpcClient[];

  beforeAll(async () => {
    await createSharedMemoryRegion(CLUSTER_KEY, 128);
    await writeSharedMemory(CLUSTER_KEY, f32(sixteen(10)));
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--system-shared-memory', 'true', '--gateway-processes', '2', '--log-level', 'warn']);
    // Separate connections: the two processes answer among them.
    clients = Array.from({ length: 6 }, () => new InferenceGrpcClient(gw.address, { channelOptions: { 'grpc.use_local_subchannel_pool': 1 } }));
  });
  afterAll(async () => {
    for (const c of clients ?? []) c.close();
    expect(await gw?.stop()).toBe(0);
    await destroySharedMemoryRegion(CLUSTER_KEY);
  });

  const everyoneSees = async (expected: string[]): Promise<void> => {
    for (const c of clients) expect((await c.getSystemSharedMemoryStatus()).map((r) => r.name).sort()).toEqual(expected);
  };
  const inferThroughEach = async (): Promise<void> => {
    for (const c of clients) {
      const result = await c.infer('identity_fp32', [sharedMemoryInput('INPUT0', 'FP32', [1, 16], { region: 'in', byteSize: 64 })]);
      expect([...result.data('OUTPUT0', 'FP32')]).toEqual(sixteen(10));
    }
  };

  it('a region registered through one process is in force in the other, and in one forked later; unregistered alike', async () => {
    await clients[0]?.registerSystemSharedMemory('in', CLUSTER_KEY, 64);
    await everyoneSees(['in']);
    await inferThroughEach();
    const metrics = `http://127.0.0.1:${/metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}/metrics`;
    const perProcess = [...(await (await fetch(metrics)).text()).matchAll(/^fabriek_gateway_process_requests\{pid="(\d+)"\} (\d+)/gm)].map((m) => Number(m[2]));
    expect(perProcess).toHaveLength(2);
    for (const n of perProcess) expect(n).toBeGreaterThan(0);

    // A gateway process that dies is forked again, and takes the regions from the primary.
    const child = childPids(gw.child.pid as number).find((p) => !isWorkerProcess(p)) as number;
    process.kill(child, 'SIGKILL');
    await waitFor(() => childPids(gw.child.pid as number).filter((p) => !isWorkerProcess(p)).length === 2 && !childPids(gw.child.pid as number).includes(child), 30_000, 'a new gateway process');
    await waitFor(
      async () => {
        const seen = await Promise.all(clients.map((c) => c.getSystemSharedMemoryStatus().then((r) => r.length, () => -1)));
        return seen.every((n) => n === 1);
      },
      30_000,
      'the region in the new process',
    );
    await inferThroughEach();

    await clients[1]?.unregisterSystemSharedMemory('in');
    await everyoneSees([]);
  });

  it('registers a name once when both processes are asked at the same time: the others hear Triton\'s refusal', async () => {
    for (let round = 0; round < 5; round++) {
      const name = `race-${round}`;
      // Every client at once, over connections the two processes share: exactly one registration wins.
      const outcomes = await Promise.allSettled(clients.map((c, i) => c.registerSystemSharedMemory(name, CLUSTER_KEY, 64, i % 2 === 0 ? 0 : 64)));
      const won = outcomes.filter((o) => o.status === 'fulfilled');
      expect(won).toHaveLength(1);
      for (const o of outcomes) {
        if (o.status === 'rejected') expect(String((o.reason as Error).message)).toContain(`shared memory region '${name}' already in manager`);
      }
      // Every process holds the winner's region, the same one.
      const seen = await Promise.all(clients.map((c) => c.getSystemSharedMemoryStatus(name)));
      expect(new Set(seen.map((r) => JSON.stringify(r))).size).toBe(1);
      await clients[round % clients.length]?.unregisterSystemSharedMemory(name);
      await everyoneSees([]);
    }
  });
});

describe('system shared memory and the in-flight gate', () => {
  const GATE_KEY = `/fabriek-test-${process.pid}-gate`;
  const ROWS = 32_768; // 2 MiB of FP32 [ROWS, 16]
  let repo: string;
  let gw: GatewayProcess;

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-shm-gate-'));
    // A batch is cut only at 65,536 rows or after 3 s: a request waits in the queue, holding its bytes.
    await putModel(repo, 'waiting', 'max_batch_size: 65536\ndynamic_batching { max_queue_delay_microseconds: 3000000 }\n', buildModel('identity_fp32'));
    // Answers at once: the probe below never waits behind the request it probes for.
    await putModel(repo, 'quick', undefined, buildModel('identity_fp32'));
    await createSharedMemoryRegion(GATE_KEY, ROWS * 64);
    gw = await startGateway(['--model-repository', repo, '--system-shared-memory', 'true', '--max-inflight-bytes', String(1 << 20), '--log-level', 'warn']);
  });
  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await destroySharedMemoryRegion(GATE_KEY);
    await rm(repo, { recursive: true, force: true });
  });

  it('counts an input in shared memory as bytes held: a request sent while it waits is refused at once', async () => {
    const url = httpUrlOf(gw);
    await gw.client.registerSystemSharedMemory('gate', GATE_KEY, ROWS * 64);
    const body = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [ROWS, 16], parameters: { shared_memory_region: 'gate', shared_memory_byte_size: ROWS * 64 } }] });
    const first = fetch(`${url}/v2/models/waiting/infer`, { method: 'POST', body });
    // Its 2 MiB held, past the 1 MiB bound: a small request is refused from its headers.
    await waitFor(
      async () => {
        const res = await fetch(`${url}/v2/models/quick/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: sixteen(0) }] }) });
        await res.arrayBuffer();
        return res.status === 429;
      },
      2_500,
      'a refusal while the 2 MiB request waits in the queue',
    );
    expect((await first).status).toBe(200);
  });
});
