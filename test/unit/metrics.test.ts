import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  cancelled,
  deadlineExceeded,
  internal,
  invalidArgument,
  resourceExhausted,
  unavailable,
} from '../../core/errors.js';
import { failureReason } from '../../gateway/metrics/failure-reason.js';
import { nvidiaSmiReader, parseNvidiaSmi } from '../../gateway/metrics/gpu.js';
import { MetricsRegistry, oncePerScrape } from '../../gateway/metrics/registry.js';
import { createMetricsServer } from '../../gateway/metrics/server.js';
import { type ExecutionResult, type JobResult } from '../../gateway/scheduling/execution.js';
import { ModelVersionStatistics } from '../../gateway/stats/model-statistics.js';

const execution = (inputNs: number, inferNs: number, outputNs: number): ExecutionResult => ({
  outputs: [],
  computeInputNs: inputNs,
  computeInferNs: inferNs,
  computeOutputNs: outputNs,
  workerId: 'w0',
});
const job = (queueNs: number, e: ExecutionResult): JobResult => ({ outputs: [], queueNs, execution: e });

/** The value of one sample line, e.g. `nv_inference_count{model="a",version="1"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const bare = (): MetricsRegistry => new MetricsRegistry({ defaultMetrics: false, gpu: false });

describe('MetricsRegistry', () => {
  it('reads the workers\' shares once per scrape for the five metrics that show them', async () => {
    const metrics = bare();
    let reads = 0;
    metrics.setWorkerShareProvider(function* () {
      reads++;
      yield { model: 'm', version: '1', worker: 'w0', sent: 7, out: 1, executionSeconds: 0.002, othersWaitSeconds: 0.01, computeRatio: 1.5 };
      yield { model: 'm', version: '1', worker: 'w1', sent: 3, out: 0, executionSeconds: undefined, othersWaitSeconds: undefined, computeRatio: undefined };
    });
    const text = await metrics.metrics();
    expect(reads).toBe(1);
    // Each metric got the whole reading, though the provider is a generator that can be walked once.
    expect(sample(text, 'fabriek_worker_executions_total{model="m",version="1",worker="w0"}')).toBe(7);
    expect(sample(text, 'fabriek_worker_executions_total{model="m",version="1",worker="w1"}')).toBe(3);
    expect(sample(text, 'fabriek_worker_executions_out{model="m",version="1",worker="w0"}')).toBe(1);
    expect(sample(text, 'fabriek_worker_execution_seconds{model="m",version="1",worker="w0"}')).toBe(0.002);
    expect(sample(text, 'fabriek_worker_compute_ratio{model="m",version="1",worker="w0"}')).toBe(1.5);
    expect(sample(text, 'fabriek_worker_others_wait_seconds{model="m",version="1",worker="w0"}')).toBe(0.01);
    expect(sample(text, 'fabriek_worker_compute_ratio{model="m",version="1",worker="w1"}')).toBeUndefined();
    // The next scrape reads afresh.
    await new Promise((r) => setImmediate(r));
    await metrics.metrics();
    expect(reads).toBe(2);
  });

  it('oncePerScrape keeps a reading until the loop turns', async () => {
    let n = 0;
    const read = oncePerScrape(() => [++n]);
    expect([read(), read()]).toEqual([[1], [1]]);
    await new Promise((r) => setImmediate(r));
    expect(read()).toEqual([2]);
  });

  it('counts known events exactly, through ModelVersionStatistics', async () => {
    const metrics = bare();
    const stats = new ModelVersionStatistics(metrics.forVersion('simple', '1'));
    const e = execution(2_000, 30_000, 4_000);
    stats.executed(3, e); // one batch of three rows: requests of 1 and 2 rows
    stats.succeeded(1, 100_000, job(10_000, e));
    stats.succeeded(2, 200_000, job(20_000, e));
    stats.executed(1, execution(1_000, 5_000, 1_000));
    stats.failed(50_000, invalidArgument('bad shape'));
    stats.failed(60_000, unavailable('Exceeds maximum queue size: simple'));
    stats.failed(70_000, cancelled('gone'));
    stats.failed(80_000); // callers that give no error still count, as OTHER

    const text = await metrics.metrics();
    const l = 'model="simple",version="1"';
    expect(sample(text, `nv_inference_request_success{${l}}`)).toBe(2);
    expect(sample(text, `nv_inference_count{${l}}`)).toBe(3);
    expect(sample(text, `nv_inference_exec_count{${l}}`)).toBe(2);
    expect(sample(text, `nv_inference_request_failure{${l},reason="OTHER"}`)).toBe(2);
    expect(sample(text, `nv_inference_request_failure{${l},reason="REJECTED"}`)).toBe(1);
    expect(sample(text, `nv_inference_request_failure{${l},reason="CANCELED"}`)).toBe(1);
    expect(sample(text, `nv_inference_request_failure{${l},reason="BACKEND"}`)).toBe(0);
    expect(sample(text, `nv_inference_request_duration_us{${l}}`)).toBe(300);
    expect(sample(text, `nv_inference_queue_duration_us{${l}}`)).toBe(30);
    expect(sample(text, `nv_inference_compute_input_duration_us{${l}}`)).toBe(4);
    expect(sample(text, `nv_inference_compute_infer_duration_us{${l}}`)).toBe(60);
    expect(sample(text, `nv_inference_compute_output_duration_us{${l}}`)).toBe(8);
    expect(sample(text, `fabriek_batch_size_count{${l}}`)).toBe(2);
    expect(sample(text, `fabriek_batch_size_sum{${l}}`)).toBe(4);
    expect(sample(text, `fabriek_batch_size_bucket{le="2",${l}}`)).toBe(1);
    expect(sample(text, `fabriek_batch_size_bucket{le="4",${l}}`)).toBe(2);
    expect(sample(text, `fabriek_queue_duration_seconds_count{${l}}`)).toBe(2);
    expect(sample(text, `fabriek_queue_duration_seconds_sum{${l}}`)).toBeCloseTo(30e-6, 12);
    expect(sample(text, `fabriek_compute_infer_duration_seconds_count{${l}}`)).toBe(2);
    expect(sample(text, `fabriek_compute_infer_duration_seconds_sum{${l}}`)).toBeCloseTo(35e-6, 12);

    // The statistics endpoint sees the same events.
    const snap = stats.snapshot('simple', '1');
    expect(snap.inferenceStats?.success?.count).toBe(2n);
    expect(snap.inferenceStats?.fail?.count).toBe(4n);
    expect(snap.inferenceCount).toBe(3n);
    expect(snap.executionCount).toBe(2n);
  });

  it('shows a loaded version at zero, keeps versions apart, and drops removed ones', async () => {
    const metrics = bare();
    const v1 = metrics.forVersion('m', '1');
    const v2 = metrics.forVersion('m', '2');
    v2.failed(1, internal('ort failed'));
    let text = await metrics.metrics();
    expect(sample(text, 'nv_inference_request_success{model="m",version="1"}')).toBe(0);
    expect(sample(text, 'nv_inference_request_failure{model="m",version="1",reason="BACKEND"}')).toBe(0);
    expect(sample(text, 'nv_inference_request_failure{model="m",version="2",reason="BACKEND"}')).toBe(1);
    expect(metrics.forVersion('m', '1')).toBe(v1);
    metrics.removeVersion('m', '1');
    text = await metrics.metrics();
    expect(text).not.toContain('version="1"');
    expect(text).toContain('version="2"');
  });

  it('adds the counters summed between scrapes at each scrape, whichever way it reads them, and loses none', async () => {
    const metrics = bare();
    const v = metrics.forVersion('m', '1');
    const e = execution(1_000, 2_000, 3_000);
    const series = (name: string): string => `${name}{model="m",version="1"}`;
    v.executed(1, e);
    v.succeeded(1, 10_000, job(4_000, e));
    let text = await metrics.metrics();
    expect(sample(text, series('nv_inference_request_success'))).toBe(1);
    expect(sample(text, series('nv_inference_compute_infer_duration_us'))).toBe(2);
    // Scraped again with nothing new: the sums were taken once.
    text = await metrics.metrics();
    expect(sample(text, series('nv_inference_request_success'))).toBe(1);
    v.executed(2, e);
    v.succeeded(2, 20_000, job(6_000, e));
    // The JSON form (what --gateway-processes aggregates) collects the same way.
    const json = await metrics.registry.getMetricsAsJSON();
    const value = (name: string): number | undefined => json.find((m) => m.name === name)?.values.find((x) => x.labels.version === '1')?.value;
    expect(value('nv_inference_request_success')).toBe(2);
    expect(value('nv_inference_count')).toBe(3);
    expect(value('nv_inference_exec_count')).toBe(2);
    expect(value('nv_inference_queue_duration_us')).toBe(10);
    expect(value('nv_inference_request_duration_us')).toBe(30);
    // What a removed version summed goes with it, and a version loaded again starts at 0.
    v.succeeded(1, 10_000, job(4_000, e));
    metrics.removeVersion('m', '1');
    metrics.forVersion('m', '1');
    text = await metrics.metrics();
    expect(sample(text, series('nv_inference_request_success'))).toBe(0);
  });

  it('reads pending counts and worker counts at scrape time', async () => {
    const metrics = bare();
    let pending = 4;
    metrics.setPendingProvider(() => [{ model: 'm', version: '1', pending }]);
    metrics.setWorkers({ up: 2, down: 1 });
    let text = await metrics.metrics();
    expect(sample(text, 'nv_inference_pending_request_count{model="m",version="1"}')).toBe(4);
    expect(sample(text, 'fabriek_workers{state="up"}')).toBe(2);
    expect(sample(text, 'fabriek_workers{state="down"}')).toBe(1);
    pending = 0;
    metrics.setWorkers({ up: 3, down: 0 });
    text = await metrics.metrics();
    expect(sample(text, 'nv_inference_pending_request_count{model="m",version="1"}')).toBe(0);
    expect(sample(text, 'fabriek_workers{state="up"}')).toBe(3);
  });

  it('exposes default process metrics with the fabriek_ prefix', async () => {
    const text = await new MetricsRegistry({ gpu: false }).metrics();
    expect(text).toMatch(/^fabriek_process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^fabriek_nodejs_heap_size_used_bytes \d/m);
  });
});

describe('failure reasons', () => {
  it('maps serving errors to Triton reasons', () => {
    expect(failureReason(unavailable('Exceeds maximum queue size: m'))).toBe('REJECTED');
    expect(failureReason(unavailable("Request timeout expired: model 'm', after 5 µs in the queue"))).toBe('REJECTED');
    expect(failureReason(resourceExhausted('queue is full'))).toBe('REJECTED');
    expect(failureReason(unavailable('server is shutting down'))).toBe('REJECTED');
    expect(failureReason(unavailable('worker w0 is unavailable: gone'))).toBe('BACKEND');
    expect(failureReason(internal('ort failed'))).toBe('BACKEND');
    expect(failureReason(cancelled('bye'))).toBe('CANCELED');
    expect(failureReason(deadlineExceeded('late'))).toBe('CANCELED');
    expect(failureReason(invalidArgument('bad'))).toBe('OTHER');
    expect(failureReason(new Error('bug'))).toBe('OTHER');
    expect(failureReason(undefined)).toBe('OTHER');
  });
});

describe('GPU gauges', () => {
  it('parses nvidia-smi CSV and skips unreadable rows', () => {
    expect(parseNvidiaSmi('0, 37, 1024, 81559\n1, [N/A], 1, 2\n\n')).toEqual([
      { index: '0', utilization: 0.37, memoryUsedBytes: 1024 * 1048576, memoryTotalBytes: 81559 * 1048576 },
    ]);
  });

  it('has no GPU series and no error when nvidia-smi is missing', async () => {
    const metrics = new MetricsRegistry({ defaultMetrics: false, gpu: nvidiaSmiReader('/nonexistent/nvidia-smi') });
    const text = await metrics.metrics();
    expect(text).not.toMatch(/^fabriek_gpu_\w+\{/m);
  });

  it('reads GPUs at scrape time with one nvidia-smi run per scrape', async () => {
    // A stand-in nvidia-smi that logs each run and prints one GPU.
    const dir = await mkdtemp(join(tmpdir(), 'fabriek-smi-'));
    const smi = join(dir, 'nvidia-smi');
    const runs = join(dir, 'runs');
    await writeFile(smi, `#!/bin/sh\necho run >> '${runs}'\necho '0, 50, 10, 100'\n`);
    await chmod(smi, 0o755);
    try {
      let t = 0;
      const metrics = new MetricsRegistry({ defaultMetrics: false, gpu: nvidiaSmiReader(smi, 1000, () => t) });
      const text = await metrics.metrics();
      expect(sample(text, 'fabriek_gpu_utilization_ratio{gpu="0"}')).toBe(0.5);
      expect(sample(text, 'fabriek_gpu_memory_used_bytes{gpu="0"}')).toBe(10 * 1048576);
      expect(sample(text, 'fabriek_gpu_memory_total_bytes{gpu="0"}')).toBe(100 * 1048576);
      expect((await readFile(runs, 'utf8')).split('\n').filter(Boolean)).toHaveLength(1);
      t = 1000;
      await metrics.metrics();
      expect((await readFile(runs, 'utf8')).split('\n').filter(Boolean)).toHaveLength(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('caches nvidia-smi for the ttl', async () => {
    let t = 0;
    const read = nvidiaSmiReader('/nonexistent/nvidia-smi', 1000, () => t);
    const a = read();
    expect(read()).toBe(a);
    t = 999;
    expect(read()).toBe(a);
    t = 1000;
    expect(read()).not.toBe(a);
  });
});

describe('createMetricsServer', () => {
  it('serves GET /metrics with the Prometheus content type and 404 otherwise', async () => {
    const metrics = bare();
    metrics.forVersion('m', '1').failed(1, invalidArgument('x'));
    const server = createMetricsServer(metrics);
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    try {
      const { port } = server.address() as AddressInfo;
      const ok = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(ok.status).toBe(200);
      expect(ok.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(sample(await ok.text(), 'nv_inference_request_failure{model="m",version="1",reason="OTHER"}')).toBe(1);
      expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${port}/metrics`, { method: 'POST' })).status).toBe(404);
    } finally {
      await new Promise((done) => server.close(done));
    }
  });
});
