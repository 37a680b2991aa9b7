import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { InferenceGrpcClient } from '../client/grpc-client.js';
import { buildModels } from '../models/build/test-models.js';
import { type ModelInferRequest, type ModelStatistics } from '../proto/gen/inference.js';
import { closedLoop, type ClosedLoopResult } from './lib/closed-loop.js';
import { startBenchGateway } from './lib/gateway-process.js';
import { rawOrt, referenceSession, type RawOrtResult } from './lib/raw-ort.js';
import { fmt, ms, runInfo, saveResults } from './lib/report.js';

// Issue #3's benchmark, in one run: a memory-bound MLP (784→2048×4→10,
// float32) served with dynamic batching and without, at 1, 8 and 64
// concurrent clients sending batch-1 requests, beside in-process ONNX
// Runtime at batch 1, 8 and 64. Every measured level checks a sample of
// answers against ONNX Runtime on that request alone.

const MODEL = 'mlp_large';
const ROW = 784;
const LEVELS = [1, 8, 64];
const CHECKS_PER_LEVEL = 32;

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    'queue-delay-us': { type: 'string', default: '2000' },
  },
});
const durationMs = Number(values.duration) * 1000;
const warmupMs = Number(values.warmup) * 1000;
const queueDelayUs = Number(values['queue-delay-us']);

function input(i: number): Float32Array {
  const a = new Float32Array(ROW);
  for (let k = 0; k < ROW; k++) a[k] = Math.sin(i * 0.37 + k * 0.011);
  return a;
}

const request = (i: number): ModelInferRequest => ({
  modelName: MODEL,
  modelVersion: '',
  id: String(i),
  parameters: {},
  inputs: [{ name: 'input', datatype: 'FP32', shape: [1n, BigInt(ROW)], parameters: {} }],
  outputs: [],
  rawInputContents: [Buffer.from(input(i).buffer)],
});

interface Level extends ClosedLoopResult {
  readonly avgBatch: number;
  readonly queueUs: number;
  readonly inferUs: number;
  readonly checked: number;
  readonly maxAbsError: number;
}

async function stats(client: InferenceGrpcClient): Promise<ModelStatistics> {
  const s = (await client.modelStatistics(MODEL, '1')).modelStats[0];
  if (!s) throw new Error('no statistics');
  return s;
}

async function serve(repo: string, config: string): Promise<Level[]> {
  await writeFile(join(repo, MODEL, 'config.pbtxt'), config);
  const gateway = await startBenchGateway(repo);
  const client = new InferenceGrpcClient(gateway.address);
  const reference = await referenceSession(join(repo, MODEL, '1', 'model.onnx'));
  const levels: Level[] = [];
  try {
    for (const concurrency of LEVELS) {
      const before = await stats(client);
      const samples = new Map<number, Float32Array>();
      const result = await closedLoop(client, {
        concurrency,
        warmupMs,
        durationMs,
        request,
        onAnswer: (i, r) => {
          if (samples.size < CHECKS_PER_LEVEL && i % 7 === 0) samples.set(i, new Float32Array(Uint8Array.from(r.rawOutputContents[0] ?? []).buffer));
        },
      });
      const after = await stats(client);
      let maxAbsError = 0;
      for (const [i, got] of samples) {
        const want = await reference(input(i), [1, ROW], 'input');
        if (got.length !== want.length) throw new Error(`request ${i}: ${got.length} logits, expected ${want.length}`);
        for (let k = 0; k < want.length; k++) maxAbsError = Math.max(maxAbsError, Math.abs((got[k] ?? NaN) - (want[k] ?? NaN)));
      }
      if (!(maxAbsError < 1e-4)) throw new Error(`answers differ from ONNX Runtime by ${maxAbsError}`);
      const d = (f: (m: ModelStatistics) => bigint | undefined): number => Number((f(after) ?? 0n) - (f(before) ?? 0n));
      const executions = d((m) => m.executionCount);
      const successes = d((m) => m.inferenceStats?.success?.count);
      levels.push({
        ...result,
        avgBatch: executions > 0 ? d((m) => m.inferenceCount) / executions : NaN,
        queueUs: successes > 0 ? d((m) => m.inferenceStats?.queue?.ns) / successes / 1000 : NaN,
        inferUs: executions > 0 ? d((m) => m.inferenceStats?.computeInfer?.ns) / successes / 1000 : NaN,
        checked: samples.size,
        maxAbsError,
      });
      process.stderr.write(`  c=${concurrency}: ${fmt(result.requestsPerSecond)} req/s, p50 ${ms(result.latency.p50Us)} ms\n`);
    }
  } finally {
    client.close();
    await gateway.stop();
  }
  return levels;
}

async function main(): Promise<void> {
  const info = runInfo();
  const repo = await mkdtemp(join(tmpdir(), 'fabriek-bench-'));
  try {
    await mkdir(join(repo, MODEL), { recursive: true });
    const [modelPath] = await buildModels(repo, [MODEL]);
    process.stderr.write('raw ONNX Runtime…\n');
    const raw = await rawOrt(modelPath as string, 'input', [ROW], LEVELS, durationMs / 2);
    const instance = 'instance_group [ { count: 1, kind: KIND_CPU } ]\n';
    process.stderr.write('server, batching off…\n');
    const off = await serve(repo, `max_batch_size: 64\n${instance}`);
    process.stderr.write('server, dynamic batching on…\n');
    const on = await serve(repo, `max_batch_size: 64\ndynamic_batching { max_queue_delay_microseconds: ${queueDelayUs} }\n${instance}`);
    const md = report(info, raw, off, on);
    process.stdout.write(md);
    process.stderr.write(`saved ${saveResults('batching', { info, model: MODEL, queueDelayUs, durationMs, raw, off, on }, md)}\n`);
  } finally {
    await rm(repo, { recursive: true, force: true });
  }
}

function report(info: ReturnType<typeof runInfo>, raw: RawOrtResult[], off: Level[], on: Level[]): string {
  const rawAt = (b: number): RawOrtResult | undefined => raw.find((r) => r.batchSize === b);
  const lines = [
    `# Dynamic batching: ${MODEL} (784→2048×4→10, FP32)`,
    '',
    `${info.date} · commit ${info.commit} · ${info.cpu} × ${info.cores} · Node ${info.node} · ${durationMs / 1000} s per level after ${warmupMs / 1000} s warm-up · max_queue_delay ${queueDelayUs} µs · 1 instance`,
    '',
    '## Raw ONNX Runtime in-process (baseline)',
    '',
    '| batch | runs/s | rows/s | p50 ms | × batch 1 |',
    '|---:|---:|---:|---:|---:|',
    ...raw.map((r) => `| ${r.batchSize} | ${fmt(r.runsPerSecond)} | ${fmt(r.rowsPerSecond)} | ${ms(r.latency.p50Us)} | ${fmt(r.rowsPerSecond / (rawAt(1)?.rowsPerSecond ?? NaN), 2)} |`),
    '',
    '## Server, batch-1 requests from c concurrent clients',
    '',
    '| c | batching | req/s | p50 ms | p99 ms | avg batch | queue ms | infer ms | errors | on/off | vs raw ORT at batch c | answers checked (max abs err) |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const [k, c] of LEVELS.entries()) {
    for (const [name, l] of [['off', off[k]], ['on', on[k]]] as const) {
      if (!l) continue;
      const ratio = name === 'on' && off[k] ? fmt(l.requestsPerSecond / off[k].requestsPerSecond, 2) + '×' : '';
      const errors = Object.entries(l.errors).map(([code, n]) => `${code} ${n}`).join(', ') || '0';
      lines.push(
        `| ${c} | ${name} | ${fmt(l.requestsPerSecond)} | ${ms(l.latency.p50Us)} | ${ms(l.latency.p99Us)} | ${fmt(l.avgBatch, 1)} | ${ms(l.queueUs)} | ${ms(l.inferUs)} | ${errors} | ${ratio} | ${fmt((100 * l.requestsPerSecond) / (rawAt(c)?.rowsPerSecond ?? NaN))} % | ${l.checked} (${l.maxAbsError.toExponential(1)}) |`,
      );
    }
  }
  lines.push('');
  return lines.join('\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
