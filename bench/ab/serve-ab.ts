import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { treeCpuSeconds } from '../../core/process-cpu.js';

// Several `fabriek serve` variants side by side in one run: another build's
// CLI, or this one with other flags. Each server starts once; then rounds of
// `fabriek bench -u` against each in turn, so drift on a shared machine falls
// on all of them. Per round: req/s and the server process tree's CPU per
// request (from /proc, over the bench's warm-up and window), p50 latency. The first round
// warms the servers up; read the others.

const USAGE = `Usage: node dist/bench/ab/serve-ab.js [options] 'LABEL|CLI.js|SERVE FLAGS' …

  --rounds N          rounds of one bench window per variant (default 6)
  --concurrency C     closed-loop clients (default 16)
  --model NAME        model to call (default identity_fp32)
  --repository DIR    model repository every variant serves (default models/examples)
  --window-ms MS      bench window (default 3000)
  --protocol P        grpc or http (the KServe v2 binary tensor extension) (default grpc)

Each variant: a label, the path of a fabriek CLI (dist/gateway/cli.js of a build), and flags
for 'fabriek serve', e.g. 'now|dist/gateway/cli.js|--gateway-processes 2'. To compare with an
earlier commit: git worktree add /tmp/old COMMIT, build it there (npx tsc -p tsconfig.build.json
with node_modules linked), and give /tmp/old/dist/gateway/cli.js.`;

const BENCH = fileURLToPath(new URL('../cli.js', import.meta.url));
const WARMUP_MS = 500;

interface Variant {
  readonly label: string;
  readonly child: ChildProcess;
  readonly port: string;
  /** Undefined for a variant that does not serve HTTP. */
  readonly httpPort: string | undefined;
  readonly rps: number[];
  readonly cpuUs: number[];
  readonly p50Us: number[];
}

async function start(label: string, cli: string, flags: readonly string[], repository: string): Promise<Variant> {
  const child = spawn(
    process.execPath,
    [resolve(cli), 'serve', '--model-repository', repository, '--grpc-address', '127.0.0.1', '--grpc-port', '0', '--http-address', '127.0.0.1', '--http-port', '0', '--metrics-port', '0', '--log-level', 'error', ...flags],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const [port, httpPort] = await new Promise<[string, string | undefined]>((done, fail) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      // The whole ready line: it names HTTP's port only when the variant serves HTTP.
      const m = / ready: gRPC on [^ ;]+:(\d+); (?:HTTP on [^ ;]+:(\d+))?.*\n/.exec(out);
      if (m?.[1]) done([m[1], m[2]]);
    });
    child.once('exit', (code) => fail(new Error(`${label}: exited with ${code} before it was ready`)));
  });
  return { label, child, port, httpPort, rps: [], cpuUs: [], p50Us: [] };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      rounds: { type: 'string', default: '6' },
      concurrency: { type: 'string', default: '16' },
      model: { type: 'string', default: 'identity_fp32' },
      repository: { type: 'string', default: 'models/examples' },
      'window-ms': { type: 'string', default: '3000' },
      protocol: { type: 'string', default: 'grpc' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length === 0) {
    console.log(USAGE);
    return;
  }
  const repository = resolve(values.repository);
  const http = values.protocol === 'http';
  if (!http && values.protocol !== 'grpc') throw new Error(`--protocol: expected grpc or http, got '${values.protocol}'`);
  const variants: Variant[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'fabriek-ab-'));
  try {
    for (const v of positionals) {
      const [label = '', cli = '', flags = ''] = v.split('|');
      const variant = await start(label, cli, flags.split(' ').filter(Boolean), repository);
      variants.push(variant);
      if (http && variant.httpPort === undefined) throw new Error(`${label}: --protocol http, but this variant serves no HTTP`);
    }
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const v of variants) {
        const json = join(dir, `${v.label}.json`);
        const pid = v.child.pid ?? 0;
        const cpu0 = treeCpuSeconds(pid);
        execFileSync(
          process.execPath,
          [BENCH, '-m', values.model, ...(http ? ['-i', 'http', '-u', `http://127.0.0.1:${v.httpPort}`] : ['-u', `127.0.0.1:${v.port}`]), '--concurrency-range', values.concurrency, '-p', values['window-ms'], '-r', '1', '--warmup-interval', String(WARMUP_MS), '--no-save', '--json', json],
          { stdio: 'ignore' },
        );
        const cpu = treeCpuSeconds(pid) - cpu0;
        const level = (JSON.parse(readFileSync(json, 'utf8')) as { levels: { requestsPerSecond: number; seconds: number; latency: { p50Us: number } }[] }).levels[0];
        if (level === undefined) throw new Error(`${v.label}: the bench measured nothing`);
        // The CPU read spans the warm-up too, at about the same rate.
        const requests = level.requestsPerSecond * (level.seconds + WARMUP_MS / 1000);
        v.rps.push(Math.round(level.requestsPerSecond));
        v.cpuUs.push(Math.round((cpu * 1e6) / requests));
        v.p50Us.push(level.latency.p50Us);
      }
    }
    console.log(`${values.model} over ${http ? 'HTTP' : 'gRPC'}, ${values.concurrency} clients, ${values.rounds} rounds of ${values['window-ms']} ms (the first warms up)`);
    for (const v of variants) console.log(`${v.label}: req/s ${v.rps.join(' ')}; server CPU µs/req ${v.cpuUs.join(' ')}; p50 µs ${v.p50Us.join(' ')}`);
  } finally {
    for (const v of variants) v.child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
