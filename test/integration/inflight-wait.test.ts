// --max-inflight-wait-ms through the real CLI: a gateway that has measured how
// fast it answers refuses a burst past the time bound from each call's
// metadata (gRPC RESOURCE_EXHAUSTED) or headers (HTTP 429), serves everything
// it admitted, and admits again once the burst is gone. With tenants, only
// the one over its share of the bound is refused.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type InferenceError } from '../../client/errors.js';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { slowChainModel } from '../../models/build/test-models.js';
import { zerosRequest } from '../helpers/call-outcome.js';
import { type GatewayProcess, httpUrlOf, startGateway } from '../helpers/gateway-process.js';

const WIDTH = 512;
const WAIT_MS = 100;
const request = () => zerosRequest('chain', ['input'], WIDTH);

let dir: string;
let gw: GatewayProcess;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fabriek-inflight-wait-'));
  await mkdir(join(dir, 'chain', '1'), { recursive: true });
  // A few ms a request: a burst of 300 is seconds of work, far past the bound.
  await writeFile(join(dir, 'chain', '1', 'model.onnx'), slowChainModel('chain', WIDTH, 128));
  await writeFile(join(dir, 'chain', 'config.pbtxt'), 'max_batch_size: 4\ndynamic_batching { }\ninstance_group [ { count: 1, kind: KIND_CPU } ]\n');
  gw = await startGateway(['--model-repository', dir, '--workers', '1', '--log-level', 'warn', '--max-inflight-wait-ms', String(WAIT_MS)]);
  // Busy answers to measure the rate from: four callers in a closed loop.
  const until = performance.now() + 1_500;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (performance.now() < until) await gw.client.modelInfer(request());
    }),
  );
});

afterAll(async () => {
  await gw?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('--max-inflight-wait-ms', () => {
  it('refuses a gRPC burst past the bound from the metadata, and serves what it admitted', async () => {
    const outcomes = await Promise.all(
      Array.from({ length: 300 }, () =>
        gw.client.modelInfer(request()).then(
          () => undefined,
          (e: unknown) => e as InferenceError,
        ),
      ),
    );
    const refused = outcomes.filter((e) => e !== undefined);
    const served = outcomes.length - refused.length;
    expect(served).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    for (const e of refused) {
      expect(e.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
      expect(e.message).toMatch(/server overloaded: \d+ requests hold \d+ bytes in flight, about \d+ ms of work at the [\d.]+ MB\/s the gateway answers; admitting another would pass --max-inflight-wait-ms 100/);
    }
    // And afterwards, with nothing in flight, it admits again.
    await gw.client.modelInfer(request());
  });

  it('refuses an HTTP burst past the bound with 429 from the headers', async () => {
    const url = `${httpUrlOf(gw)}/v2/models/chain/infer`;
    const body = JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, WIDTH], data: new Array<number>(WIDTH).fill(0) }] });
    const codes = await Promise.all(
      Array.from({ length: 200 }, () => fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } }).then(async (r) => ({ status: r.status, text: await r.text(), retry: r.headers.get('retry-after') }))),
    );
    const refused = codes.filter((c) => c.status === 429);
    expect(codes.filter((c) => c.status === 200).length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    expect(codes.filter((c) => c.status !== 200 && c.status !== 429)).toEqual([]);
    expect(refused[0]?.text).toMatch(/would pass --max-inflight-wait-ms 100/);
    expect(refused[0]?.retry).not.toBeNull();
  });
});

describe('--max-inflight-wait-ms with tenants', () => {
  const KEYS = { a: 'inflight-wait-tenant-a-key-0123', b: 'inflight-wait-tenant-b-key-0123' } as const;
  const as = (t: keyof typeof KEYS) => ({ metadata: { authorization: `Bearer ${KEYS[t]}` } });
  let tg: GatewayProcess;
  beforeAll(async () => {
    const tenants = ['tenants:', ...(['a', 'b'] as const).flatMap((t) => [`  ${t}:`, `    keys: [ "${hashKey(KEYS[t])}" ]`, '    models: [ "chain" ]']), ''];
    await writeFile(join(dir, 'tenants.yaml'), tenants.join('\n'));
    tg = await startGateway(['--model-repository', dir, '--workers', '1', '--log-level', 'warn', '--max-inflight-wait-ms', String(WAIT_MS), '--tenants', join(dir, 'tenants.yaml')]);
    const until = performance.now() + 1_500;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (performance.now() < until) await tg.client.modelInfer(request(), as('a'));
      }),
    );
  });
  afterAll(async () => {
    await tg?.stop();
  });

  it("refuses the flooding tenant past its share, and still admits the other's requests", async () => {
    const flood = Array.from({ length: 300 }, () => tg.client.modelInfer(request(), as('a')).then(() => undefined, (e: unknown) => e as InferenceError));
    const other = Array.from({ length: 5 }, () => tg.client.modelInfer(request(), as('b')).then(() => undefined, (e: unknown) => e as InferenceError));
    const [a, b] = await Promise.all([Promise.all(flood), Promise.all(other)]);
    const refused = a.filter((e) => e !== undefined);
    expect(refused.length).toBeGreaterThan(0);
    for (const e of refused) expect(e.message).toMatch(/would pass --max-inflight-wait-ms 100$/);
    // b came after a filled the bound: without shares it would have been refused as well.
    expect(b).toEqual([undefined, undefined, undefined, undefined, undefined]);
  });
});
