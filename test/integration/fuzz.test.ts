// Hostile input against one real gateway: thousands of malformed requests
// over gRPC and HTTP from a seeded generator (FABRIEK_FUZZ_SEED replays a
// run). Every request must get an answer that says what was wrong, with a
// client-error status; the server must stay up, log no internal errors, keep
// its memory bounded, and still answer a valid request correctly.
import { Client, credentials, Metadata } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelInferResponse, ModelStreamInferResponse } from '../../proto/gen/inference.js';
import { fuzzSeed, Random, runBounded } from '../helpers/fuzz-random.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { encode, STRUCTURED, UNSTRUCTURED, validFp32 } from '../helpers/hostile-grpc.js';
import { OTHER_RPCS } from '../helpers/hostile-grpc-rpcs.js';
import { HTTP_CASES, type HttpCase, sendRaw } from '../helpers/hostile-http.js';
import { type GrpcCase, MODEL_STREAM_INFER, RawGrpcClient } from '../helpers/raw-grpc-client.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

const SEED = fuzzSeed();
/** Requests per generator; the totals are printed at the end. */
const STRUCTURED_EACH = 30;
const UNSTRUCTURED_EACH = 500;
const OTHER_RPCS_EACH = 60;
const HTTP_EACH = 40;
const CONCURRENCY = 16;
/** Error messages are cut to this many UTF-8 bytes (grpc-message travels in a header). */
const MAX_MESSAGE_BYTES = 1024;
const MAX_RSS_GROWTH_BYTES = 600 * 2 ** 20;

const MODELS = ['identity_fp32', 'identity_uint8', 'identity_string', 'add_sub', 'fixed_fp32'];

function rssBytes(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (kb === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb) * 1024;
}

interface Failure {
  readonly kind: string;
  readonly index: number;
  readonly problem: string;
}

/** Cases from each generator in turn, `each` per generator, all from one seeded stream. */
function cases<C>(generators: ReadonlyArray<(r: Random) => C>, each: number, r: Random): C[] {
  const out: C[] = [];
  for (let i = 0; i < each; i++) for (const g of generators) out.push(g(r));
  return out;
}

describe(`hostile input (seed ${SEED})`, () => {
  let gw: GatewayProcess;
  let repo: string;
  let httpPort: number;
  let rssBefore: number;
  const counts = { grpc: 0, stream: 0, http: 0 };

  beforeAll(async () => {
    repo = await mkdtemp(join(tmpdir(), 'fabriek-fuzz-'));
    const add = async (name: string, from: string, config?: string): Promise<void> => {
      await mkdir(join(repo, name, '1'), { recursive: true });
      await copyFile(join(TEST_REPOSITORY, from, '1', 'model.onnx'), join(repo, name, '1', 'model.onnx'));
      if (config !== undefined) await writeFile(join(repo, name, 'config.pbtxt'), config);
    };
    for (const m of MODELS) await add(m, m);
    // Dynamic batching with priorities and timeout overrides, for the request parameters.
    await add(
      'batched_fp32',
      'identity_fp32',
      'max_batch_size: 4\ndynamic_batching { max_queue_delay_microseconds: 100 priority_levels: 2 default_priority_level: 1 ' +
        'default_queue_policy { allow_timeout_override: true default_timeout_microseconds: 10000000 } }\n',
    );
    gw = await startGateway(['--model-repository', repo, '--log-level', 'warn', '--max-message-bytes', String(1 << 20)]);
    httpPort = Number(/HTTP on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]);
    const pid = gw.child.pid;
    if (pid === undefined) throw new Error('no gateway pid');
    rssBefore = rssBytes(pid);
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    if (repo) await rm(repo, { recursive: true, force: true });
  });

  /** The common checks of an error answer: a message that is there, bounded, and matches. */
  function checkMessage(message: string, pattern: RegExp | undefined, fail: (problem: string) => void): void {
    if (message.trim() === '') fail('empty error message');
    if (Buffer.byteLength(message) > MAX_MESSAGE_BYTES) fail(`error message of ${Buffer.byteLength(message)} bytes`);
    if (pattern && !pattern.test(message)) fail(`message ${JSON.stringify(message.slice(0, 300))} does not match ${String(pattern)}`);
  }

  it('answers every malformed gRPC call with a client-error status and a message', async () => {
    const r = new Random(SEED);
    const all: GrpcCase[] = [
      ...cases(STRUCTURED, STRUCTURED_EACH, r),
      ...cases(UNSTRUCTURED, UNSTRUCTURED_EACH, r),
      ...cases(OTHER_RPCS, OTHER_RPCS_EACH, r),
    ];
    const client = new RawGrpcClient(gw.address);
    const failures: Failure[] = [];
    const seen = new Map<string, number>();
    try {
      await runBounded(all, CONCURRENCY, async (c, index) => {
        const answer = await client.call(c);
        const fail = (problem: string): void => void failures.push({ kind: c.kind, index, problem: `${answer.code}: ${problem}` });
        const key = `${c.kind} → ${answer.code}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
        if (!c.codes.includes(answer.code)) fail(`expected one of ${c.codes.join(', ')}; details ${JSON.stringify(answer.details.slice(0, 300))}`);
        if (answer.code === 'OK') {
          if (c.echo && answer.response) {
            const res = ModelInferResponse.decode(answer.response);
            if (!Buffer.from(res.rawOutputContents[0] ?? []).equals(c.echo)) fail('wrong output bytes');
          }
          return;
        }
        checkMessage(answer.details, c.message, fail);
      });
    } finally {
      client.close();
    }
    counts.grpc = all.length;
    console.log(`gRPC: ${all.length} requests\n${[...seen].map(([k, n]) => `  ${k}: ${n}`).join('\n')}`);
    expect(failures.slice(0, 20), `seed ${SEED}: ${failures.length} failures`).toEqual([]);
  });

  it('answers every message on a ModelStreamInfer stream, malformed ones with error_message, and keeps the stream open', async () => {
    const r = new Random(SEED ^ 0x5717);
    const messages = Array.from({ length: 300 }, () => {
      const c = r.chance(0.2) ? STRUCTURED[0] : r.pick([...UNSTRUCTURED.slice(0, 2), ...STRUCTURED.slice(3, 30)]);
      return c?.(r);
    }).filter((c): c is GrpcCase => c !== undefined && c.bytes.byteLength < 1 << 19);
    const client = new Client(gw.address, credentials.createInsecure());
    const answers: ModelStreamInferResponse[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        const call = client.makeBidiStreamRequest<Buffer, Buffer>(MODEL_STREAM_INFER, (b) => b, (b) => b, new Metadata(), { deadline: Date.now() + 60_000 });
        call.on('data', (b: Buffer) => answers.push(ModelStreamInferResponse.decode(b)));
        call.on('error', reject);
        call.on('end', resolve);
        for (const m of messages) call.write(m.bytes);
        call.end();
      });
    } finally {
      client.close();
    }
    counts.stream = messages.length;
    expect(answers).toHaveLength(messages.length);
    const errors = answers.filter((a) => a.errorMessage !== '');
    const valid = messages.filter((m) => m.codes.length === 1 && m.codes[0] === 'OK').length;
    expect(answers.length - errors.length).toBeGreaterThanOrEqual(valid);
    for (const a of errors) {
      expect(a.errorMessage.trim()).not.toBe('');
      expect(Buffer.byteLength(a.errorMessage)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
      expect(a.errorMessage).not.toBe('internal error');
    }
  });

  it('answers every malformed HTTP request with a 4xx and a JSON error', async () => {
    const r = new Random(SEED ^ 0x4711);
    const all: HttpCase[] = cases(HTTP_CASES, HTTP_EACH, r);
    const failures: Failure[] = [];
    const seen = new Map<string, number>();
    await runBounded(all, CONCURRENCY, async (c, index) => {
      const answer = await sendRaw(httpPort, c);
      const fail = (problem: string): void => void failures.push({ kind: c.kind, index, problem: `${answer.status}: ${problem}` });
      const key = `${c.kind} → ${answer.status}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      const body = answer.body.toString('utf8');
      if (!c.statuses.includes(answer.status)) fail(`expected one of ${c.statuses.join(', ')}; body ${JSON.stringify(body.slice(0, 300))}`);
      if (answer.status === 200) {
        if (c.echo) {
          const outputs = (JSON.parse(body) as { outputs?: { data?: unknown }[] }).outputs;
          expect(outputs?.[0]?.data, c.kind).toEqual(c.echo);
        }
        return;
      }
      if (answer.status === 0) return;
      let error: unknown;
      try {
        error = (JSON.parse(body) as { error?: unknown }).error;
      } catch {
        return fail(`body is not JSON: ${JSON.stringify(body.slice(0, 200))}`);
      }
      if (typeof error !== 'string') return fail(`no error string in ${JSON.stringify(body.slice(0, 200))}`);
      checkMessage(error, c.message, fail);
    });
    counts.http = all.length;
    console.log(`HTTP: ${all.length} requests\n${[...seen].map(([k, n]) => `  ${k}: ${n}`).join('\n')}`);
    expect(failures.slice(0, 20), `seed ${SEED}: ${failures.length} failures`).toEqual([]);
  });

  it('is still up afterwards, logged no internal error, kept its memory bounded, and answers correctly', async () => {
    expect(gw.child.exitCode).toBeNull();
    expect(await gw.client.serverLive()).toBe(true);
    expect(await gw.client.serverReady()).toBe(true);
    const live = await sendRaw(httpPort, { chunks: [Buffer.from('GET /v2/health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')] });
    expect(live.status).toBe(200);
    const r = new Random(SEED ^ 0xfeed);
    const { request, raw } = validFp32(r);
    const client = new RawGrpcClient(gw.address);
    const answer = await client.infer(encode(request));
    client.close();
    expect(answer.code).toBe('OK');
    expect(Buffer.from(ModelInferResponse.decode(answer.response ?? Buffer.alloc(0)).rawOutputContents[0] ?? [])).toEqual(raw);
    const internal = gw.stderr().split('\n').filter((l) => /"level":(50|60)/.test(l));
    expect(internal.slice(0, 5)).toEqual([]);
    const pid = gw.child.pid ?? 0;
    const growth = rssBytes(pid) - rssBefore;
    console.log(`${counts.grpc + counts.stream + counts.http} hostile requests (gRPC ${counts.grpc}, stream ${counts.stream}, HTTP ${counts.http}); gateway RSS grew by ${(growth / 2 ** 20).toFixed(0)} MiB`);
    expect(growth).toBeLessThan(MAX_RSS_GROWTH_BYTES);
  });
});
