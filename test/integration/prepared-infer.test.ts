// Requests encoded once and sent many times (`prepareInfer` / `inferPrepared`)
// against the real `fabriek serve`: through the client library over gRPC and
// HTTP, and through the bench's own HTTP/2 gRPC load client. Answers, server
// errors, deadlines and cancellation must read exactly as `infer`'s do.
import { status } from '@grpc/grpc-js';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { H2GrpcInfer, type PreparedSender } from '../../bench/load/h2-grpc-infer.js';
import { InferenceError, InferenceGrpcClient, InferenceHttpClient, input } from '../../client/index.js';
import { failure } from '../helpers/call-outcome.js';
import { type GatewayProcess, httpUrlOf, startGateway } from '../helpers/gateway-process.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

/** The InferenceError a call failed with (not grpc-js's own error type). */
async function rejection(p: Promise<unknown>): Promise<InferenceError> {
  const error = await failure(p);
  expect(error).toBeInstanceOf(InferenceError);
  return error;
}

let gw: GatewayProcess;
let httpUrl: string;

beforeAll(async () => {
  gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--log-level', 'warn']);
  httpUrl = httpUrlOf(gw);
});

afterAll(async () => {
  await gw?.stop();
});

type Sender = PreparedSender & { close(): void };

const senders = [
  ['the gRPC client', (): Sender => new InferenceGrpcClient(gw.address)],
  ['the HTTP client (binary)', (): Sender => new InferenceHttpClient(httpUrl)],
  ['the HTTP client (JSON)', (): Sender => new InferenceHttpClient(httpUrl, { binary: false })],
  ["the bench's HTTP/2 gRPC client", (): Sender => new H2GrpcInfer(gw.address)],
] as const;

describe.each(senders)('prepared requests through %s', (_name, make) => {
  let sender: Sender;
  beforeAll(() => {
    sender = make();
  });
  afterAll(() => sender.close());

  it('sends one prepared request many times at once, each answered right', async () => {
    const a = Float32Array.from({ length: 16 }, (_, i) => i);
    const b = new Float32Array(16).fill(0.5);
    const p = sender.prepareInfer('add_sub', [input('INPUT0', 'FP32', [1, 16], a), input('INPUT1', 'FP32', [1, 16], b)], { id: 'p-1' });
    expect(p.model).toBe('add_sub');
    expect(p.byteLength).toBeGreaterThan(128);
    const answers = await Promise.all(Array.from({ length: 24 }, () => sender.inferPrepared(p, { timeoutMs: 10_000 })));
    for (const r of answers) {
      expect(r.id).toBe('p-1');
      expect([...r.data('OUTPUT0', 'FP32')]).toEqual([...a].map((x) => x + 0.5));
      expect([...r.data('OUTPUT1', 'FP32')]).toEqual([...a].map((x) => x - 0.5));
    }
    const only = sender.prepareInfer('add_sub', [input('INPUT0', 'FP32', [1, 16], a), input('INPUT1', 'FP32', [1, 16], b)], { outputs: ['OUTPUT1'] });
    expect((await sender.inferPrepared(only)).outputs.map((o) => o.name)).toEqual(['OUTPUT1']);
  });

  it("gives the server's errors with their code and message, and keeps serving", async () => {
    const unknown = await rejection(sender.inferPrepared(sender.prepareInfer('no_such_model', [input('INPUT0', 'FP32', [1, 16], new Float32Array(16))])));
    expect(unknown.code).toBe(status.NOT_FOUND);
    expect(unknown.details).toMatch(/no_such_model/);
    const shape = await rejection(sender.inferPrepared(sender.prepareInfer('identity_fp32', [input('INPUT0', 'FP32', [1, 8], new Float32Array(8))])));
    expect(shape.code).toBe(status.INVALID_ARGUMENT);
    expect(shape.details).toMatch(/INPUT0/);
    const ok = await sender.inferPrepared(sender.prepareInfer('identity_fp32', [input('INPUT0', 'FP32', [1, 16], new Float32Array(16).fill(3))]));
    expect([...ok.data('OUTPUT0', 'FP32')]).toEqual(new Array(16).fill(3));
  });

  it('checks inputs when it prepares, as infer does before sending', () => {
    let error: unknown;
    try {
      sender.prepareInfer('identity_fp32', [input('INPUT0', 'FP32', [1, 16], new Float32Array(15))]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InferenceError);
    expect((error as InferenceError).code).toBe(status.INVALID_ARGUMENT);
    expect((error as InferenceError).details).toMatch(/input 'INPUT0' \(FP32\): shape \[1,16\] holds 16 elements, got 15/);
  });

  it('gives DEADLINE_EXCEEDED for a deadline already past and CANCELLED for an aborted call', async () => {
    const p = sender.prepareInfer('identity_fp64', [input('INPUT0', 'FP64', [1, 2], new Float64Array(2))]);
    expect((await rejection(sender.inferPrepared(p, { timeoutMs: 0 }))).code).toBe(status.DEADLINE_EXCEEDED);
    expect((await rejection(sender.inferPrepared(p, { deadline: Date.now() - 1 }))).code).toBe(status.DEADLINE_EXCEEDED);
    const abort = new AbortController();
    abort.abort();
    expect((await rejection(sender.inferPrepared(p, { signal: abort.signal }))).code).toBe(status.CANCELLED);
    expect(await sender.inferPrepared(p, { timeoutMs: 10_000 }).then((r) => [...r.data('OUTPUT0', 'FP64')])).toEqual([0, 0]);
  });
});

describe('prepared requests across clients', () => {
  it('refuses, with INVALID_ARGUMENT, a request prepared by a client of another kind', async () => {
    const grpc = new InferenceGrpcClient(gw.address);
    const http = new InferenceHttpClient(httpUrl);
    const h2 = new H2GrpcInfer(gw.address);
    try {
      const x = [input('INPUT0', 'FP32', [1, 16], new Float32Array(16))];
      const overHttp = await rejection(grpc.inferPrepared(http.prepareInfer('identity_fp32', x)));
      expect(overHttp.code).toBe(status.INVALID_ARGUMENT);
      expect(overHttp.details).toBe('a request prepared by a http client cannot be sent over gRPC');
      expect((await rejection(http.inferPrepared(grpc.prepareInfer('identity_fp32', x)))).details).toBe('a request prepared by a grpc client cannot be sent over HTTP');
      expect((await rejection(h2.inferPrepared(grpc.prepareInfer('identity_fp32', x)))).code).toBe(status.INVALID_ARGUMENT);
    } finally {
      grpc.close();
      http.close();
      h2.close();
    }
  });

  it("the bench's HTTP/2 client answers UNAVAILABLE when no server listens", async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolve(port));
      });
    });
    const nowhere = new H2GrpcInfer(`127.0.0.1:${closed}`);
    const p = nowhere.prepareInfer('identity_fp32', [input('INPUT0', 'FP32', [1, 16], new Float32Array(16))]);
    const e = await rejection(nowhere.inferPrepared(p, { timeoutMs: 5_000 }));
    expect(e.code).toBe(status.UNAVAILABLE);
    nowhere.close();
  });
});
