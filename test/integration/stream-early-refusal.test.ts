// ModelStreamInfer gets the early refusal of unary calls: a stream from a
// caller without a known key, or from a tenant already over its request
// quota, ends at once with that status before any message is read (shown
// with a first message over --max-message-bytes, which read would fail as
// too large), over quota with the retry hint in the trailers. A stream that
// opens is still admitted message by message.
import { Metadata, type ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { zerosRequest } from '../helpers/call-outcome.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

const KEYS = { user: 'stream-refusal-user-key-0123', slow: 'stream-refusal-slow-key-0123' } as const;
const MAX_MESSAGE = 1 << 20;

const small = (): ModelInferRequest => zerosRequest('identity_fp32', ['INPUT0'], 16);
/** 4 MiB of tensor data: four times the gateway's message limit. */
const huge = (): ModelInferRequest => zerosRequest('identity_fp32', ['INPUT0'], MAX_MESSAGE);

interface StreamEnd {
  /** error_message of each response ('' = answered). */
  readonly answers: string[];
  /** The stream's status, and its trailers. */
  readonly status: string;
  readonly details: string;
  readonly trailers: Record<string, unknown>;
}

describe('ModelStreamInfer refused when it opens, before its messages are read', () => {
  let dir: string;
  let gw: GatewayProcess;

  const stream = async (key: string | undefined, requests: readonly ModelInferRequest[]): Promise<StreamEnd> => {
    const metadata = new Metadata();
    if (key !== undefined) metadata.set('authorization', `Bearer ${key}`);
    const call = gw.client.raw.modelStreamInfer(metadata);
    const answers: string[] = [];
    const end = new Promise<StreamEnd>((resolve) => {
      call.on('data', (r: { errorMessage: string }) => answers.push(r.errorMessage));
      call.on('error', (e: ServiceError) => resolve({ answers, status: GrpcStatus[e.code] ?? '?', details: e.details, trailers: e.metadata.getMap() }));
      call.on('status', (s: { code: number; details: string; metadata: Metadata }) => {
        if (s.code === GrpcStatus.OK) resolve({ answers, status: 'OK', details: s.details, trailers: s.metadata.getMap() });
      });
    });
    call.on('error', () => {});
    for (const r of requests) call.write(r);
    call.end();
    return end;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fabriek-stream-refusal-'));
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
      ...['--tenants', join(dir, 'tenants.yaml'), '--max-message-bytes', String(MAX_MESSAGE)],
    ]);
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(dir, { recursive: true, force: true });
  });

  it('a known tenant\'s stream is read: a message over the limit fails as too large (the baseline)', async () => {
    const end = await stream(KEYS.user, [huge()]);
    expect(end.status).toBe('RESOURCE_EXHAUSTED');
    expect(end.details).toMatch(/larger than max/i);
  });

  it('without a key or with an unknown one: UNAUTHENTICATED before the first message is read', async () => {
    const none = await stream(undefined, [huge()]);
    expect([none.status, none.details, none.answers]).toEqual(['UNAUTHENTICATED', "no API key: send the header 'authorization: Bearer KEY'", []]);
    const unknown = await stream('not-a-key', [huge()]);
    expect([unknown.status, unknown.details]).toEqual(['UNAUTHENTICATED', 'unknown API key']);
  });

  it('a tenant over its request quota: RESOURCE_EXHAUSTED with the retry hint in the trailers, before the message is read', async () => {
    const first = await stream(KEYS.slow, [small()]);
    expect([first.status, first.answers]).toEqual(['OK', ['']]); // its burst of 1
    const end = await stream(KEYS.slow, [huge()]);
    expect(end.status).toBe('RESOURCE_EXHAUSTED');
    expect(end.details).not.toMatch(/larger than max/i);
    expect(end.details).toMatch(/slow/);
    expect(end.answers).toEqual([]);
    expect(Number(end.trailers['grpc-retry-pushback-ms'])).toBeGreaterThan(0);
    expect(Number(end.trailers['retry-after'])).toBeGreaterThan(0);
  });

  it('a stream that opens is admitted per message: each answered, in order of completion', async () => {
    const end = await stream(KEYS.user, [small(), small(), small()]);
    expect([end.status, end.answers]).toEqual(['OK', ['', '', '']]);
  });
});
