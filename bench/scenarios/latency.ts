import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { uniformFloat32 } from '../../models/build/seeded-random.js';
import { buildModels } from '../../models/build/test-models.js';
import { type ModelInferRequest, type ModelInferResponse } from '../../proto/gen/inference.js';
import { spawnEchoServer } from '../baselines/grpc-echo.js';
import { type ChildServer, type CpuShare, DISTURBED_CORES, cpuMeter, disturbedNote, removeAtExit, startGateway } from '../load/child-server.js';
import { type ClosedLoopResult, closedLoop } from '../load/closed-loop.js';
import { type ServerStatsDelta, readModelStats, statsDelta } from '../load/server-stats.js';
import { errorText, mdTable, num, percent } from '../load/report.js';

// Issue #2's figures: the per-request cost of the gateway on the smallest
// model (identity_fp32, FP32 [1,16]) against a bare grpc-js server that
// echoes the request — the ceiling for any Node gRPC server here.

const MODEL = 'identity_fp32';
const WIDTH = 16;
const INPUT_POOL = 256;

export interface LatencyOptions {
  readonly concurrencies: readonly number[];
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly log: (line: string) => void;
}

export interface LatencyLevel {
  readonly target: 'grpc-echo' | 'gateway';
  readonly concurrency: number;
  readonly load: ClosedLoopResult;
  readonly server: ServerStatsDelta | undefined;
  readonly checked: number;
  readonly wrong: number;
  readonly cpu: CpuShare | undefined;
}

const requests: readonly ModelInferRequest[] = Array.from({ length: INPUT_POOL }, (_, k) => {
  const row = uniformFloat32(`bench/${MODEL}/input/${k}`, WIDTH, 1);
  return {
    modelName: MODEL,
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1n, BigInt(WIDTH)], parameters: {} }],
    outputs: [],
    rawInputContents: [Buffer.from(row.buffer)],
  };
});

/** An identity model (and the echo) must give back exactly the bytes sent. */
const sameBytes = (seq: number, response: ModelInferResponse): boolean => {
  const sent = requests[seq % INPUT_POOL]?.rawInputContents[0];
  const got = response.rawOutputContents[0];
  return sent !== undefined && got !== undefined && got.equals(sent) && response.outputs[0]?.shape.join(',') === `1,${WIDTH}`;
};

async function measure(target: LatencyLevel['target'], server: ChildServer, o: LatencyOptions): Promise<LatencyLevel[]> {
  const client = new InferenceGrpcClient(server.address);
  const levels: LatencyLevel[] = [];
  try {
    for (const concurrency of o.concurrencies) {
      let checked = 0;
      let wrong = 0;
      let before: ReturnType<typeof readModelStats> | undefined;
      let after: ReturnType<typeof readModelStats> | undefined;
      const stats = target === 'gateway';
      let cpu: CpuShare | undefined;
      const meter = cpuMeter(server.pid);
      const load = await closedLoop(client, {
        concurrency,
        warmupMs: o.warmupMs,
        durationMs: o.durationMs,
        request: (seq) => requests[seq % INPUT_POOL] as ModelInferRequest,
        onResponse: (seq, response) => {
          checked++;
          if (!sameBytes(seq, response)) wrong++;
        },
        onWindowStart: () => {
          meter.start();
          before = stats ? readModelStats(client, MODEL) : undefined;
        },
        onWindowEnd: () => {
          cpu = meter.stop();
          after = stats ? readModelStats(client, MODEL) : undefined;
        },
      });
      levels.push({ target, concurrency, load, server: statsDelta(await before, await after), checked, wrong, cpu });
      o.log(
        `  ${target} c=${concurrency}: ${num(load.requestsPerSecond)} req/s, p50 ${num(load.latency.p50Us)} µs, ` +
          `p99 ${num(load.latency.p99Us)} µs, errors ${errorText(load.errors)}, ${checked} answers checked, ${wrong} wrong${disturbedNote(cpu)}`,
      );
    }
  } finally {
    client.close();
    const how = await server.stop();
    if (how !== '0') o.log(`  ${target} exited with ${how}`);
  }
  return levels;
}

export interface LatencyReport {
  readonly json: unknown;
  readonly markdown: string;
  readonly ok: boolean;
}

export async function runLatency(o: LatencyOptions): Promise<LatencyReport> {
  const repo = await mkdtemp(join(tmpdir(), 'fabriek-bench-latency-'));
  const forget = removeAtExit(repo);
  try {
    // No config.pbtxt: served as the example repository serves it (completed from the model).
    await buildModels(repo, [MODEL]);
    o.log('grpc-echo baseline…');
    const echo = await measure('grpc-echo', await spawnEchoServer(), o);
    o.log('gateway…');
    const gateway = await startGateway(repo);
    const served = await measure('gateway', gateway, o);
    const stderr = gateway.stderrTail();
    const levels = [...echo, ...served];
    const ok = levels.every((l) => l.wrong === 0 && l.checked > 0 && Object.keys(l.load.errors).length === 0);
    return { json: { scenario: 'latency', model: MODEL, options: { ...o, log: undefined }, levels, gatewayStderr: stderr, ok }, markdown: markdown(o, levels, stderr), ok };
  } finally {
    await rm(repo, { recursive: true, force: true });
    forget();
  }
}

function markdown(o: LatencyOptions, levels: readonly LatencyLevel[], stderr: string): string {
  const echoAt = (c: number): ClosedLoopResult | undefined => levels.find((l) => l.target === 'grpc-echo' && l.concurrency === c)?.load;
  const us = (n: number): string => num(n);
  const rows = levels.map((l) => {
    const echo = echoAt(l.concurrency);
    const isGateway = l.target === 'gateway';
    return [
      String(l.concurrency),
      l.target,
      num(l.load.requestsPerSecond),
      us(l.load.latency.avgUs),
      us(l.load.latency.p50Us),
      us(l.load.latency.p90Us),
      us(l.load.latency.p99Us),
      isGateway ? us(l.server?.queueUs ?? NaN) : '',
      isGateway ? us((l.server?.computeInputUs ?? NaN) + (l.server?.computeInferUs ?? NaN) + (l.server?.computeOutputUs ?? NaN)) : '',
      errorText(l.load.errors),
      `${l.checked} / ${l.wrong}`,
      `${num(l.cpu?.client ?? NaN, 2)} + ${num(l.cpu?.server ?? NaN, 2)} + ${num(l.cpu?.other ?? NaN, 2)}`,
      isGateway ? percent(l.load.requestsPerSecond, echo?.requestsPerSecond ?? NaN) : '',
      isGateway ? num(l.load.latency.p50Us - (echo?.latency.p50Us ?? NaN)) : '',
      isGateway ? num(l.load.latency.p99Us - (echo?.latency.p99Us ?? NaN)) : '',
    ];
  });
  const out = [
    `${MODEL} (FP32 [1,${WIDTH}], raw contents) by closed-loop clients (${o.warmupMs / 1000} s warm-up, ${o.durationMs / 1000} s window per level), ` +
      'beside grpc-echo: a bare grpc-js server with the same service definition whose ModelInfer returns the inputs. Both run as their own process on 127.0.0.1. ' +
      'Latency in µs, at the client. Every answer is checked to be the bytes sent.',
    '',
    mdTable(
      ['c', 'server', 'req/s', 'avg µs', 'p50 µs', 'p90 µs', 'p99 µs', 'queue µs', 'compute µs', 'errors', 'answers checked / wrong', 'CPU cores client + server + other', 'req/s vs echo', 'p50 added µs', 'p99 added µs'],
      rows,
      2,
    ),
  ];
  const top = Math.max(...o.concurrencies);
  const gTop = levels.find((l) => l.target === 'gateway' && l.concurrency === top)?.load;
  const g1 = levels.find((l) => l.target === 'gateway' && l.concurrency === 1)?.load;
  if (gTop) out.push(`Issue #5 P1 (c=${top} req/s as a share of grpc-echo; target ≥ 85 %): ${percent(gTop.requestsPerSecond, echoAt(top)?.requestsPerSecond ?? NaN)}.`, '');
  if (g1) out.push(`Issue #5 P3 (c=1 p50 added over grpc-echo; target ≤ 150 µs): ${num(g1.latency.p50Us - (echoAt(1)?.latency.p50Us ?? NaN))} µs.`, '');
  const disturbed = levels.filter((l) => (l.cpu?.other ?? 0) > DISTURBED_CORES).map((l) => `${l.target} c=${l.concurrency} (${num(l.cpu?.other ?? NaN, 2)})`);
  if (disturbed.length > 0) out.push(`**Disturbed:** other processes kept cores busy during ${disturbed.join(', ')}; those figures understate this machine. Rerun when it is idle.`, '');
  out.push(
    '"queue µs" and "compute µs" (input + infer + output) come from ModelStatistics deltas over the window. ' +
      '"CPU cores": CPU time over the window divided by its length, for the load generator and for the server process tree, which share the same cores.',
    '',
  );
  if (stderr.trim()) out.push('Gateway stderr:', '', '```', stderr.trim().slice(-4000), '```', '');
  return out.join('\n');
}
