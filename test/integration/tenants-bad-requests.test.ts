// A tenant's requests that fail before they reach the scheduler (malformed
// tensors, an unknown version, a model it may not use) still count against
// its request rate: a flood of bad requests gets RESOURCE_EXHAUSTED like any
// other, over gRPC and HTTP, and the tenant's good requests wait their turn.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { outcomeOf, zerosRequest } from '../helpers/call-outcome.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

const KEYS = { grpc: 'bad-requests-grpc-key-0123', http: 'bad-requests-http-key-0123', fine: 'bad-requests-fine-key-0123' } as const;
const BURST = 3;

const identityRequest = (elements: number, model = 'identity_fp32', version = ''): ModelInferRequest => zerosRequest(model, ['INPUT0'], elements, version);

describe('bad requests count against the request rate', () => {
  let dir: string;
  let gw: GatewayProcess;
  let http: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fabriek-bad-requests-'));
    const tenant = (name: string, key: string, quota: boolean): string[] => [
      `  ${name}:`,
      `    keys: [ "${hashKey(key)}" ]`,
      '    models: [ "identity_fp32" ]',
      ...(quota ? [`    quotas: { requests_per_second: 0.001, request_burst: ${BURST} }`] : []),
    ];
    const yaml = ['tenants:', ...tenant('grpc', KEYS.grpc, true), ...tenant('http', KEYS.http, true), ...tenant('fine', KEYS.fine, false), ''];
    await writeFile(join(dir, 'tenants.yaml'), yaml.join('\n'));
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--workers', '1', '--log-level', 'warn', '--tenants', join(dir, 'tenants.yaml')]);
    http = `http://127.0.0.1:${/HTTP on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1] ?? ''}`;
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(dir, { recursive: true, force: true });
  });

  it('gRPC: malformed tensors, an unknown version and a forbidden model use up the burst; then RESOURCE_EXHAUSTED', async () => {
    const as = { metadata: { authorization: `Bearer ${KEYS.grpc}` } };
    expect(await outcomeOf(gw.client.modelInfer(identityRequest(15), as))).toBe('INVALID_ARGUMENT'); // identity_fp32 takes [-1, 16]
    expect(await outcomeOf(gw.client.modelInfer(identityRequest(16, 'identity_fp32', '99'), as))).toBe('NOT_FOUND');
    expect(await outcomeOf(gw.client.modelInfer(identityRequest(16, 'add_sub'), as))).toBe('PERMISSION_DENIED');
    // Each bad request took one request of the rate; a good one now waits like any other over quota.
    expect(await outcomeOf(gw.client.modelInfer(identityRequest(16), as))).toBe('RESOURCE_EXHAUSTED');
    expect(await outcomeOf(gw.client.modelInfer(identityRequest(15), as))).toBe('RESOURCE_EXHAUSTED');
  });

  it('HTTP: the same', async () => {
    const headers = { authorization: `Bearer ${KEYS.http}`, 'content-type': 'application/json' };
    const body = (elements: number): string => JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, elements], data: new Array<number>(elements).fill(1) }] });
    const post = async (path: string, elements: number): Promise<number> => (await fetch(`${http}${path}`, { method: 'POST', headers, body: body(elements) })).status;
    expect(await post('/v2/models/identity_fp32/infer', 15)).toBe(400);
    expect(await post('/v2/models/identity_fp32/versions/99/infer', 16)).toBe(404);
    expect(await post('/v2/models/add_sub/infer', 16)).toBe(403);
    const over = await fetch(`${http}/v2/models/identity_fp32/infer`, { method: 'POST', headers, body: body(16) });
    expect(over.status).toBe(429);
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('a tenant without quotas is never throttled by its mistakes', async () => {
    const as = { metadata: { authorization: `Bearer ${KEYS.fine}` } };
    for (let i = 0; i < 2 * BURST; i++) expect(await outcomeOf(gw.client.modelInfer(identityRequest(15), as))).toBe('INVALID_ARGUMENT');
    expect(await outcomeOf(gw.client.modelInfer(identityRequest(16), as))).toBe('OK');
  });
});
