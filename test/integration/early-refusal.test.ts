// gRPC inference calls refused from their metadata, before grpc-js reads the
// message: a caller without a known key, or a tenant already over its request
// quota, costs the gateway no message buffering or decoding. Shown with a
// message over --max-message-bytes: read, it would fail as too large; refused
// first, it gets the caller's own refusal.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { failure, zerosRequest } from '../helpers/call-outcome.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { waitFor } from '../helpers/processes.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

const KEYS = { user: 'early-refusal-user-key-0123', slow: 'early-refusal-slow-key-0123' } as const;
const MAX_MESSAGE = 1 << 20;

const small = (model = 'identity_fp32'): ModelInferRequest => zerosRequest(model, ['INPUT0'], 16);
/** 4 MiB of tensor data: four times the gateway's message limit. */
const huge = (): ModelInferRequest => zerosRequest('identity_fp32', ['INPUT0'], MAX_MESSAGE);

describe('gRPC inference calls refused before their message is read', () => {
  let dir: string;
  let gw: GatewayProcess;
  let auditFile: string;
  const as = (key: string) => ({ metadata: { authorization: `Bearer ${key}` } });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fabriek-early-refusal-'));
    auditFile = join(dir, 'audit.log');
    const tenants = [
      'tenants:',
      '  user:',
      `    keys: [ "${hashKey(KEYS.user)}" ]`,
      '    models: [ "identity_fp32" ]',
      '  slow:',
      `    keys: [ "${hashKey(KEYS.slow)}" ]`,
      '    models: [ "identity_fp32" ]',
      '    quotas: { requests_per_second: 0.001, request_burst: 1 }',
      '',
    ].join('\n');
    await writeFile(join(dir, 'tenants.yaml'), tenants);
    gw = await startGateway([
      ...['--model-repository', TEST_REPOSITORY, '--workers', '1', '--log-level', 'warn'],
      ...['--tenants', join(dir, 'tenants.yaml'), '--audit-log', auditFile, '--max-message-bytes', String(MAX_MESSAGE)],
    ]);
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(dir, { recursive: true, force: true });
  });

  it('a message over the limit from a known tenant is read and refused as too large (the baseline)', async () => {
    const e = await failure(gw.client.modelInfer(huge(), as(KEYS.user)));
    expect(GrpcStatus[e.code]).toBe('RESOURCE_EXHAUSTED');
    expect(e.details).toMatch(/larger than max/i);
  });

  it('without a key or with an unknown one: UNAUTHENTICATED before the message is read', async () => {
    const none = await failure(gw.client.modelInfer(huge()));
    expect(GrpcStatus[none.code]).toBe('UNAUTHENTICATED');
    const unknown = await failure(gw.client.modelInfer(huge(), { metadata: { authorization: 'Bearer not-a-key' } }));
    expect(GrpcStatus[unknown.code]).toBe('UNAUTHENTICATED');
    expect(unknown.details).toBe('unknown API key');
  });

  it('a tenant over its request quota: RESOURCE_EXHAUSTED with its retry hint, before the message is read', async () => {
    expect((await gw.client.modelInfer(small(), as(KEYS.slow))).outputs[0]?.shape.map(Number)).toEqual([1, 16]); // its burst of 1
    const e = await failure(gw.client.modelInfer(huge(), as(KEYS.slow)));
    expect(GrpcStatus[e.code]).toBe('RESOURCE_EXHAUSTED');
    expect(e.details).not.toMatch(/larger than max/i);
    expect(e.details).toMatch(/slow/);
    expect(e.retryAfterMs).toBeGreaterThan(0);
  });

  it('calls that pass go on to the full admission: model access, then the answer', async () => {
    expect((await gw.client.modelInfer(small(), as(KEYS.user))).outputs[0]?.shape.map(Number)).toEqual([1, 16]);
    const denied = await failure(gw.client.modelInfer(small('add_sub'), as(KEYS.user)));
    expect(GrpcStatus[denied.code]).toBe('PERMISSION_DENIED');
  });

  it('early refusals are audited, without a model (none was read)', async () => {
    type Line = { tenant: string | null; op: string; model: string; status: string };
    let lines: Line[] = [];
    await waitFor(
      async () => {
        lines = (await readFile(auditFile, 'utf8').catch(() => ''))
          .trim()
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as Line);
        return lines.filter((l) => l.status === 'UNAUTHENTICATED').length >= 2 && lines.some((l) => l.tenant === 'slow' && l.status === 'RESOURCE_EXHAUSTED');
      },
      5_000,
      'the audit lines of the refused calls',
    );
    expect(lines.filter((l) => l.status === 'UNAUTHENTICATED')).toEqual([
      expect.objectContaining({ tenant: null, op: 'infer', model: '' }),
      expect.objectContaining({ tenant: null, op: 'infer', model: '' }),
    ]);
    expect(lines.find((l) => l.tenant === 'slow' && l.status === 'RESOURCE_EXHAUSTED')).toMatchObject({ op: 'infer', model: '' });
  });
});
