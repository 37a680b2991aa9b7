import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { type InferResult, type PreparedInfer } from '../../client/inference-client.js';
import { input } from '../../client/typed-tensors.js';
import { readFloatInitializers } from '../../models/build/onnx-graph.js';
import { buildModel, EXAMPLE_CONFIGS } from '../../models/build/test-models.js';
import { mulberry32 } from '../../models/build/seeded-random.js';
import { DISTURBED_CORES, removeAtExit, startGateway } from '../load/child-server.js';
import { type LevelResult, runLevel } from '../load/level.js';
import { readModelStats } from '../load/server-stats.js';
import { mdTable, ms, num, ratio } from '../report/format.js';
import { median } from '../report/median.js';

// Ragged batching against what a client does without it, in one run on one
// gateway: requests of 1 to --max-length values each, whose per-item sums a
// model computes. `ragged`: a ragged model batches them as they are.
// `padded`: the client pads every request to --max-length for the row model,
// so all batch (and each carries and computes the padding). `as sent`: the
// row model gets them unpadded, and batches only requests of equal length.
// Two pairs of models: the plain sum (ragged_sum, row_sum), where compute is
// next to nothing and the figures are the transport's, and the sum of a small
// MLP of each value (ragged_mlp, row_mlp), whose compute grows with the values
// computed. Every answer is checked.

export const RAGGED_DEFAULTS = { concurrency: 32, maxLength: 256, rounds: 3, durationMs: 5_000, warmupMs: 1_500 } as const;

const MAX_BATCH = 64;
const QUEUE_DELAY_US = 1000;
const POOL = 128;

export interface RaggedOptions {
  readonly concurrency: number;
  readonly maxLength: number;
  readonly rounds: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly serveFlags: readonly string[];
  readonly log: (line: string) => void;
}

type Variant = 'ragged' | 'padded' | 'as sent';
const VARIANTS: readonly Variant[] = ['ragged', 'padded', 'as sent'];

interface Pair {
  readonly label: string;
  readonly ragged: 'ragged_sum' | 'ragged_mlp';
  readonly rows: 'row_sum' | 'row_mlp';
}
const PAIRS: readonly Pair[] = [
  { label: 'sum', ragged: 'ragged_sum', rows: 'row_sum' },
  { label: 'per-value MLP', ragged: 'ragged_mlp', rows: 'row_mlp' },
];
const modelOf = (pair: Pair, v: Variant): string => (v === 'ragged' ? pair.ragged : pair.rows);

interface Measured {
  readonly pair: string;
  readonly variant: Variant;
  readonly round: number;
  readonly load: LevelResult;
  readonly bytesPerRequest: number;
  readonly wrong: number;
}

async function putModel(repo: string, name: string, configText: string, model: Uint8Array): Promise<void> {
  await mkdir(join(repo, name, '1'), { recursive: true });
  await writeFile(join(repo, name, '1', 'model.onnx'), model);
  await writeFile(join(repo, name, 'config.pbtxt'), configText);
}

const config = (name: string): string =>
  `name: "${name}"\nmax_batch_size: ${MAX_BATCH}\ndynamic_batching { max_queue_delay_microseconds: ${QUEUE_DELAY_US} }\ninstance_group [ { count: 1, kind: KIND_CPU } ]\n`;

/** ragged_sum's example config with this bench's batch size and delay, under `name` (ragged_mlp has no DOUBLED to scatter). */
function raggedConfig(name: string): string {
  let text = (EXAMPLE_CONFIGS.ragged_sum as string).replace(/max_batch_size: \d+/, `max_batch_size: ${MAX_BATCH}`).replace(/max_queue_delay_microseconds: \d+/, `max_queue_delay_microseconds: ${QUEUE_DELAY_US}`);
  if (name !== 'ragged_sum') text = text.replace('name: "ragged_sum"', `name: "${name}"`).replace(/output \[[\s\S]*?\n\]\nbatch_output \[[\s\S]*?\n\]\n/, '');
  return `${text}instance_group [ { count: 1, kind: KIND_CPU } ]\n`;
}

/** The per-value function a pair's model sums, in double precision: the identity, or the MLP with the model's own weights. */
function valueFunction(model: Uint8Array): (x: number) => number {
  const weights = readFloatInitializers(model);
  const w1 = weights.get('w1')?.data;
  const w2 = weights.get('w2')?.data;
  if (!w1 || !w2) return (x) => x;
  return (x) => {
    let y = 0;
    for (let j = 0; j < w1.length; j++) y += (w2[j] as number) * Math.tanh((w1[j] as number) * x);
    return y;
  };
}

export async function runRagged(o: RaggedOptions): Promise<{ json: unknown; markdown: string; ok: boolean }> {
  const repo = await mkdtemp(join(tmpdir(), 'fabriek-bench-ragged-'));
  const forget = removeAtExit(repo);
  const random = mulberry32(7);
  const rows = Array.from({ length: POOL }, () => {
    const n = 1 + Math.floor(random() * o.maxLength);
    return Array.from({ length: n }, () => Math.round(random() * 20) - 10);
  });
  const measured: Measured[] = [];
  try {
    const expected = new Map<string, number[]>();
    for (const pair of PAIRS) {
      const model = buildModel(pair.ragged);
      await putModel(repo, pair.ragged, raggedConfig(pair.ragged), model);
      await putModel(repo, pair.rows, config(pair.rows), buildModel(pair.rows));
      const f = valueFunction(model);
      expected.set(pair.label, rows.map((values) => values.reduce((a, v) => a + f(v), 0)));
    }
    const gateway = await startGateway(repo, ['--log-level', 'warn', ...o.serveFlags]);
    const client = new InferenceGrpcClient(gateway.address);
    try {
      const prepared = (pair: Pair, variant: Variant): PreparedInfer[] =>
        rows.map((r) => {
          const values = variant === 'padded' ? [...r, ...new Array<number>(o.maxLength - r.length).fill(0)] : r;
          return client.prepareInfer(modelOf(pair, variant), [input('INPUT', 'FP32', [1, values.length], values)], { outputs: ['SUM'] });
        });
      for (let round = 1; round <= o.rounds; round++) {
       for (const pair of PAIRS) {
        const sums = expected.get(pair.label) as number[];
        for (const variant of VARIANTS) {
          const pool = prepared(pair, variant);
          let wrong = 0;
          // FP32 in the model against double here: a relative tolerance.
          const check = (seq: number, result: InferResult): void => {
            const want = sums[seq % POOL] as number;
            if (!(Math.abs((result.data('SUM', 'FP32')[0] as number) - want) <= 1e-3 * (1 + Math.abs(want)))) wrong++;
          };
          const load = await runLevel(
            { mode: 'concurrency', value: o.concurrency },
            {
              series: `${pair.label} ${variant}`,
              model: modelOf(pair, variant),
              protocol: 'grpc',
              batchSize: 1,
              send: async (seq, signal) => check(seq, await client.inferPrepared(pool[seq % POOL] as PreparedInfer, { signal, timeoutMs: 30_000 })),
              warmupMs: o.warmupMs,
              windows: { intervalMs: o.durationMs, maxTrials: 1 },
              stats: () => readModelStats(client, modelOf(pair, variant)),
              serverPid: gateway.pid,
            },
          );
          const bytesPerRequest = 4 * (variant === 'padded' ? o.maxLength : rows.reduce((a, r) => a + r.length, 0) / POOL);
          measured.push({ pair: pair.label, variant, round, load, bytesPerRequest, wrong });
          o.log(
            `  round ${round} ${pair.label} ${variant}: ${num(load.requestsPerSecond)} req/s, server CPU ${num(load.serverCpuUsPerRequest ?? NaN)} µs/req, ` +
              `avg batch ${num(load.server?.avgBatchSize ?? NaN, 1)}, p99 ${ms(load.latency.p99Us)} ms, ${wrong} wrong, errors ${load.errorCount}`,
          );
        }
       }
      }
    } finally {
      client.close();
      await gateway.stop();
    }
  } finally {
    await rm(repo, { recursive: true, force: true });
    forget();
  }
  const ok = measured.every((m) => m.wrong === 0 && m.load.errorCount === 0 && m.load.requests > 0);
  return { json: { scenario: 'ragged', options: { ...o, log: undefined }, measured }, markdown: markdown(o, measured), ok };
}

function markdown(o: RaggedOptions, measured: readonly Measured[]): string {
  const disturbed = measured.filter((m) => (m.load.cpu?.other ?? 0) > DISTURBED_CORES);
  const mean = measured.find((m) => m.variant === 'ragged')?.bytesPerRequest ?? NaN;
  const out = [
    `${o.concurrency} gRPC clients (closed loop), each request one item of 1 to ${o.maxLength} FP32 values (mean ${num(mean / 4)}), ` +
      `max_batch_size ${MAX_BATCH}, max_queue_delay ${QUEUE_DELAY_US} µs, one CPU instance; ${o.rounds} rounds, each model pair's three variants in turn; medians over the rounds. ` +
      'ragged: the ragged model (ragged batching). padded: the row model, each request padded to the longest. as sent: the row model, unpadded (only equal lengths batch). ' +
      'Every answer is checked against the sum computed here.',
    '',
  ];
  for (const pair of PAIRS) {
    const of = (v: Variant, f: (m: Measured) => number): number => median(measured.filter((m) => m.pair === pair.label && m.variant === v).map(f));
    const rps = (v: Variant): number => of(v, (m) => m.load.requestsPerSecond);
    const cpu = (v: Variant): number => of(v, (m) => m.load.serverCpuUsPerRequest ?? NaN);
    out.push(
      `### ${pair.label}: ${pair.ragged} against ${pair.rows}`,
      '',
      mdTable(
        ['variant', 'req/s', 'server CPU µs/req', 'avg batch', 'infer µs/req', 'p50 ms', 'p99 ms', 'request bytes', 'req/s vs padded', 'CPU vs padded'],
        VARIANTS.map((v) => [
          v,
          num(rps(v)),
          num(cpu(v)),
          num(of(v, (m) => m.load.server?.avgBatchSize ?? NaN), 1),
          num(of(v, (m) => m.load.server?.computeInferUs ?? NaN)),
          ms(of(v, (m) => m.load.latency.p50Us)),
          ms(of(v, (m) => m.load.latency.p99Us)),
          num(of(v, (m) => m.bytesPerRequest)),
          ratio(rps(v), rps('padded')),
          ratio(cpu(v), cpu('padded')),
        ]),
      ),
      '',
    );
  }
  out.push(
    '"infer µs/req" is ModelStatistics\' compute_infer per request (Triton counts a batch\'s run for each request in it).',
    disturbed.length > 0 ? `**Disturbed:** other processes kept cores busy in ${disturbed.length} of ${measured.length} windows; absolute req/s understate this machine.` : '',
    '',
  );
  return out.join('\n');
}
