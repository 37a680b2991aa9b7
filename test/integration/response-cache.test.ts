import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { type GatewayProcess, runCli, startGateway, TEST_GATEWAY_PROCESSES } from '../helpers/gateway-process.js';
import { sampleValue } from '../helpers/metrics-text.js';
import { cacheCounts, cacheRepository, MLP_ROW, mlpRequest, mlpRow } from '../helpers/cache-repository.js';

// `fabriek serve --cache-config local,size=1048576` on a Triton-layout
// repository whose model says response_cache { enable: true }: a repeated
// request gets the same bytes, counted as a cache hit, without a second
// execution; over gRPC (the client generated from grpc_service.proto) and
// HTTP (binary outputs), with Triton's statistics and metrics.

describe('fabriek serve --cache-config local', () => {
  let repo: string;
  let gw: GatewayProcess;
  let http: string;
  let metricsUrl: string;

  const stats = async (model: string) => cacheCounts((await gw.client.modelStatistics(model)).modelStats[0]);

  beforeAll(async () => {
    repo = await cacheRepository();
    gw = await startGateway(['--model-repository', repo, '--workers', '1', '--log-level', 'warn', '--cache-config', 'local,size=1048576']);
    http = `http://127.0.0.1:${/HTTP on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}`;
    metricsUrl = `http://127.0.0.1:${/metrics on [^ ;]+:(\d+)/.exec(gw.readyLine)?.[1]}/metrics`;
  });

  afterAll(async () => {
    expect(await gw?.stop()).toBe(0);
    await rm(repo, { recursive: true, force: true });
  });

  it('gRPC: a repeated request gets the same bytes from the cache, with no second execution', async () => {
    const first = await gw.client.modelInfer(mlpRequest('mlp_cached', 1));
    expect(await stats('mlp_cached')).toMatchObject({ success: 1, hits: 0, misses: 1, executions: 1, inferences: 1 });
    const again = await gw.client.modelInfer(mlpRequest('mlp_cached', 1));
    expect(again.rawOutputContents).toEqual(first.rawOutputContents);
    expect(again.outputs).toEqual(first.outputs);
    expect(again.modelName).toBe('mlp_cached');
    expect(again.modelVersion).toBe('1');
    expect(again.id).toBe('seed-1');
    const s = await stats('mlp_cached');
    // Triton: a hit is a success and a cache hit, not an inference nor an execution.
    expect(s).toMatchObject({ success: 2, hits: 1, misses: 1, executions: 1, inferences: 1 });
    expect(s.hitNs).toBeGreaterThan(0);
    expect(s.missNs).toBeGreaterThan(0);
  });

  it('gRPC: another input misses and runs; the model config says response_cache is on', async () => {
    const before = await stats('mlp_cached');
    const other = await gw.client.modelInfer(mlpRequest('mlp_cached', 2));
    const first = await gw.client.modelInfer(mlpRequest('mlp_cached', 1));
    expect(other.rawOutputContents[0]).not.toEqual(first.rawOutputContents[0]);
    const after = await stats('mlp_cached');
    expect(after.misses - before.misses).toBe(1);
    expect(after.hits - before.hits).toBe(1);
    expect(after.executions - before.executions).toBe(1);
    const config = await gw.client.modelConfig('mlp_cached');
    expect(config.config?.responseCache).toEqual({ enable: true });
  });

  it('identical requests that miss together: one computes, the others wait for its answer (cache hits, one execution)', async () => {
    const before = await stats('mlp_cached');
    const answers = await Promise.all(Array.from({ length: 16 }, () => gw.client.modelInfer(mlpRequest('mlp_cached', 42))));
    const after = await stats('mlp_cached');
    for (const a of answers) expect(a.rawOutputContents).toEqual(answers[0]?.rawOutputContents);
    expect(after.executions - before.executions).toBe(1);
    expect(after.misses - before.misses).toBe(1);
    expect(after.hits - before.hits).toBe(15);
    expect(after.success - before.success).toBe(16);
  });

  it('a model without response_cache is never cached', async () => {
    await gw.client.modelInfer(mlpRequest('mlp_plain', 1));
    await gw.client.modelInfer(mlpRequest('mlp_plain', 1));
    expect(await stats('mlp_plain')).toMatchObject({ success: 2, hits: 0, misses: 0, executions: 2, inferences: 2 });
  });

  it('HTTP: the same request (binary outputs) is a hit on the entry gRPC made, with the same bytes', async () => {
    const grpc = await gw.client.modelInfer(mlpRequest('mlp_cached', 3));
    // The local store is each gateway process's own (FABRIEK_TEST_GATEWAY_PROCESSES > 1): gRPC makes the
    // entry in every process (node:cluster hands new connections round), so HTTP hits whichever serves it.
    for (let i = 1; i < 2 * TEST_GATEWAY_PROCESSES; i++) {
      const other = new InferenceGrpcClient(gw.address, { channelOptions: { 'grpc.use_local_subchannel_pool': 1 } });
      try {
        expect((await other.modelInfer(mlpRequest('mlp_cached', 3))).rawOutputContents).toEqual(grpc.rawOutputContents);
      } finally {
        other.close();
      }
    }
    const before = await stats('mlp_cached');
    const body = JSON.stringify({
      parameters: { binary_data_output: true },
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, MLP_ROW], data: Array.from(mlpRow(3)) }],
    });
    // JSON numbers of float32 values parse back to the same float32 bits.
    const res = await fetch(`${http}/v2/models/mlp_cached/infer`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(200);
    const raw = Buffer.from(await res.arrayBuffer());
    const headerLength = Number(res.headers.get('inference-header-content-length'));
    expect(raw.subarray(headerLength)).toEqual(grpc.rawOutputContents[0]);
    const after = await stats('mlp_cached');
    expect(after.hits - before.hits).toBe(1);
    expect(after.executions).toBe(before.executions);
  });

  it("HTTP statistics and /metrics report Triton's cache fields and counters, matching", async () => {
    const res = await fetch(`${http}/v2/models/mlp_cached/stats`);
    const json = (await res.json()) as { model_stats: { inference_stats: { cache_hit: { count: number }; cache_miss: { count: number } } }[] };
    const s = await stats('mlp_cached');
    expect(json.model_stats[0]?.inference_stats.cache_hit.count).toBe(s.hits);
    expect(json.model_stats[0]?.inference_stats.cache_miss.count).toBe(s.misses);
    const text = await (await fetch(metricsUrl)).text();
    const labels = '{model="mlp_cached",version="1"}';
    expect(sampleValue(text, `nv_cache_num_hits_per_model${labels}`)).toBe(s.hits);
    expect(sampleValue(text, `nv_cache_num_misses_per_model${labels}`)).toBe(s.misses);
    expect(sampleValue(text, `nv_cache_hit_duration_per_model${labels}`)).toBeGreaterThan(0);
    expect(sampleValue(text, `nv_cache_miss_duration_per_model${labels}`)).toBeGreaterThan(0);
    expect(sampleValue(text, `nv_inference_exec_count${labels}`)).toBe(s.executions);
    expect(sampleValue(text, `nv_inference_request_success${labels}`)).toBe(s.success);
    expect(sampleValue(text, 'nv_cache_num_hits_per_model{model="mlp_plain",version="1"}')).toBe(0);
    expect(sampleValue(text, 'fabriek_response_cache_bytes')).toBeGreaterThan(3 * 4 * 10);
    expect(sampleValue(text, 'fabriek_response_cache_bytes')).toBeLessThanOrEqual(1048576);
  });

  it('a bad --cache-config exits 2 naming the flag and the value', async () => {
    const bad = await runCli(['serve', '--model-repository', repo, '--cache-config', 'local,size=lots']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--cache-config local,size: expected an integer from 1 to 1099511627776, got 'lots'");
    const unknown = await runCli(['serve', '--model-repository', repo, '--cache-config', 'memcached,host=h']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("got 'memcached,host=h'");
  });
});
