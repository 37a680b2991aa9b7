import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { treeCpuSeconds } from '../../core/process-cpu.js';
import { buildModels } from '../../models/build/test-models.js';
import { freePort, spawnRedis } from '../fault/redis-process.js';
import { type ChildServer, httpUrlOf, killAtExit, removeAtExit, startChildServer } from '../load/child-server.js';
import { InferenceHttpClient } from '../../client/http-client.js';

// Issue #15: "the gateway's own worker choice uses the workers' reported
// expected wait rather than its local slot count only." Builds side by side
// on two registered workers of unequal speed, as when one worker's node has
// a noisy neighbour: worker w1 shares core 0 with a busy loop, and with the
// gateway and the load generator; w2 has core 1 to itself (taskset), as a
// worker on a node of its own. (With the gateway and the load left to run
// anywhere they took core 1 from w2 too, and w2 was fast only while it was
// given little work.) Each round starts, for each build in turn, a fresh
// Redis, the two workers, the busy loop and one gateway, all of that build,
// then `fabriek bench` against the gateway (gRPC, MLP 784→2048×4→10, one ONNX
// Runtime thread per instance, no dynamic batching: each request is one
// execution). Per round: req/s, p50, p99, and the share of the workers' CPU
// that went to w2.

const USAGE = `Usage: node dist/bench/ab/worker-choice-ab.js [options] 'LABEL|CLI.js' …

  --rounds N          rounds, each build once per round (default 3)
  --concurrency C     closed-loop clients (default 1: one caller, where the choice is free)
  --request-rate R    open loop instead: Poisson arrivals at R requests/s (callers that do not wait
                      for each other, as a service's users)
  --window-ms MS      measured window (default 10000)
  --warmup-ms MS      warm-up before it (default 2000)

Each build: a label and the path of its fabriek CLI (dist/gateway/cli.js). To compare with an
earlier commit: git worktree add /tmp/old COMMIT, build it there (npx tsc -p tsconfig.build.json
with node_modules linked), and give 'old|/tmp/old/dist/gateway/cli.js'. Needs Linux with two
cores or more, taskset (util-linux) and Debian's redis-server.`;

const BENCH = fileURLToPath(new URL('../cli.js', import.meta.url));
const MODEL = 'mlp';
const WORKER_READY = / ready: serving \d+ model versions on [^ ]+:(\d+)/;
const GATEWAY_READY = / ready: gRPC on 127\.0\.0\.1:(\d+)/;

interface Build {
  readonly label: string;
  readonly cli: string;
  readonly rps: number[];
  readonly p50Us: number[];
  readonly p99Us: number[];
  /** Share of the two workers' CPU that w2 (the core of its own) used. */
  readonly fastShare: number[];
}

/** One measurement of `build`: its own Redis, workers, busy loop and gateway, stopped after. */
async function measure(build: Build, repository: string, dir: string, o: { load: readonly string[]; windowMs: string; warmupMs: string }): Promise<void> {
  const port = await freePort();
  const redis = killAtExit(await spawnRedis(port));
  const registry = `redis://127.0.0.1:${port}`;
  const pinned = (core: string): string[] => ['taskset', '-c', core];
  const servers: ChildServer[] = [];
  const hog = killAtExit(spawn('taskset', ['-c', '0', process.execPath, '-e', 'for (;;) {}'], { stdio: 'ignore' }));
  try {
    const worker = (id: string, core: string): Promise<ChildServer> =>
      startChildServer(build.cli, ['worker', '--registry', registry, '--model-repository', repository, '--listen', '127.0.0.1:0', '--worker-id', id, '--log-level', 'error'], WORKER_READY, 60_000, [], pinned(core));
    const slow = await worker('w1', '0');
    servers.push(slow);
    const fast = await worker('w2', '1');
    servers.push(fast);
    const gateway = await startChildServer(
      build.cli,
      ['serve', '--registry', registry, '--grpc-address', '127.0.0.1', '--grpc-port', '0', '--http-address', '127.0.0.1', '--http-port', '0', '--metrics-port', '0', '--log-level', 'error'],
      GATEWAY_READY,
      60_000,
      [],
      pinned('0'),
    );
    servers.push(gateway);
    const client = new InferenceHttpClient(httpUrlOf(gateway) ?? '');
    try {
      const until = performance.now() + 30_000;
      while (!(await client.isModelReady(MODEL).catch(() => false))) {
        if (performance.now() > until) throw new Error(`${build.label}: ${MODEL} not ready within 30 s`);
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      client.close();
    }
    const json = join(dir, `${build.label}.json`);
    const cpu0 = [treeCpuSeconds(slow.pid), treeCpuSeconds(fast.pid)];
    execFileSync(
      'taskset',
      ['-c', '0', process.execPath, BENCH, '-m', MODEL, '-u', gateway.address, ...o.load, '-p', o.windowMs, '-r', '1', '--warmup-interval', o.warmupMs, '--no-save', '--json', json],
      { stdio: 'ignore' },
    );
    const [slowCpu = 0, fastCpu = 0] = [treeCpuSeconds(slow.pid), treeCpuSeconds(fast.pid)].map((c, i) => c - (cpu0[i] ?? 0));
    const level = (JSON.parse(await readFile(json, 'utf8')) as { levels: { requestsPerSecond: number; latency: { p50Us: number; p99Us: number } }[] }).levels[0];
    if (level === undefined) throw new Error(`${build.label}: the bench measured nothing`);
    build.rps.push(Math.round(level.requestsPerSecond));
    build.p50Us.push(level.latency.p50Us);
    build.p99Us.push(level.latency.p99Us);
    build.fastShare.push(Math.round((100 * fastCpu) / Math.max(1e-9, slowCpu + fastCpu)));
  } finally {
    await Promise.all(servers.reverse().map((c) => c.stop(500)));
    hog.kill('SIGKILL');
    redis.kill('SIGKILL');
  }
}

/** A whole number ≥ 1 from flag `name`, or the run ends saying what was wrong. */
function count(name: string, value: string): string {
  if (!/^[1-9]\d*$/.test(value)) throw new Error(`--${name}: expected a whole number ≥ 1, got '${value}'`);
  return value;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      rounds: { type: 'string', default: '3' },
      concurrency: { type: 'string', default: '1' },
      'request-rate': { type: 'string' },
      'window-ms': { type: 'string', default: '10000' },
      'warmup-ms': { type: 'string', default: '2000' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length === 0) {
    console.log(USAGE);
    return;
  }
  if (availableParallelism() < 2) throw new Error('needs two cores: one for the worker beside a busy loop, one for the other');
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
  } catch {
    throw new Error('needs taskset (util-linux) able to pin to core 0');
  }
  const rounds = Number(count('rounds', values.rounds));
  const rate = values['request-rate'];
  if (rate !== undefined && !(Number(rate) > 0)) throw new Error(`--request-rate: expected requests per second > 0, got '${rate}'`);
  const load = rate === undefined ? ['--concurrency-range', count('concurrency', values.concurrency)] : ['--request-rate-range', rate, '--request-distribution', 'poisson'];
  const o = { load, windowMs: count('window-ms', values['window-ms']), warmupMs: count('warmup-ms', values['warmup-ms']) };
  const builds: Build[] = positionals.map((v) => {
    const [label = '', cli = ''] = v.split('|');
    if (label === '' || cli === '' || !existsSync(cli)) throw new Error(`'${v}': expected 'LABEL|CLI.js' with an existing fabriek CLI`);
    return { label, cli: resolve(cli), rps: [], p50Us: [], p99Us: [], fastShare: [] };
  });
  const dir = await mkdtemp(join(tmpdir(), 'fabriek-worker-choice-'));
  const forget = removeAtExit(dir);
  try {
    const [built] = await buildModels(join(dir, 'built'), ['mlp_large']);
    if (built === undefined) throw new Error('mlp_large was not built');
    const repository = join(dir, 'repository');
    await mkdir(join(repository, MODEL, '1'), { recursive: true });
    await copyFile(built, join(repository, MODEL, '1', 'model.onnx'));
    // One thread per instance, so each worker's speed is its core's; no dynamic batching, so each request is a choice.
    await writeFile(
      join(repository, MODEL, 'config.pbtxt'),
      `name: "${MODEL}"\nmax_batch_size: 64\ninstance_group [ { count: 1, kind: KIND_CPU } ]\nparameters { key: "intra_op_thread_count" value { string_value: "1" } }\n`,
    );
    for (let round = 0; round < rounds; round++) for (const b of builds) await measure(b, repository, dir, o);
    const how = rate === undefined ? `${values.concurrency} closed-loop gRPC client(s)` : `Poisson arrivals at ${rate}/s over gRPC`;
    console.log(`${MODEL} (784→2048×4→10, one thread per instance) on two registered workers, w1 beside a busy loop, the gateway and the load on core 0, w2 alone on core 1; ${how}, ${values.rounds} rounds of ${values['window-ms']} ms`);
    for (const b of builds) console.log(`${b.label}: req/s ${b.rps.join(' ')}; p50 µs ${b.p50Us.join(' ')}; p99 µs ${b.p99Us.join(' ')}; w2's share of the workers' CPU % ${b.fastShare.join(' ')}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
    forget();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
