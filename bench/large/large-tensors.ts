// Large tensors at wire speed (issue #12 item 6): one FP32 tensor of 16, 64
// and 256 MB through a one-op model and back, over gRPC, over HTTP's
// binary tensor extension and through system shared memory (the client
// writes the tensor into a /dev/shm object and reads the answer from it,
// both counted in the time), side by side with bare grpc-js echoing the same
// bytes (bench/baselines/grpc-echo.ts) in the same run. For each it reports
// the time of the call (best of the repeats) and the growth of the server
// process tree's resident memory (gateway + workers, from /proc) over the
// call, sampled every few ms, against what it was just before.
//
//   node dist/bench/large/large-tensors.js [--sizes-mb 16,64,256] [--repeats 2] [-- SERVE FLAGS]
import { credentials, Metadata } from '@grpc/grpc-js';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { identityModel } from '../../models/build/test-models.js';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { createSharedMemoryRegion, destroySharedMemoryRegion, readSharedMemory, writeSharedMemory } from '../../client/system-shared-memory.js';
import { GRPCInferenceServiceClient, type ModelInferRequest, type ModelInferResponse } from '../../proto/gen/inference.js';
import { spawnEchoServer } from '../baselines/grpc-echo.js';
import { type ChildServer, httpUrlOf, removeAtExit, startGateway } from '../load/child-server.js';
import { splitServeFlags } from '../options.js';

const MODEL = 'big_identity';
const GIB = 1 << 30;

/** Resident bytes of `pid` and its descendants (0 for a process that is gone). */
export function treeRssBytes(pid: number): number {
  let bytes = 0;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    bytes += Number(kb ?? 0) * 1024;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      for (const child of children ? children.split(' ') : []) bytes += treeRssBytes(Number(child));
    }
  } catch {
    // the process ended between the reads
  }
  return bytes;
}

/** Peak tree RSS while `work` runs, minus the RSS just before it. */
async function withRss<T>(pid: number, work: () => Promise<T>): Promise<{ value: T; growth: number }> {
  const before = treeRssBytes(pid);
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, treeRssBytes(pid));
  }, 5);
  try {
    const value = await work();
    peak = Math.max(peak, treeRssBytes(pid));
    return { value, growth: peak - before };
  } finally {
    clearInterval(timer);
  }
}

function tensor(bytes: number): Buffer {
  const data = Buffer.allocUnsafe(bytes);
  const f = new Float32Array(data.buffer, data.byteOffset, bytes / 4);
  for (let i = 0; i < f.length; i += 1024) f[i] = i; // a pattern the check can see
  return data;
}

function request(data: Buffer): ModelInferRequest {
  return {
    modelName: MODEL,
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1n, BigInt(data.byteLength / 4)], parameters: {} }],
    outputs: [],
    rawInputContents: [data],
  };
}

/** The request of the shared memory target: the input from region 'in', the output to region 'out'. */
function shmRequest(bytes: number): ModelInferRequest {
  const param = (value: string | number) =>
    typeof value === 'string' ? { parameterChoice: { $case: 'stringParam' as const, value } } : { parameterChoice: { $case: 'int64Param' as const, value: BigInt(value) } };
  return {
    modelName: MODEL,
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1n, BigInt(bytes / 4)], parameters: { shared_memory_region: param('in'), shared_memory_byte_size: param(bytes) } }],
    outputs: [{ name: 'OUTPUT0', parameters: { shared_memory_region: param('out'), shared_memory_byte_size: param(bytes) } }],
    rawInputContents: [],
  };
}

function grpcCall(client: GRPCInferenceServiceClient, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.modelInfer(request(data), new Metadata(), { deadline: Date.now() + 600_000 }, (error: Error | null, response?: ModelInferResponse) => {
      if (error) return reject(error);
      const out = response?.rawOutputContents[0];
      if (out === undefined) return reject(new Error('answer without raw_output_contents'));
      resolve(out);
    });
  });
}

async function httpCall(url: string, data: Buffer): Promise<Buffer> {
  const header = Buffer.from(
    JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, data.byteLength / 4], parameters: { binary_data_size: data.byteLength } }], outputs: [{ name: 'OUTPUT0', parameters: { binary_data: true } }] }),
  );
  const response = await fetch(`${url}/v2/models/${MODEL}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.byteLength) },
    body: Buffer.concat([header, data]),
    signal: AbortSignal.timeout(600_000),
  });
  const body = Buffer.from(await response.arrayBuffer());
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${body.toString('utf8', 0, 300)}`);
  const jsonLength = Number(response.headers.get('inference-header-content-length'));
  return body.subarray(jsonLength);
}

interface Row {
  readonly target: string;
  readonly mb: number;
  readonly ms: number;
  readonly rssGrowth: number;
}

async function measure(target: string, server: ChildServer, mb: number, repeats: number, call: (data: Buffer) => Promise<Buffer>): Promise<Row> {
  const data = tensor(mb * 1024 * 1024);
  let best = Infinity;
  let growth = 0;
  for (let i = 0; i < repeats; i++) {
    const started = performance.now();
    const { value, growth: g } = await withRss(server.pid, () => call(data));
    const ms = performance.now() - started;
    if (!value.equals(data)) throw new Error(`${target} ${mb} MB: the answer's bytes differ from the request's`);
    best = Math.min(best, ms);
    growth = Math.max(growth, g);
  }
  const row = { target, mb, ms: best, rssGrowth: growth };
  process.stderr.write(`${target.padEnd(16)} ${String(mb).padStart(4)} MB  ${best.toFixed(0).padStart(6)} ms  RSS +${(growth / 2 ** 20).toFixed(0)} MB (${(growth / (mb * 2 ** 20)).toFixed(1)}x)\n`);
  return row;
}

async function main(): Promise<void> {
  const { own, serveFlags } = splitServeFlags(process.argv.slice(2));
  const { values } = parseArgs({ args: own, options: { 'sizes-mb': { type: 'string', default: '16,64,256' }, repeats: { type: 'string', default: '2' } } });
  const sizes = (values['sizes-mb'] ?? '').split(',').map(Number);
  const repeats = Number(values.repeats);
  const dir = mkdtempSync(join(tmpdir(), 'fabriek-large-'));
  const forget = removeAtExit(dir);
  mkdirSync(join(dir, MODEL, '1'), { recursive: true });
  writeFileSync(join(dir, MODEL, '1', 'model.onnx'), identityModel(MODEL, 'float', ['batch', 'n']));
  const options = { 'grpc.max_receive_message_length': GIB, 'grpc.max_send_message_length': GIB };
  // A fresh server for every target and size: memory a process took for one
  // call is rarely given back, and would hide the next call's growth.
  type Caller = { call(data: Buffer): Promise<Buffer>; close(): void };
  const fresh = async (target: string, mb: number, start: () => Promise<ChildServer>, connect: (server: ChildServer) => Caller): Promise<void> => {
    const server = await start();
    const caller = connect(server);
    try {
      rows.push(await measure(target, server, mb, repeats, (d) => caller.call(d)));
    } finally {
      caller.close();
      await server.stop(10_000);
    }
  };
  const grpcTo = (server: ChildServer): Caller => {
    const client = new GRPCInferenceServiceClient(server.address, credentials.createInsecure(), options);
    return { call: (d) => grpcCall(client, d), close: () => client.close() };
  };
  const httpTo = (server: ChildServer): Caller => ({ call: (d) => httpCall(httpUrlOf(server) ?? '', d), close: () => {} });
  const shmTo = (server: ChildServer): Caller => {
    const client = new InferenceGrpcClient(server.address, { maxMessageBytes: GIB });
    const key = `/fabriek-bench-${process.pid}`;
    let size = 0;
    return {
      call: async (d) => {
        if (size !== d.byteLength) {
          size = d.byteLength;
          await createSharedMemoryRegion(key, 2 * size);
          await client.unregisterSystemSharedMemory();
          await client.registerSystemSharedMemory('in', key, size, 0);
          await client.registerSystemSharedMemory('out', key, size, size);
        }
        await writeSharedMemory(key, d);
        await client.modelInfer(shmRequest(size), { timeoutMs: 600_000 });
        return readSharedMemory(key, size, size);
      },
      close: () => {
        client.close();
        void destroySharedMemoryRegion(key);
      },
    };
  };
  const gateway = (): Promise<ChildServer> => startGateway(dir, ['--max-message-bytes', String(GIB), ...serveFlags]);
  const rows: Row[] = [];
  try {
    for (const mb of sizes) {
      await fresh('grpc-echo', mb, spawnEchoServer, grpcTo);
      await fresh('fabriek gRPC', mb, gateway, grpcTo);
      await fresh('fabriek HTTP', mb, gateway, httpTo);
      await fresh('fabriek shm', mb, () => startGateway(dir, ['--max-message-bytes', String(GIB), '--system-shared-memory', 'true', ...serveFlags]), shmTo);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    forget();
  }
  const lines = [
    '| tensor | grpc-echo | fabriek gRPC | × echo | RSS growth | fabriek HTTP | × echo | RSS growth | fabriek shm | × echo | RSS growth |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const mb of sizes) {
    const [e, g, h, s] = ['grpc-echo', 'fabriek gRPC', 'fabriek HTTP', 'fabriek shm'].map((t) => rows.find((r) => r.target === t && r.mb === mb) as Row) as [Row, Row, Row, Row];
    const x = (r: Row): string => `${(r.ms / e.ms).toFixed(2)}×`;
    const rss = (r: Row): string => `+${(r.rssGrowth / 2 ** 20).toFixed(0)} MB (${(r.rssGrowth / (mb * 2 ** 20)).toFixed(1)}×)`;
    lines.push(`| ${mb} MB | ${e.ms.toFixed(0)} ms | ${g.ms.toFixed(0)} ms | ${x(g)} | ${rss(g)} | ${h.ms.toFixed(0)} ms | ${x(h)} | ${rss(h)} | ${s.ms.toFixed(0)} ms | ${x(s)} | ${rss(s)} |`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`large-tensors failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
    process.exit(1);
  },
);
