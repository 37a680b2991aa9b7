import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as hdr from 'hdr-histogram-js';
import { type ServiceError } from '@grpc/grpc-js';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { uniformFloat32 } from '../../models/build/seeded-random.js';
import { buildModels } from '../../models/build/test-models.js';
import { type ModelInferRequest, type ModelInferResponse } from '../../proto/gen/inference.js';
import { type ChildServer, cpuMeter, inflightWaitArgs, removeAtExit, startGateway } from '../load/child-server.js';
import { mdTable, ms, num } from '../report/format.js';
import { Flood } from './fairness.js';
import { codeName, isServiceError, openLoop } from './fairness-load.js';

// Issue #15's noisy neighbour, in one run: tenant B sends 10
// ResNet-18-shaped images a second (Poisson, each with its own gRPC
// deadline, --b-deadline-ms) to a batching model, alone and while tenant A,
// with the same weight and no quota, keeps 200 requests outstanding (its own
// process). B's p99 with A against B's p99 alone is the figure (a failed B
// request counts as slower than any answer); A must still be served. Each
// batching mode is its own model in one gateway (the same weights):
// Triton-style fixed batching (max_queue_delay 0, full batches of 16) and
// the SLO-aware mode, whose batches stop at the size that pays and which
// sheds what cannot meet the SLO. Windows alternate alone / with A,
// in rounds, so drift on the machine falls on both.

/** The models B and A send to: issue #15's ResNet-18 (compute-bound: ~90 images/s on 2 cores, 16 rows ~170 ms), or the 1/16-compute one the tests use (its flood is bound by the gateway's transport of 602 KB requests, not by batches). */
export const NOISY_NEIGHBOUR_MODELS = ['resnet18', 'resnet_small'] as const;
export type NoisyNeighbourModel = (typeof NOISY_NEIGHBOUR_MODELS)[number];
const MAX_BATCH = 16;
const IMAGE = 3 * 224 * 224;
const B_RATE = 10;
const A_OUTSTANDING = 200;
const SETTLE_MS = 2_000;
const KEYS = { a: 'noisy-neighbour-tenant-a-key', b: 'noisy-neighbour-tenant-b-key' } as const;
/** B's p99 with A may be at most this many times its p99 alone (issue #15). */
const P99_RATIO = 2;

export interface NoisyNeighbourOptions {
  readonly model: NoisyNeighbourModel;
  readonly durationMs: number;
  readonly rounds: number;
  /** batching_slo_ms of the SLO-mode model. */
  readonly sloMs: number;
  /** B's own gRPC deadline. */
  readonly bDeadlineMs: number;
  /** The gateway's --max-inflight-wait-ms (0: off, the default). */
  readonly maxInflightWaitMs: number;
  /** More `fabriek serve` flags (after -- on the command line). */
  readonly serveFlags?: readonly string[];
  readonly log: (line: string) => void;
}

interface Mode {
  readonly name: string;
  readonly model: string;
  readonly config: string;
}

const modes = (sloMs: number): Mode[] => [
  { name: 'fixed (max_queue_delay 0)', model: 'resnet_fixed', config: 'dynamic_batching { }' },
  { name: `SLO ${sloMs} ms`, model: 'resnet_slo', config: `dynamic_batching { }\nparameters { key: "batching_slo_ms" value { string_value: "${sloMs}" } }` },
];

/** A B request that failed (shed, deadline exceeded) is recorded as this slow: slower than any answer, so it counts in the p99. */
const MISS_US = 100_000_000;

/** A latency for the report: ms, or 'missed' where the percentile fell on failed requests. */
const lat = (us: number): string => (us >= MISS_US ? 'missed' : ms(us));

const histogram = (): hdr.Histogram => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });

/** One seeded 3×224×224 FP32 image for `model` (the ResNet models' input), as a protocol message. */
export function resnetImage(model: string, seed: number): ModelInferRequest {
  const pixels = uniformFloat32(`bench/noisy-neighbour/${seed}`, IMAGE, 1);
  return {
    modelName: model,
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [{ name: 'image', datatype: 'FP32', shape: [1n, 3n, 224n, 224n], parameters: {} }],
    outputs: [],
    rawInputContents: [Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength)],
  };
}

interface BWindow {
  readonly latency: hdr.Histogram;
  ok: number;
  seconds: number;
  errors: Record<string, number>;
  /** Summed latency of B's answered requests, as its client saw them (µs). */
  okMicros: number;
  /** B's answered requests as the gateway counted them, their summed time in it and in the model's queue (s). */
  served: number;
  serverSeconds: number;
  queueSeconds: number;
}

interface ModeResult {
  readonly mode: Mode;
  readonly alone: BWindow;
  readonly withA: BWindow;
  /** A's answers per second by status, over the windows with A. */
  readonly a: Record<string, number>;
  aSeconds: number;
  /** Cores used by everything but B's client, the gateway and A (disturbance), worst window. */
  other: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * From /metrics: rows and executions of `model` so far, its full batch in SLO
 * mode, and tenant B's answered requests with their summed time in the
 * gateway (arrival to answer): what of B's latency the server itself spent.
 */
async function gatewayCounts(
  url: string,
  model: string,
): Promise<{ rows: number; executions: number; fullRows: number | undefined; bServed: number; bSeconds: number; bQueueSeconds: number }> {
  const text = await (await fetch(url)).text();
  const value = (prefix: string): number | undefined => {
    const line = text.split('\n').find((l) => l.startsWith(prefix));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
  };
  const ofModel = (name: string): string => `${name}{model="${model}",version="1"}`;
  return {
    rows: value(ofModel('nv_inference_count')) ?? 0,
    executions: value(ofModel('nv_inference_exec_count')) ?? 0,
    fullRows: value(ofModel('fabriek_batch_full_rows')),
    bServed: value('fabriek_tenant_request_duration_seconds_count{tenant="b"}') ?? 0,
    bSeconds: value('fabriek_tenant_request_duration_seconds_sum{tenant="b"}') ?? 0,
    bQueueSeconds: value(`fabriek_tenant_queue_seconds_total{tenant="b",model="${model}"}`) ?? 0,
  };
}

export interface NoisyNeighbourReport {
  readonly json: unknown;
  readonly markdown: string;
  readonly ok: boolean;
}

export async function runNoisyNeighbour(o: NoisyNeighbourOptions): Promise<NoisyNeighbourReport> {
  const dir = await mkdtemp(join(tmpdir(), 'fabriek-bench-noisy-'));
  const forget = removeAtExit(dir);
  const repo = join(dir, 'models');
  const all = modes(o.sloMs);
  let gateway: ChildServer | undefined;
  const floods: Flood[] = [];
  try {
    const [built] = await buildModels(join(dir, 'built'), [o.model]);
    if (built === undefined) throw new Error(`${o.model} was not built`);
    for (const m of all) {
      await mkdir(join(repo, m.model, '1'), { recursive: true });
      await copyFile(built, join(repo, m.model, '1', 'model.onnx'));
      await writeFile(join(repo, m.model, 'config.pbtxt'), `name: "${m.model}"\nmax_batch_size: ${MAX_BATCH}\ninstance_group [ { count: 1, kind: KIND_CPU } ]\n${m.config}\n`);
    }
    const tenants = ['tenants:', ...(['a', 'b'] as const).flatMap((t) => [`  ${t}:`, `    keys: [ "${hashKey(KEYS[t])}" ]`, '    models: [ "*" ]']), ''].join('\n');
    await writeFile(join(dir, 'tenants.yaml'), tenants);
    gateway = await startGateway(repo, ['--tenants', join(dir, 'tenants.yaml'), ...inflightWaitArgs(o.maxInflightWaitMs), ...(o.serveFlags ?? [])]);
    const metricsUrl = `http://127.0.0.1:${/metrics on [^ ;]+:(\d+)/.exec(gateway.readyLine)?.[1]}/metrics`;
    const client = new InferenceGrpcClient(gateway.address);
    const results: ModeResult[] = [];
    for (const mode of all) {
      const flood = new Flood();
      floods.push(flood);
      await flood.start(gateway.address, KEYS.a, resnetImage(mode.model, 1_000));
      const bRequests = Array.from({ length: 8 }, (_, k) => resnetImage(mode.model, k));
      const runB = async (w: BWindow, durationMs: number): Promise<void> => {
        const b = openLoop<ModelInferResponse | ServiceError>({
          ratePerSecond: B_RATE,
          seed: 3,
          send: (seq) =>
            client
              .modelInfer(bRequests[seq % bRequests.length] as ModelInferRequest, { timeoutMs: o.bDeadlineMs, metadata: { authorization: `Bearer ${KEYS.b}` } })
              .catch((error: unknown) => error as ServiceError),
          onSettled: (_seq, _at, latencyUs, outcome) => {
            if (isServiceError(outcome)) {
              const name = codeName(outcome);
              w.errors[name] = (w.errors[name] ?? 0) + 1;
              w.latency.recordValue(MISS_US);
              return;
            }
            w.ok++;
            w.okMicros += latencyUs;
            w.latency.recordValue(Math.max(1, Math.round(latencyUs)));
          },
        });
        const started = performance.now();
        await sleep(durationMs);
        await b.stop();
        w.seconds += (performance.now() - started) / 1000;
      };
      const scratch = (): BWindow => ({ latency: histogram(), ok: 0, seconds: 0, errors: {}, okMicros: 0, served: 0, serverSeconds: 0, queueSeconds: 0 });
      const result: ModeResult = { mode, alone: scratch(), withA: scratch(), a: {}, aSeconds: 0, other: 0 };
      // Warm-up: the cost model and ONNX Runtime's allocator.
      await runB(scratch(), 3_000);
      for (let round = 1; round <= o.rounds; round++) {
        for (const withA of round % 2 === 1 ? [false, true] : [true, false]) {
          if (withA) {
            flood.keep(A_OUTSTANDING);
            await sleep(SETTLE_MS);
          }
          const counts0 = await gatewayCounts(metricsUrl, mode.model);
          const meter = cpuMeter(gateway.pid);
          meter.start();
          const w = withA ? result.withA : result.alone;
          const one = scratch();
          await runB(one, o.durationMs);
          w.latency.add(one.latency);
          w.ok += one.ok;
          w.okMicros += one.okMicros;
          w.seconds += one.seconds;
          for (const [k, v] of Object.entries(one.errors)) w.errors[k] = (w.errors[k] ?? 0) + v;
          const cpu = meter.stop();
          const counts1 = await gatewayCounts(metricsUrl, mode.model);
          w.served += counts1.bServed - counts0.bServed;
          w.serverSeconds += counts1.bSeconds - counts0.bSeconds;
          w.queueSeconds += counts1.bQueueSeconds - counts0.bQueueSeconds;
          const avgBatch = (counts1.rows - counts0.rows) / Math.max(1, counts1.executions - counts0.executions);
          if (withA) {
            const report = await flood.off();
            for (const [k, v] of Object.entries(report.outcomes)) result.a[k] = (result.a[k] ?? 0) + v;
            result.aSeconds += report.seconds;
            await sleep(SETTLE_MS);
          }
          result.other = Math.max(result.other, cpu.other);
          o.log(
            `  ${mode.name}, round ${round}, B ${withA ? 'with A' : 'alone '}: ${num(one.ok / one.seconds, 1)}/s, ` +
              `p50 ${lat(one.latency.getValueAtPercentile(50))} ms, p99 ${lat(one.latency.getValueAtPercentile(99))} ms, errors ${JSON.stringify(one.errors)}, ` +
              `avg batch ${num(avgBatch, 1)}${counts1.fullRows === undefined ? '' : `, full batch ${counts1.fullRows} rows`}`,
          );
          one.latency.destroy();
        }
      }
      await flood.exit();
      results.push(result);
    }
    client.close();
    return report(results, o);
  } finally {
    for (const f of floods) await f.exit();
    await gateway?.stop();
    await rm(dir, { recursive: true, force: true });
    forget();
  }
}

function report(results: readonly ModeResult[], o: NoisyNeighbourOptions): NoisyNeighbourReport {
  const p = (w: BWindow, q: number): number => w.latency.getValueAtPercentile(q);
  /** B's mean latency as its client saw it, the part spent in the gateway and of that in the queue (answered requests). */
  const meanMs = (w: BWindow): string =>
    w.ok === 0 || w.served === 0 ? '–' : `${ms(w.okMicros / w.ok)} (${ms((w.serverSeconds / w.served) * 1e6)}; ${ms((w.queueSeconds / w.served) * 1e6)})`;
  const rows = results.map((r) => {
    const aOk = (r.a.OK ?? 0) / Math.max(1e-9, r.aSeconds);
    const aOther = Object.entries(r.a).filter(([k]) => k !== 'OK');
    return [
      r.mode.name,
      `${lat(p(r.alone, 50))} / ${lat(p(r.alone, 99))}`,
      `${lat(p(r.withA, 50))} / ${lat(p(r.withA, 99))}`,
      p(r.withA, 99) >= MISS_US ? 'missed' : `${num(p(r.withA, 99) / p(r.alone, 99), 2)}×`,
      `${meanMs(r.alone)} / ${meanMs(r.withA)}`,
      JSON.stringify({ ...r.alone.errors, ...Object.fromEntries(Object.entries(r.withA.errors).map(([k, v]) => [`${k} (with A)`, v])) }),
      num(aOk, 1),
      aOther.map(([k, v]) => `${k} ${num(v / Math.max(1e-9, r.aSeconds), 1)}/s`).join(', ') || '–',
      num(r.other, 2),
    ];
  });
  const verdicts = results.map((r) => {
    const ratio = p(r.withA, 99) / p(r.alone, 99);
    const served = (r.a.OK ?? 0) > 0;
    const ok = ratio <= P99_RATIO && served && p(r.withA, 99) < MISS_US;
    return { mode: r.mode.name, ratio, aServed: served, ok };
  });
  const markdown = [
    `${o.model} (602 KB images), max_batch_size ${MAX_BATCH}, 1 CPU instance; tenants A and B of equal weight, no quotas. ` +
      `B: ${B_RATE} images/s (Poisson), each with a gRPC deadline of ${o.bDeadlineMs} ms (a failed request counts as slower than any answer); ` +
      `A: ${A_OUTSTANDING} requests kept outstanding (own process, niced). ` +
      `${o.rounds} rounds of a ${o.durationMs / 1000} s window alone and one with A, per mode, pooled.` +
      (o.maxInflightWaitMs > 0 ? ` Gateway with --max-inflight-wait-ms ${o.maxInflightWaitMs}.` : ''),
    '',
    mdTable(['mode', 'B alone p50 / p99 ms', 'B with A p50 / p99 ms', 'p99 with A ÷ alone', 'B mean ms alone / with A (in the gateway; queued)', 'B errors', 'A served/s', 'A refused', 'other cores (worst)'], rows),
    '',
    "B's mean is over its answered requests; the part in the gateway (from the request's arrival there to its answer) is what the server itself spent: the rest is the request's and the answer's way over the connection, and B's client. Queued: of that, the wait in the model's queue until its batch was cut (fabriek_tenant_queue_seconds_total); the rest of the gateway's part is the batch's way to the worker, its wait there behind the batch running, the run, and the answer.",
    '',
    ...verdicts.map(
      (v) => `- ${v.mode}: B's p99 with A is ${num(v.ratio, 2)}× its p99 alone (bar ≤ ${P99_RATIO}×), A ${v.aServed ? 'served' : 'NOT served'}: **${v.ok ? 'met' : 'not met'}**`,
    ),
    '',
  ].join('\n');
  return { json: { results: results.map((r) => ({ mode: r.mode.name, a: r.a, aSeconds: r.aSeconds, other: r.other })), verdicts }, markdown, ok: verdicts.some((v) => v.ok) };
}
