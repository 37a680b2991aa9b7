import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { input } from '../../client/typed-tensors.js';
import { uniformFloat32 } from '../../models/build/seeded-random.js';
import { buildModels } from '../../models/build/test-models.js';
import { type ModelInferRequest, type ModelInferResponse } from '../../proto/gen/inference.js';
import { type RawOrtLevel, rawOrtBaseline, referenceOutputs } from '../baselines/raw-ort.js';
import { type ChildServer, type CpuShare, DISTURBED_CORES, disturbedNote, removeAtExit, startGateway } from '../load/child-server.js';
import { type LevelResult, runLevel } from '../load/level.js';
import { type ServerStatsDelta, readModelStats } from '../load/server-stats.js';
import { errorText, mdTable, ms, num, percent, ratio } from '../report/format.js';

// Issue #3's benchmark in one run: batch-1 requests from 1, 8 and 64
// concurrent clients to the real gateway, with dynamic batching on and off,
// beside in-process ONNX Runtime at batch 1, 8 and 64. Every answer is
// checked against ORT run on that request alone.

const ROW = 784;
const OUTPUTS = 10;
const MAX_BATCH = 64;
// Distinct inputs cycled by request number: neighbours in a batch always
// differ (64 < 256), so a mixed-up or misaligned slice shows as a mismatch.
const INPUT_POOL = 256;
const TOLERANCE = 1e-4;

export const BATCHING_MODELS = { mlp_large: '784→2048×4→10', mlp: '784→1024×3→10' } as const;
export type BatchingModel = keyof typeof BATCHING_MODELS;

export interface BatchingOptions {
  readonly models: readonly BatchingModel[];
  readonly concurrencies: readonly number[];
  readonly rawBatchSizes: readonly number[];
  /** One batching-on configuration per value (several to tune max_queue_delay). */
  readonly queueDelaysUs: readonly number[];
  /** instance_group count (KIND_CPU), the same with batching on and off. */
  readonly instances: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly rawDurationMs: number;
  readonly log: (line: string) => void;
}

/** Batching off, or on with this max_queue_delay. */
type Config = { readonly kind: 'off' } | { readonly kind: 'on'; readonly queueDelayUs: number };

const configName = (c: Config): string => (c.kind === 'off' ? 'off' : `on (${c.queueDelayUs} µs)`);

function configText(model: string, c: Config, instances: number): string {
  const lines = [`name: "${model}"`, `max_batch_size: ${MAX_BATCH}`, `instance_group [ { count: ${instances}, kind: KIND_CPU } ]`];
  if (c.kind === 'on') lines.push(`dynamic_batching { max_queue_delay_microseconds: ${c.queueDelayUs} }`);
  return lines.join('\n') + '\n';
}

interface OutputCheck {
  checked: number;
  mismatches: number;
  maxAbsError: number;
  firstMismatch?: string;
}

export interface ServerLevel {
  readonly model: BatchingModel;
  readonly config: string;
  readonly concurrency: number;
  readonly load: LevelResult;
  readonly server: ServerStatsDelta | undefined;
  readonly check: OutputCheck;
  readonly cpu: CpuShare | undefined;
}

interface ModelFixture {
  readonly name: BatchingModel;
  readonly requests: readonly ModelInferRequest[];
  readonly expected: readonly Float32Array[];
}

/** One batch-1 request of an MLP's `input` row (784 FP32 values), raw. */
export function mlpRowRequest(model: string, row: Float32Array): ModelInferRequest {
  return {
    modelName: model,
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [{ name: 'input', datatype: 'FP32', shape: [1n, BigInt(ROW)], parameters: {} }],
    outputs: [],
    rawInputContents: [Buffer.from(row.buffer, row.byteOffset, row.byteLength)],
  };
}

/** Compares one answer with ORT's for that input alone; cheap enough to run on every answer. */
function checkAnswer(check: OutputCheck, seq: number, response: ModelInferResponse, expected: Float32Array): void {
  check.checked++;
  const raw = response.rawOutputContents[0];
  let worst = raw && raw.length === expected.length * 4 ? 0 : Number.POSITIVE_INFINITY;
  for (let k = 0; k < expected.length && Number.isFinite(worst); k++) {
    const got = raw?.readFloatLE(k * 4) ?? NaN;
    const err = Math.abs(got - (expected[k] ?? NaN));
    worst = Number.isNaN(err) ? Number.POSITIVE_INFINITY : Math.max(worst, err);
  }
  if (worst > TOLERANCE) {
    check.mismatches++;
    check.firstMismatch ??= `request ${seq}: ${raw?.length ?? 0} output bytes, max abs error ${worst}`;
  }
  if (Number.isFinite(worst)) check.maxAbsError = Math.max(check.maxAbsError, worst);
}

async function measureGateway(repo: string, config: Config, fixtures: readonly ModelFixture[], o: BatchingOptions): Promise<{ levels: ServerLevel[]; stderr: string }> {
  for (const f of fixtures) await writeFile(join(repo, f.name, 'config.pbtxt'), configText(f.name, config, o.instances));
  const gateway: ChildServer = await startGateway(repo);
  const client = new InferenceGrpcClient(gateway.address);
  const levels: ServerLevel[] = [];
  try {
    for (const f of fixtures) {
      if (!(await client.modelReady(f.name, '', { timeoutMs: 5_000 }))) throw new Error(`${f.name} is not ready: ${gateway.readyLine}`);
      for (const concurrency of o.concurrencies) {
        const check: OutputCheck = { checked: 0, mismatches: 0, maxAbsError: 0 };
        const result = await runLevel(
          { mode: 'concurrency', value: concurrency },
          {
            series: `batching ${configName(config)}`,
            model: f.name,
            protocol: 'grpc',
            batchSize: 1,
            send: async (seq, signal) => {
              const response = await client.modelInfer(f.requests[seq % INPUT_POOL] as ModelInferRequest, { signal, timeoutMs: 30_000 });
              checkAnswer(check, seq, response, f.expected[seq % INPUT_POOL] as Float32Array);
            },
            warmupMs: o.warmupMs,
            // One fixed window per level (no stabilisation): the issue #3 figures as they were measured.
            windows: { intervalMs: o.durationMs, maxTrials: 1 },
            stats: () => readModelStats(client, f.name),
            serverPid: gateway.pid,
          },
        );
        const load = result;
        const server = result.server;
        const cpu = result.cpu;
        levels.push({ model: f.name, config: configName(config), concurrency, load, server, check, cpu });
        o.log(
          `  ${f.name} batching ${configName(config)} c=${concurrency}: ${num(load.requestsPerSecond)} req/s, ` +
            `p50 ${ms(load.latency.p50Us)} ms, p99 ${ms(load.latency.p99Us)} ms, avg batch ${num(server?.avgBatchSize ?? NaN, 1)}, ` +
            `errors ${errorText(load.errors)}, ${check.checked} answers checked, ${check.mismatches} wrong${disturbedNote(cpu)}`,
        );
      }
    }
  } finally {
    client.close();
    const how = await gateway.stop();
    if (how !== '0') o.log(`  gateway exited with ${how}`);
  }
  return { levels, stderr: gateway.stderrTail() };
}

export interface BatchingReport {
  readonly json: unknown;
  readonly markdown: string;
  /** False when an answer was wrong or a request failed. */
  readonly ok: boolean;
}

export async function runBatching(o: BatchingOptions): Promise<BatchingReport> {
  const repo = await mkdtemp(join(tmpdir(), 'fabriek-bench-batching-'));
  const forget = removeAtExit(repo);
  try {
    const paths = await buildModels(repo, o.models);
    const fixtures: ModelFixture[] = [];
    const raw = new Map<BatchingModel, RawOrtLevel[]>();
    for (const [i, name] of o.models.entries()) {
      const path = paths[i] as string;
      const rows = Array.from({ length: INPUT_POOL }, (_, k) => uniformFloat32(`bench/${name}/input/${k}`, ROW, 1));
      const expected = await referenceOutputs(path, 'input', rows);
      if (expected[0]?.length !== OUTPUTS) throw new Error(`${name}: reference gives ${expected[0]?.length} outputs, expected ${OUTPUTS}`);
      fixtures.push({ name, requests: rows.map((r) => mlpRowRequest(name, r)), expected });
      o.log(`raw ONNX Runtime, ${name}, batch ${o.rawBatchSizes.join('/')}…`);
      const sine = (b: number): Float32Array => Float32Array.from({ length: b * ROW }, (_, k) => Math.sin(k * 0.37));
      const rawLevels = await rawOrtBaseline({ modelPath: path, inputs: (b) => [input('input', 'FP32', [b, ROW], sine(b))], batchSizes: o.rawBatchSizes, durationMs: o.rawDurationMs });
      for (const r of rawLevels) o.log(`  batch ${r.batchSize}: ${num(r.rowsPerSecond)} rows/s, p50 ${ms(r.latency.p50Us)} ms${disturbedNote(r.cpu)}`);
      raw.set(name, rawLevels);
    }
    const configs: Config[] = [{ kind: 'off' }, ...o.queueDelaysUs.map((queueDelayUs): Config => ({ kind: 'on', queueDelayUs }))];
    const levels: ServerLevel[] = [];
    const stderr: Record<string, string> = {};
    for (const config of configs) {
      o.log(`gateway, batching ${configName(config)}…`);
      const run = await measureGateway(repo, config, fixtures, o);
      levels.push(...run.levels);
      if (run.stderr.trim()) stderr[configName(config)] = run.stderr;
    }
    const ok = levels.every((l) => l.check.mismatches === 0 && l.check.checked > 0 && Object.keys(l.load.errors).length === 0);
    const json = { scenario: 'batching', options: { ...o, log: undefined }, raw: Object.fromEntries(raw), levels, gatewayStderr: stderr, ok };
    return { json, markdown: markdown(o, raw, levels, stderr), ok };
  } finally {
    await rm(repo, { recursive: true, force: true });
    forget();
  }
}

function markdown(o: BatchingOptions, raw: ReadonlyMap<BatchingModel, RawOrtLevel[]>, levels: readonly ServerLevel[], stderr: Readonly<Record<string, string>>): string {
  const out: string[] = [
    `Batch-1 requests from c concurrent clients (closed loop, ${o.warmupMs / 1000} s warm-up, ${o.durationMs / 1000} s window per level), ` +
      `max_batch_size ${MAX_BATCH}, ${o.instances} CPU instance(s), the same gateway build with and without \`dynamic_batching\`. ` +
      `Raw ONNX Runtime: one in-process session (intra-op threads = cores, no spinning), sequential runs for ${o.rawDurationMs / 1000} s per batch size. ` +
      `Every answer is compared with ORT on that request alone (tolerance ${TOLERANCE}).`,
    '',
  ];
  for (const model of o.models) {
    const rawLevels = raw.get(model) ?? [];
    const rawAt = (b: number): number => rawLevels.find((r) => r.batchSize === b)?.rowsPerSecond ?? NaN;
    const rawBest = Math.max(...rawLevels.map((r) => r.rowsPerSecond));
    out.push(`## ${model} (${BATCHING_MODELS[model]}, FP32)`, '', '### Raw ONNX Runtime, in-process', '');
    out.push(
      mdTable(
        ['batch', 'runs/s', 'rows/s', 'p50 ms', 'p99 ms', '× batch 1', 'CPU cores ORT + other'],
        rawLevels.map((r) => [
          String(r.batchSize),
          num(r.runsPerSecond),
          num(r.rowsPerSecond),
          ms(r.latency.p50Us),
          ms(r.latency.p99Us),
          ratio(r.rowsPerSecond, rawAt(1)),
          `${num(r.cpu.client, 2)} + ${num(r.cpu.other, 2)}`,
        ]),
      ),
      '### Gateway',
      '',
    );
    const mine = levels.filter((l) => l.model === model);
    const offAt = (c: number): number => mine.find((l) => l.config === 'off' && l.concurrency === c)?.load.requestsPerSecond ?? NaN;
    out.push(
      mdTable(
        ['c', 'batching', 'req/s', 'avg ms', 'p50 ms', 'p90 ms', 'p95 ms', 'p99 ms', 'avg batch', 'queue ms', 'infer ms', 'errors', 'answers checked / wrong', 'CPU cores client + server + other', 'on / off', 'vs raw ORT batch c', 'vs raw ORT best'],
        mine.map((l) => [
          String(l.concurrency),
          l.config,
          num(l.load.requestsPerSecond),
          ms(l.load.latency.avgUs),
          ms(l.load.latency.p50Us),
          ms(l.load.latency.p90Us),
          ms(l.load.latency.p95Us),
          ms(l.load.latency.p99Us),
          num(l.server?.avgBatchSize ?? NaN, 1),
          ms(l.server?.queueUs ?? NaN),
          ms(l.server?.computeInferUs ?? NaN),
          errorText(l.load.errors),
          `${l.check.checked} / ${l.check.mismatches}`,
          `${num(l.cpu?.client ?? NaN, 2)} + ${num(l.cpu?.server ?? NaN, 2)} + ${num(l.cpu?.other ?? NaN, 2)}`,
          l.config === 'off' ? '' : ratio(l.load.requestsPerSecond, offAt(l.concurrency)),
          percent(l.load.requestsPerSecond, rawAt(l.concurrency)),
          percent(l.load.requestsPerSecond, rawBest),
        ]),
        2,
      ),
    );
    const top = Math.max(...o.concurrencies);
    for (const on of mine.filter((l) => l.config !== 'off' && l.concurrency === top)) {
      const gain = on.load.requestsPerSecond / offAt(top);
      const batch = on.server?.avgBatchSize ?? NaN;
      const met = gain >= 5 && batch >= 8 && on.check.mismatches === 0;
      out.push(`Issue #3 target at c=${top}, batching ${on.config}: ${num(gain, 2)}× batching off (≥ 5×), average batch ${num(batch, 1)} (≥ 8): **${met ? 'met' : 'not met'}**.`, '');
    }
  }
  const disturbed = [
    ...o.models.flatMap((m) => (raw.get(m) ?? []).filter((r) => r.cpu.other > DISTURBED_CORES).map((r) => `raw ${m} batch ${r.batchSize} (${num(r.cpu.other, 2)})`)),
    ...levels.filter((l) => (l.cpu?.other ?? 0) > DISTURBED_CORES).map((l) => `${l.model} ${l.config} c=${l.concurrency} (${num(l.cpu?.other ?? NaN, 2)})`),
  ];
  if (disturbed.length > 0) out.push(`**Disturbed:** other processes kept cores busy during ${disturbed.join(', ')}; those figures understate this machine. Rerun when it is idle.`, '');
  out.push(
    '"avg batch", "queue ms" and "infer ms" come from ModelStatistics deltas over the window (per request; "–" when the server has no statistics). ' +
      '"CPU cores" is CPU time over the window divided by its length: the load generator (this process) and the gateway with its workers, which share the same cores.',
    '',
  );
  for (const [config, text] of Object.entries(stderr)) out.push(`Gateway stderr (batching ${config}):`, '', '```', text.trim().slice(-4000), '```', '');
  return out.join('\n');
}
