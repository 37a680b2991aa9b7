import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { buildModels } from '../../models/build/test-models.js';
import { treeCpuSeconds } from '../../core/process-cpu.js';
import { type ChildServer, httpUrlOf, removeAtExit, startGateway } from '../load/child-server.js';
import { mdTable, num, ratio } from '../report/format.js';
import { median } from '../report/median.js';
import { splitServeFlags } from '../options.js';
import { InferenceHttpClient } from '../../client/http-client.js';
import { readModelStats, statsDelta } from '../load/server-stats.js';
import { type FabriekConfig, parseFabriekConfig } from './fabriek-config.js';

// Issue #15's peer comparison in one run: Fabriek's HTTP endpoint (KServe v2
// binary tensor extension) against Ray Serve on MLP 784→2048×4→10, both
// driven by the peer harness's own autocannon driver (ac.js) at the same
// connection count, in alternating rounds so drift on a shared machine falls
// on both. Ray Serve runs through the harness's run.sh, which sets it up from
// the local wheelhouse, serves with @serve.batch and stops it after each round.

const USAGE = `Usage: node dist/bench/peers/rayserve.js [options]

  --peer-dir DIR        the Ray Serve harness (run.sh, ac.js); default ../shared/peers/rayserve
  --rounds N            alternating rounds of each server (default 2)
  --connections N       autocannon connections (default 64)
  --duration S          measured seconds per run (default 10)
  --warmup S            warm-up seconds per run (default 3)
  --fabriek CONFIG      Fabriek batching, repeatable: fixed:<max_queue_delay µs> or slo:<batching_slo_ms>,
                        optionally ',threads=N': the model's intra_op_thread_count (default: Fabriek's,
                        cores / instances), e.g. slo:25,threads=1 leaves a core of two to the gateway
                        (default fixed:2000, as Ray's batch_wait_timeout_s=0.002)
  --instances N         Fabriek instance_group count (default 1)
  --ray-threads N       ONNX Runtime intra-op threads of the Ray replica (default 2)
  --ray-ingress KIND    proxy | direct | haproxy (default direct: Ray's fastest)
  -- FLAGS              last: more 'fabriek serve' flags, e.g. -- --local-workers in-process`;

interface AcResult {
  readonly rps: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly ok: number;
  readonly errors: number;
  /** Absent from run.sh's line (its errors count them). */
  readonly non2xx?: number;
}

const errorsOf = (r: AcResult): number => r.errors + (r.non2xx ?? 0);

interface Run {
  readonly server: string;
  readonly round: number;
  readonly result: AcResult;
  /** Server process tree's cores during the run (Fabriek only: run.sh reports Ray's itself). */
  readonly serverCores?: number;
  /** Rows per execution over the run, warm-up included, by ModelStatistics (Fabriek only). */
  readonly avgBatch?: number;
}

const MODEL = 'mlp_large';
const MAX_BATCH = 64;

function configText(name: string, config: FabriekConfig, instances: number): string {
  const lines = [`name: "${name}"`, `max_batch_size: ${MAX_BATCH}`, `instance_group [ { count: ${instances}, kind: KIND_CPU } ]`];
  if (config.kind === 'fixed') lines.push(`dynamic_batching { max_queue_delay_microseconds: ${config.value} }`);
  else lines.push('dynamic_batching { }', `parameters { key: "batching_slo_ms" value { string_value: "${config.value}" } }`);
  if (config.threads !== undefined) lines.push(`parameters { key: "intra_op_thread_count" value { string_value: "${config.threads}" } }`);
  return lines.join('\n') + '\n';
}

const modelName = (config: string): string => `mlp_${config.replace(/[^A-Za-z0-9]+/g, '_')}`;

/** Runs a command, collecting stdout; its last JSON line is the result. */
function runJson(command: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<AcResult> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.once('exit', (code) => {
      const line = out.trim().split('\n').reverse().find((l) => l.startsWith('{'));
      if (code !== 0 || line === undefined) fail(new Error(`${command} ${args.join(' ')} exited ${code}:\n${err}`));
      else done(JSON.parse(line) as AcResult);
    });
  });
}

async function main(): Promise<void> {
  const { own, serveFlags } = splitServeFlags(process.argv.slice(2));
  const { values } = parseArgs({
    args: own,
    options: {
      'peer-dir': { type: 'string', default: '../shared/peers/rayserve' },
      rounds: { type: 'string', default: '2' },
      connections: { type: 'string', default: '64' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '3' },
      fabriek: { type: 'string', multiple: true },
      instances: { type: 'string', default: '1' },
      'ray-threads': { type: 'string', default: '2' },
      'ray-ingress': { type: 'string', default: 'direct' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const peerDir = resolve(values['peer-dir']);
  const configs = values.fabriek ?? ['fixed:2000'];
  // Read before anything is built: a --fabriek value it cannot use ends the run at once.
  const parsed = new Map(configs.map((c) => [c, parseFabriekConfig(c)]));
  const rounds = Number(values.rounds);
  const log = (line: string): void => void process.stderr.write(`${line}\n`);

  const dir = await mkdtemp(join(tmpdir(), 'fabriek-rayserve-'));
  const forget = removeAtExit(dir);
  const [built] = await buildModels(join(dir, 'built'), [MODEL]);
  if (built === undefined) throw new Error('mlp_large was not built');
  const repository = join(dir, 'repository');
  for (const [config, spec] of parsed) {
    const name = modelName(config);
    await mkdir(join(repository, name, '1'), { recursive: true });
    await writeFile(join(repository, name, 'config.pbtxt'), configText(name, spec, Number(values.instances)));
    await copyFile(built, join(repository, name, '1', 'model.onnx'));
  }
  const acEnv = { ...process.env, AC_DIR: fileURLToPath(new URL('../../../', import.meta.url)), KSERVE_INPUT: 'input', KSERVE_OUTPUT: 'logits' };
  const acArgs = (url: string): string[] => [join(peerDir, 'ac.js'), url, values.connections, values.duration, values.warmup, 'kserve'];

  const runs: Run[] = [];
  let gateway: ChildServer | undefined;
  try {
    for (let round = 1; round <= rounds; round++) {
      gateway = await startGateway(repository, ['--log-level', 'error', ...serveFlags]);
      const base = httpUrlOf(gateway) as string;
      const stats = new InferenceHttpClient(base);
      for (const config of configs) {
        const name = modelName(config);
        const before = await readModelStats(stats, name);
        const cpu0 = treeCpuSeconds(gateway.pid);
        const started = performance.now();
        const result = await runJson(process.execPath, acArgs(`${base}/v2/models/${name}/infer`), acEnv);
        const serverCores = (treeCpuSeconds(gateway.pid) - cpu0) / ((performance.now() - started) / 1000);
        const avgBatch = statsDelta(before, await readModelStats(stats, name))?.avgBatchSize;
        runs.push({ server: `fabriek ${config}`, round, result, serverCores, ...(avgBatch !== undefined ? { avgBatch } : {}) });
        log(`round ${round} fabriek ${config}: ${num(result.rps)} req/s, p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms, avg batch ${avgBatch?.toFixed(1) ?? '–'}, errors ${errorsOf(result)}`);
      }
      stats.close();
      await gateway.stop();
      gateway = undefined;
      const ray = await runJson(
        'bash',
        [join(peerDir, 'run.sh'), '--model', built, '--mode', 'batched', '--ingress', values['ray-ingress'], '--threads', values['ray-threads'],
          '--connections', values.connections, '--duration', values.duration, '--warmup', values.warmup, '--max-batch', String(MAX_BATCH), '--wait-s', '0.002'],
        process.env,
      );
      runs.push({ server: 'ray serve', round, result: ray });
      log(`round ${round} ray serve: ${num(ray.rps)} req/s, p50 ${ray.p50_ms} ms, p99 ${ray.p99_ms} ms, errors ${errorsOf(ray)}`);
    }
  } finally {
    await gateway?.stop();
    await rm(dir, { recursive: true, force: true });
    forget();
  }

  const servers = [...new Set(runs.map((r) => r.server))];
  const rayRps = median(runs.filter((r) => r.server === 'ray serve').map((r) => r.result.rps));
  const rayP99 = median(runs.filter((r) => r.server === 'ray serve').map((r) => r.result.p99_ms));
  const rows = servers.map((server) => {
    const mine = runs.filter((r) => r.server === server);
    const rps = mine.map((r) => r.result.rps);
    const p99 = mine.map((r) => r.result.p99_ms);
    const cores = mine.flatMap((r) => (r.serverCores === undefined ? [] : [r.serverCores]));
    const batches = mine.flatMap((r) => (r.avgBatch === undefined ? [] : [r.avgBatch]));
    return [
      server,
      rps.map((x) => num(x)).join(' / '),
      p99.map((x) => `${x}`).join(' / '),
      cores.length > 0 ? cores.map((c) => c.toFixed(2)).join(' / ') : 'see run.sh',
      batches.length > 0 ? batches.map((b) => b.toFixed(1)).join(' / ') : '–',
      String(mine.reduce((n, r) => n + errorsOf(r.result), 0)),
      server === 'ray serve' ? '1×' : ratio(median(rps), rayRps),
      server === 'ray serve' ? '' : median(p99) < rayP99 ? 'lower' : 'HIGHER',
    ];
  });
  console.log(`MLP 784→2048×4→10 over HTTP, ${values.connections} connections, ${values.duration} s per run, ${rounds} alternating rounds (rounds listed in order)\n`);
  console.log(mdTable(['server', 'req/s', 'p99 ms', 'server cores', 'avg batch', 'errors', 'req/s vs Ray (medians)', 'p99 vs Ray'], rows));
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
