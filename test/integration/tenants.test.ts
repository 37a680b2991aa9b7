import { Metadata, type ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { connect } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';
import { failure, outcomeOf } from '../helpers/call-outcome.js';
import { type GatewayProcess, runCli, startGateway } from '../helpers/gateway-process.js';
import { waitFor } from '../helpers/processes.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';
import { sampleValue } from '../helpers/metrics-text.js';

// `fabriek serve --tenants` as a real process, over gRPC and HTTP: who may
// call, which models each tenant sees, quotas with Retry-After, the audit
// log and the per-tenant metrics.

const KEYS = { reader: 'reader-key-0123456789', limited: 'limited-key-0123456789', admin: 'admin-key-0123456789' } as const;
const SLOW = 0.001; // one token per 1000 s: no token comes back during the test

const tenantsYaml = [
  'tenants:',
  '  reader:',
  `    keys: [ "${hashKey(KEYS.reader)}" ]`,
  '    models: [ "identity_fp32", "add_*" ]',
  '  limited:',
  `    keys: [ "${hashKey(KEYS.limited)}" ]`,
  '    models: [ "*" ]',
  `    quotas: { requests_per_second: ${SLOW}, request_burst: 2 }`,
  '  admin:',
  `    keys: [ "${hashKey(KEYS.admin)}" ]`,
  '    models: [ "*" ]',
  '    admin: true',
].join('\n');

function identityRequest(model = 'identity_fp32'): ModelInferRequest {
  const x = Float32Array.from({ length: 16 }, (_, i) => i);
  return {
    modelName: model,
    modelVersion: '',
    id: 'req-1',
    parameters: {},
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1n, 16n], parameters: {}, contents: undefined }],
    outputs: [],
    rawInputContents: [Buffer.from(x.buffer)],
  };
}

const JSON_INFER = JSON.stringify({ inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: Array.from({ length: 16 }, (_, i) => i) }] });

describe('fabriek serve --tenants', () => {
  let dir: string;
  let gw: GatewayProcess;
  let http: string;
  let metricsUrl: string;
  let auditFile: string;
  const as = (tenant: keyof typeof KEYS) => ({ metadata: { authorization: `Bearer ${KEYS[tenant]}` } });
  const bearer = (tenant: keyof typeof KEYS) => ({ authorization: `Bearer ${KEYS[tenant]}` });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fabriek-tenants-it-'));
    const file = join(dir, 'tenants.yaml');
    auditFile = join(dir, 'audit', 'requests.log');
    await writeFile(file, tenantsYaml);
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--workers', '1', '--log-level', 'warn', '--tenants', file, '--audit-log', auditFile]);
    http = `http://127.0.0.1:${/HTTP on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}`;
    metricsUrl = `http://127.0.0.1:${/metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}/metrics`;
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(dir, { recursive: true, force: true });
  });

  it('says at start that keys are required', () => {
    expect(gw.readyLine).toMatch(/; 3 tenants, API keys required$/);
  });

  it('gRPC: UNAUTHENTICATED without a known key; health and server metadata stay open', async () => {
    expect(await outcomeOf(gw.client.modelInfer(identityRequest()))).toBe('UNAUTHENTICATED');
    expect(await outcomeOf(gw.client.repositoryIndex())).toBe('UNAUTHENTICATED');
    expect(await outcomeOf(gw.client.modelMetadata('identity_fp32'))).toBe('UNAUTHENTICATED');
    const unknown = await failure(gw.client.modelInfer(identityRequest(), { metadata: { authorization: 'Bearer nope' } }));
    expect(unknown.code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect(unknown.details).toBe('unknown API key');
    expect(await gw.client.serverLive()).toBe(true);
    expect(await gw.client.serverReady()).toBe(true);
    expect((await gw.client.serverMetadata()).name).toBe('fabriek');
  });

  it('gRPC: a tenant sees and uses only its models; others are PERMISSION_DENIED', async () => {
    const index = await gw.client.repositoryIndex(false, as('reader'));
    expect(index.models.map((m) => m.name).sort()).toEqual(['add_sub', 'identity_fp32']);
    expect((await gw.client.repositoryIndex(false, as('admin'))).models.length).toBeGreaterThan(10);
    expect((await gw.client.modelMetadata('identity_fp32', '', as('reader'))).name).toBe('identity_fp32');
    const denied = await failure(gw.client.modelMetadata('mlp', '', as('reader')));
    expect(denied.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(denied.details).toBe("tenant 'reader' may not use model 'mlp'");
    expect(await outcomeOf(gw.client.modelInfer(identityRequest('identity_fp64'), as('reader')))).toBe('PERMISSION_DENIED');
    expect(await outcomeOf(gw.client.modelConfig('mlp', '', as('reader')))).toBe('PERMISSION_DENIED');
    expect(await outcomeOf(gw.client.modelReady('mlp', '', as('reader')))).toBe('PERMISSION_DENIED');
    // A name that is not even in the repository: the same answer, so names cannot be probed.
    expect(await outcomeOf(gw.client.modelMetadata('no_such_model', '', as('reader')))).toBe('PERMISSION_DENIED');
    const stats = await gw.client.modelStatistics('', '', as('reader'));
    expect(stats.modelStats.map((s) => s.name).sort()).toEqual(['add_sub', 'identity_fp32']);
    const response = await gw.client.modelInfer(identityRequest(), as('reader'));
    expect(response.rawOutputContents[0]).toEqual(identityRequest().rawInputContents[0]);
    expect(await outcomeOf(unload(gw, 'mlp', KEYS.reader))).toBe('PERMISSION_DENIED');
  });

  it('gRPC: over quota is RESOURCE_EXHAUSTED with retry-after metadata', async () => {
    await gw.client.modelInfer(identityRequest(), as('limited'));
    await gw.client.modelInfer(identityRequest(), as('limited'));
    const over = await failure(gw.client.modelInfer(identityRequest(), as('limited')));
    expect(over.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(over.details).toMatch(/^tenant 'limited' is over its quota of 0\.001 requests\/s; retry after \d+ ms$/);
    // The client reads the server's grpc-retry-pushback-ms / retry-after trailers.
    expect(over.retryAfterMs).toBeGreaterThan(900_000);
  });

  it('HTTP: 401 with WWW-Authenticate, 403 for other models, filtered index, 429 with Retry-After; health open', async () => {
    const noKey = await fetch(`${http}/v2/models/identity_fp32/infer`, { method: 'POST', body: JSON_INFER });
    expect(noKey.status).toBe(401);
    expect(noKey.headers.get('www-authenticate')).toBe('Bearer');
    expect(((await noKey.json()) as { error: string }).error).toMatch(/no API key/);
    expect((await fetch(`${http}/v2/models/mlp`, { headers: bearer('reader') })).status).toBe(403);
    expect((await fetch(`${http}/v2/models/identity_fp32`, { headers: bearer('reader') })).status).toBe(200);
    const index = (await (await fetch(`${http}/v2/repository/index`, { method: 'POST', headers: bearer('reader') })).json()) as { name: string }[];
    expect(index.map((m) => m.name).sort()).toEqual(['add_sub', 'identity_fp32']);
    const ok = await fetch(`${http}/v2/models/identity_fp32/infer`, { method: 'POST', body: JSON_INFER, headers: bearer('reader') });
    expect(ok.status).toBe(200);
    const over = await fetch(`${http}/v2/models/identity_fp32/infer`, { method: 'POST', body: JSON_INFER, headers: bearer('limited') });
    expect(over.status).toBe(429);
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(900);
    expect((await fetch(`${http}/v2/repository/models/mlp/unload`, { method: 'POST', headers: bearer('reader') })).status).toBe(403);
    expect((await fetch(`${http}/v2/health/ready`)).status).toBe(200);
    expect((await fetch(`${http}/v2`)).status).toBe(200);
  });

  it('gRPC streams: each request is admitted as the stream\'s tenant; a stream without a key is refused when it opens', async () => {
    const answers = async (metadata: Metadata, n: number): Promise<string[]> => {
      const call = gw.client.raw.modelStreamInfer(metadata);
      const out: string[] = [];
      const done = new Promise<void>((resolve) => {
        call.on('data', (r: { errorMessage: string }) => out.push(r.errorMessage === '' ? 'OK' : r.errorMessage));
        call.on('end', () => resolve());
        call.on('error', (e: ServiceError) => {
          out.push(`${GrpcStatus[e.code]}: ${e.details}`);
          resolve();
        });
      });
      for (let i = 0; i < n; i++) call.write(identityRequest());
      call.end();
      await done;
      return out;
    };
    expect(await answers(new Metadata(), 1)).toEqual(["UNAUTHENTICATED: no API key: send the header 'authorization: Bearer KEY'"]);
    const reader = new Metadata();
    reader.set('authorization', `Bearer ${KEYS.reader}`);
    expect(await answers(reader, 2)).toEqual(['OK', 'OK']);
  });

  it('HTTP: a refused request with a large body is answered without reading it, and the connection closed', async () => {
    // A raw socket rather than fetch: the server answers and closes while the body is still
    // being sent, and HTTP clients report the failed write instead of the answer.
    const url = new URL(http);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(url.port), url.hostname, () => {
        socket.write(`POST /v2/models/identity_fp32/infer HTTP/1.1\r\nhost: ${url.host}\r\ncontent-length: ${4 << 20}\r\n\r\n`);
        socket.write(Buffer.alloc(64 << 10, 0x20));
      });
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EPIPE' && error.code !== 'ECONNRESET') reject(error);
      });
      socket.on('close', () => resolve(text));
    });
    const status = Number(/^HTTP\/1\.1 (\d+)/.exec(answer)?.[1]);
    const connection = /\r\nconnection: ([^\r]+)/i.exec(answer)?.[1];
    expect(status).toBe(401);
    expect(connection).toBe('close');
  });

  it('writes one audit line per request: who, what, status, bytes, latency; never tensor data', async () => {
    let lines: Record<string, unknown>[] = [];
    await waitFor(
      async () => {
        lines = (await readFile(auditFile, 'utf8').catch(() => ''))
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        return lines.some((l) => l.protocol === 'http' && l.status === 'RESOURCE_EXHAUSTED');
      },
      10_000,
      'the audit lines of the HTTP requests',
    );
    const fields = ['time', 'tenant', 'protocol', 'op', 'model', 'version', 'status', 'bytes_in', 'bytes_out', 'items', 'compute_ms', 'queue_ms', 'ms'];
    for (const l of lines) {
      expect(Object.keys(l).filter((k) => k !== 'id')).toEqual(fields);
      expect(JSON.stringify(l)).not.toMatch(/"data"|_contents|"inputs"|"outputs"/);
    }
    const grpcInfer = lines.find((l) => l.protocol === 'grpc' && l.op === 'infer' && l.tenant === 'reader' && l.status === 'OK');
    expect(grpcInfer).toMatchObject({ model: 'identity_fp32', version: '1', bytes_in: 64, bytes_out: 64, items: 1, id: 'req-1' });
    expect(grpcInfer?.compute_ms).toBeGreaterThan(0);
    expect(grpcInfer?.queue_ms).toBeGreaterThanOrEqual(0);
    expect(lines.find((l) => l.status === 'UNAUTHENTICATED' && l.protocol === 'http')).toMatchObject({ tenant: null, op: 'infer', model: 'identity_fp32' });
    // gRPC inference calls without a key are refused from their metadata, before the message (and its model name) is read.
    expect(lines.find((l) => l.status === 'UNAUTHENTICATED' && l.protocol === 'grpc' && l.op === 'infer')).toMatchObject({ tenant: null, model: '' });
    expect(lines.filter((l) => l.tenant === 'limited' && l.status === 'RESOURCE_EXHAUSTED')).toHaveLength(2);
    expect(lines.find((l) => l.op === 'index' && l.tenant === 'reader')).toMatchObject({ status: 'OK', model: '' });
  });

  it('counts requests, items and compute share per tenant in /metrics', async () => {
    const text = await (await fetch(metricsUrl)).text();
    expect(sampleValue(text, 'fabriek_tenant_requests_total{tenant="reader",model="identity_fp32",status="OK"}')).toBeGreaterThanOrEqual(3);
    // Over HTTP the model is in the path; over gRPC the refusal comes before the message is read.
    expect(sampleValue(text, 'fabriek_tenant_requests_total{tenant="limited",model="identity_fp32",status="RESOURCE_EXHAUSTED"}')).toBe(1);
    expect(sampleValue(text, 'fabriek_tenant_requests_total{tenant="limited",model="",status="RESOURCE_EXHAUSTED"}')).toBe(1);
    expect(sampleValue(text, 'fabriek_tenant_requests_total{tenant="",model="identity_fp32",status="UNAUTHENTICATED"}')).toBeGreaterThanOrEqual(1);
    expect(sampleValue(text, 'fabriek_tenant_requests_total{tenant="",model="",status="UNAUTHENTICATED"}')).toBeGreaterThanOrEqual(2);
    // Names a client made up never become label values.
    expect(sampleValue(text, 'fabriek_tenant_requests_total{tenant="reader",model="",status="PERMISSION_DENIED"}')).toBeGreaterThanOrEqual(1);
    expect(text).not.toMatch(/no_such_model/);
    expect(sampleValue(text, 'fabriek_tenant_batch_items_total{tenant="limited",model="identity_fp32"}')).toBe(2);
    expect(sampleValue(text, 'fabriek_tenant_compute_seconds_total{tenant="reader",model="identity_fp32"}')).toBeGreaterThan(0);
    expect(sampleValue(text, 'fabriek_tenant_quota_refusals_total{tenant="limited",limit="requests"}')).toBe(2);
    expect(sampleValue(text, 'fabriek_quota_store{store="local"}')).toBe(1);
    // Triton's metrics keep Triton's labels.
    expect(text).toMatch(/^nv_inference_request_success\{model="identity_fp32",version="1"\} \d+$/m);
  });
});

/** RepositoryModelUnload as a tenant (the test client has no method for it). */
function unload(gw: GatewayProcess, model: string, key: string): Promise<unknown> {
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${key}`);
  return new Promise((resolve, reject) => {
    gw.client.raw.repositoryModelUnload({ repositoryName: '', modelName: model, parameters: {} }, metadata, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

describe('fabriek serve --tenants with a bad file', () => {
  it('exits 1 naming the file and the field, before starting anything', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fabriek-tenants-bad-'));
    try {
      const file = join(dir, 'tenants.yaml');
      await writeFile(file, 'tenants:\n  a:\n    keys: [ "plain-secret" ]\n    models: [ "*" ]\n');
      const run = await runCli(['serve', '--model-repository', TEST_REPOSITORY, '--tenants', file]);
      expect(run.code).toBe(1);
      expect(run.stderr).toBe(`fabriek: ${file}: tenants.a.keys[0]: expected "sha256:" and 64 lowercase hex digits\n`);
      const check = await runCli(['tenants', 'check', file]);
      expect(check.code).toBe(1);
      const hashed = await runCli(['tenants', 'hash-key', 'plain-secret']);
      expect(hashed.stdout).toBe(`${hashKey('plain-secret')}\n`);
      await writeFile(file, `tenants:\n  a:\n    keys: [ "${hashKey('k')}" ]\n    models: [ "*" ]\n`);
      const audit = await runCli(['serve', '--model-repository', TEST_REPOSITORY, '--tenants', file, '--audit-log', '/etc/hostname/x/audit.log']);
      expect(audit.code).toBe(1);
      expect(audit.stderr).toMatch(/^fabriek: cannot open the audit log '\/etc\/hostname\/x\/audit\.log': ENOTDIR/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
