// `fabriek bench` run briefly against a real server: the files it writes
// exist and hold sane numbers, `compare` flags a regression, and bad flags
// exit 2 with a message.
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunRecord } from '../../bench/history.js';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { buildModel, EXAMPLE_CONFIGS } from '../../models/build/test-models.js';
import { type GatewayProcess, runCli, startGateway } from '../helpers/gateway-process.js';
import { TEST_REPOSITORY } from '../helpers/test-repository.js';

/** `fabriek bench ARGS…` through the real CLI, to completion. */
const bench = (args: readonly string[], timeoutMs = 30_000): ReturnType<typeof runCli> => runCli(['bench', ...args], timeoutMs);

describe('fabriek bench against a real server', () => {
  let gw: GatewayProcess;
  let dir: string;

  beforeAll(async () => {
    gw = await startGateway(['--model-repository', TEST_REPOSITORY, '--log-level', 'warn']);
    dir = await mkdtemp(join(tmpdir(), 'fabriek-bench-cli-'));
  });

  afterAll(async () => {
    await gw?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('measures two concurrency levels and writes CSV, JSON, SVG and a history entry', async () => {
    const csv = join(dir, 'levels.csv');
    const json = join(dir, 'run.json');
    const svg = join(dir, 'chart.svg');
    const history = join(dir, 'history');
    const args = ['-m', 'add_sub', '-u', gw.address, '--concurrency-range', '1:2', '-p', '250', '-r', '3', '--warmup-interval', '100'];
    const r = await bench([...args, '--slo-ms', '1000', '-f', csv, '--json', json, '--svg', svg, '--results-dir', history]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/fabriek\s+add_sub\s+c=1/);

    const lines = (await readFile(csv, 'utf8')).trim().split('\n');
    expect(lines[0]?.startsWith('Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue')).toBe(true);
    expect(lines).toHaveLength(3);
    const rows = lines.slice(1).map((l) => l.split(','));
    expect(rows.map((c) => c[0])).toEqual(['1', '2']);
    for (const c of rows) {
      const [throughput, , , , , , , , p50, p90, p95, p99] = c.slice(1).map(Number);
      expect(throughput).toBeGreaterThan(10);
      expect(p50).toBeGreaterThan(0);
      expect(p50).toBeLessThanOrEqual(p90 as number);
      expect(p90).toBeLessThanOrEqual(p95 as number);
      expect(p95).toBeLessThanOrEqual(p99 as number);
      expect(c[19]).toBe('0'); // errors
    }

    const record = JSON.parse(await readFile(json, 'utf8')) as RunRecord;
    expect(record.format).toBe('fabriek-bench/1');
    expect(record.info.machine.cores).toBeGreaterThan(0);
    expect(record.info.commit).toMatch(/^([0-9a-f]{7,}|unknown)$/);
    expect(record.levels).toHaveLength(2);
    for (const l of record.levels) {
      expect(l.requests).toBeGreaterThan(0);
      expect(l.trials).toBeGreaterThanOrEqual(1);
      expect(l.trials).toBeLessThanOrEqual(3);
      expect(l.inferPerSecond).toBeCloseTo(l.requests / l.seconds, 3);
      // The server counted the same requests the client did, give or take those in flight at the window edges.
      expect(l.server?.success).toBeGreaterThan(l.requests * 0.5);
      expect(l.server?.avgBatchSize).toBeGreaterThanOrEqual(1);
      expect(l.goodputPerSecond).toBeGreaterThan(0);
    }
    expect(await readFile(svg, 'utf8')).toMatch(/^<svg [\s\S]*<polyline[\s\S]*<\/svg>\n$/);
    expect((await readdir(history)).map((f) => f.replace(/^.*-perf-/, 'perf-')).sort()).toEqual(['perf-add_sub.csv', 'perf-add_sub.json', 'perf-add_sub.md', 'perf-add_sub.svg']);

    // compare: a run against itself passes; against a copy with half the throughput it fails and names the level.
    expect((await bench(['compare', json, json])).code).toBe(0);
    const worse = join(dir, 'worse.json');
    await writeFile(worse, JSON.stringify({ ...record, levels: record.levels.map((l) => ({ ...l, inferPerSecond: l.inferPerSecond / 2 })) }));
    const cmp = await bench(['compare', json, worse, '--threshold', '10']);
    expect(cmp.code).toBe(1);
    expect(cmp.stdout).toMatch(/2 regression\(s\) beyond 10 %/);
    expect(cmp.stdout).toMatch(/fabriek add_sub grpc c=1 b=1: infer\/s/);
  }, 30_000);

  it('alternates grpc-echo and the server over --rounds, compares each round with its own baseline, and gives the medians', async () => {
    const json = join(dir, 'rounds.json');
    const args = ['-m', 'identity_fp32', '-u', gw.address, '--baseline', 'grpc-echo', '--concurrency-range', '2', '-p', '250', '-r', '1', '--warmup-interval', '100'];
    const r = await bench([...args, '--rounds', '2', '--json', json, '--no-save']);
    expect(r.code, r.stderr).toBe(0);
    const record = JSON.parse(await readFile(json, 'utf8')) as RunRecord;
    // In turn: the baseline, then the server, round after round.
    expect(record.levels.map((l) => `${l.series} ${l.round}`)).toEqual(['grpc-echo 1', 'fabriek 1', 'grpc-echo 2', 'fabriek 2']);
    for (const l of record.levels) expect(l.requests).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/grpc-echo \(1\)\s+identity_fp32\s+c=2/);
    expect(r.stdout).toMatch(/fabriek \(2\)\s+identity_fp32\s+c=2/);
    // The server was given by address, so its CPU is not metered: the CPU ratios say so, the others are figures.
    expect(r.stdout).toMatch(/identity_fp32 c=2, 2 rounds against grpc-echo: CPU\/req × –, – \(median –\); p50 added µs -?\d+, -?\d+ \(median -?\d+\); infer\/s \d+ %, \d+ % \(median \d+ %\)/);
  }, 30_000);

  it('runs one short round of the fairness scenario: A is held to its quota, B loses nothing', async () => {
    const history = join(dir, 'fairness');
    const r = await bench(['fairness', '--rounds', '1', '--duration', '2', '--warmup', '0', '--results-dir', history], 90_000);
    expect(r.code, r.stderr).toBe(0);
    const files = await readdir(history);
    expect(files).toContain('latest-fairness.json');
    interface FairnessWindow {
      readonly phase: string;
      readonly ok: number;
      readonly errors: Record<string, number>;
      readonly wrong: number;
      readonly seconds: number;
      readonly flood?: { readonly sent: number; readonly outcomes: Record<string, number> };
      readonly server?: { readonly ok: Record<string, number> };
    }
    const run = JSON.parse(await readFile(join(history, 'latest-fairness.json'), 'utf8')) as { scenario: { windows: FairnessWindow[]; settings: { intraOpThreads: number } } };
    const windows = run.scenario.windows;
    expect(windows.map((w) => w.phase).sort()).toEqual(['alone', 'flood', 'quota']);
    expect(run.scenario.settings.intraOpThreads).toBe(1);
    for (const w of windows) {
      expect(w.ok).toBeGreaterThan(100); // 150/s for 2 s
      expect(w.errors).toEqual({});
      expect(w.wrong).toBe(0);
    }
    const flood = windows.find((w) => w.phase === 'flood');
    expect(flood?.flood?.outcomes['RESOURCE_EXHAUSTED'] ?? 0).toBeGreaterThan(100);
    // 20/s quota with its burst, over a 2 s window: far below the 200/s A sent.
    expect(flood?.server?.ok['a'] ?? Infinity).toBeLessThan(100);
  }, 90_000);

  it('measures a stateful model in sequences (--sequence-length), over gRPC and HTTP, without an error', async () => {
    const repo = join(dir, 'sequences');
    await mkdir(join(repo, 'running_sum', '1'), { recursive: true });
    await writeFile(join(repo, 'running_sum', 'config.pbtxt'), EXAMPLE_CONFIGS.running_sum ?? '');
    await writeFile(join(repo, 'running_sum', '1', 'model.onnx'), buildModel('running_sum'));
    const sequences = await startGateway(['--model-repository', repo, '--log-level', 'warn']);
    try {
      const http = `http://127.0.0.1:${/HTTP on [^ ;]+:(\d+)/.exec(sequences.readyLine)?.[1] ?? ''}`;
      for (const target of [['-u', sequences.address], ['-u', http, '-i', 'http']]) {
        const r = await bench(['-m', 'running_sum', ...target, '--sequence-length', '3', '--concurrency-range', '4', '-p', '200', '-r', '2', '--warmup-interval', '0', '--no-save']);
        expect(r.code, r.stderr).toBe(0);
        const row = r.stdout.split('\n').find((l) => /^fabriek\s+running_sum\s+c=4/.test(l)) ?? '';
        // The errors column: no request refused (each sequence started, continued and ended in order).
        expect(row.split(/\s+/)[10], row).toBe('0');
      }
    } finally {
      expect(await sequences.stop()).toBe(0);
    }
  }, 60_000);

  it('sends -H headers with every request, so a server with --tenants can be measured over gRPC and HTTP', async () => {
    const key = 'bench-cli-test-key-0123456789';
    const tenants = join(dir, 'tenants.yaml');
    await writeFile(tenants, `tenants:\n  bencher:\n    keys: [ "${hashKey(key)}" ]\n    models: [ "add_sub" ]\n`);
    const secured = await startGateway(['--model-repository', TEST_REPOSITORY, '--log-level', 'warn', '--tenants', tenants]);
    try {
      const http = `http://127.0.0.1:${/HTTP on [^ ;]+:(\d+)/.exec(secured.readyLine)?.[1] ?? ''}`;
      const quick = ['-m', 'add_sub', '-p', '200', '-r', '1', '--warmup-interval', '0', '--no-save'];
      for (const target of [['-u', secured.address], ['-u', http, '-i', 'http']]) {
        const r = await bench([...quick, ...target, '-H', `authorization: Bearer ${key}`]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/fabriek\s+add_sub\s+c=1/);
        const refused = await bench([...quick, ...target]);
        expect(refused.code).not.toBe(0);
        expect(refused.stderr).toMatch(/UNAUTHENTICATED|401|API key/i);
      }
    } finally {
      expect(await secured.stop()).toBe(0);
    }
  }, 60_000);

  it('runs the overload scenario briefly: both modes measured through the h2 client, and SIGTERM afterwards ends every process', async () => {
    const history = join(dir, 'overload');
    // With a queue bound: the models load with it (a config the gateway refused would fail the bench).
    const r = await bench(['overload', '--factor', '2', '--max-queue-size', '32', '--duration', '1', '--warmup', '0.5', '--results-dir', history], 150_000);
    // 0: the bar was met; 1: it was not (this machine's verdict); anything else is a failure of the bench.
    expect([0, 1], r.stderr).toContain(r.code);
    interface ModeRun {
      readonly mode: string;
      readonly capacity: { readonly inferPerSecond: number; readonly server?: { readonly executionCount: number; readonly executionComputeUs: number } };
      readonly partial: { readonly requests: number };
      readonly overload: { readonly value: number; readonly requests: number; readonly errors: Record<string, number> };
      readonly rssPeakBytes: number;
      readonly exitMs: number;
      readonly exitedHow: string;
      readonly leftAlive: number;
    }
    const run = JSON.parse(await readFile(join(history, 'latest-overload.json'), 'utf8')) as { scenario: { options: { maxQueueSize: number; intraOpThreads: number }; results: ModeRun[] } };
    expect(run.scenario.options.maxQueueSize).toBe(32);
    // Fabriek's own thread count unless asked (fairness's default of 1 is not overload's).
    expect(run.scenario.options.intraOpThreads).toBe(0);
    expect(run.scenario.results.map((m) => m.mode)).toEqual(['fixed (max_queue_delay 0)', 'SLO 300 ms']);
    for (const m of run.scenario.results) {
      expect(m.capacity.inferPerSecond).toBeGreaterThan(0);
      // ModelStatistics around the level: batches ran, and the instance computed for part of the window.
      expect(m.capacity.server?.executionCount).toBeGreaterThan(0);
      expect(m.capacity.server?.executionComputeUs).toBeGreaterThan(0);
      expect(m.overload.value).toBeCloseTo(2 * m.capacity.inferPerSecond, -1);
      // Below capacity every window gets answers. The overload window is not asserted to: at 2× for 1 s on a
      // shared machine it can end before any answer arrives (the collapse this scenario exists to show; seen in CI).
      expect(m.partial.requests).toBeGreaterThan(0);
      expect(m.rssPeakBytes).toBeGreaterThan(0);
      expect(m.exitedHow).toBe('0');
      expect(m.exitMs).toBeLessThan(10_000);
      expect(m.leftAlive).toBe(0);
    }
    expect(await readFile(join(history, 'latest-overload.md'), 'utf8')).toMatch(/\| batch · instance busy \(capacity → overload\) \|/);
    const bad = await bench(['overload', '--factor', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--factor: expected a multiple from 1 to 100, got '0'/);
    const badRounds = await bench(['suite', '--rounds', '0']);
    expect(badRounds.code).toBe(2);
    expect(badRounds.stderr).toMatch(/--rounds: expected an integer from 1 to 20, got '0'/);
    const badCapacity = await bench(['slo-goodput', '--capacity', '0']);
    expect(badCapacity.code).toBe(2);
    expect(badCapacity.stderr).toMatch(/--capacity: expected req\/s from 1 to 100000, got '0'/);
    const badRate = await bench(['overload', '--offered-rate', '2.5']);
    expect(badRate.code).toBe(2);
    expect(badRate.stderr).toMatch(/--offered-rate: expected images\/s from 1 to 100000, got '2.5'/);
    // A list where one value is asked is refused, not cut to its first.
    const listRounds = await bench(['overload', '--rounds', '2,3']);
    expect(listRounds.code).toBe(2);
    expect(listRounds.stderr).toMatch(/--rounds: expected one positive integer, got '2,3'/);
    const badThreads = await bench(['overload', '--intra-op-threads', '65']);
    expect(badThreads.code).toBe(2);
    expect(badThreads.stderr).toMatch(/--intra-op-threads: expected 0 to 64, got '65'/);
    const badQueue = await bench(['overload', '--max-queue-size', '1.5']);
    expect(badQueue.code).toBe(2);
    expect(badQueue.stderr).toMatch(/--max-queue-size: expected requests from 0 to 1000000, got '1.5'/);
  }, 150_000);

  it('runs the ragged scenario briefly: every variant of both model pairs measured, every answer right', async () => {
    const history = join(dir, 'ragged');
    const r = await bench(['ragged', '--rounds', '1', '--duration', '0.5', '--warmup', '0.2', '--concurrency', '4', '--max-length', '16', '--results-dir', history], 90_000);
    expect(r.code, r.stderr).toBe(0);
    interface Run {
      readonly pair: string;
      readonly variant: string;
      readonly wrong: number;
      readonly load: { readonly requests: number; readonly errorCount: number };
    }
    const run = JSON.parse(await readFile(join(history, 'latest-ragged.json'), 'utf8')) as { scenario: { measured: Run[] } };
    expect(run.scenario.measured.map((m) => `${m.pair} ${m.variant}`)).toEqual(['sum ragged', 'sum padded', 'sum as sent', 'per-value MLP ragged', 'per-value MLP padded', 'per-value MLP as sent']);
    for (const m of run.scenario.measured) {
      expect(m.load.requests, `${m.pair} ${m.variant}`).toBeGreaterThan(0);
      expect(m.wrong + m.load.errorCount, `${m.pair} ${m.variant}`).toBe(0);
    }
    expect(r.stdout).toContain('### per-value MLP: ragged_mlp against row_mlp');
    const bad = await bench(['ragged', '--max-length', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--max-length: expected positive integers, got '0'/);
  }, 90_000);

  it('runs the scaling scenario with one and two gateway processes, load from processes of their own, and reports merged runs', async () => {
    const history = join(dir, 'scaling');
    const r = await bench(
      ['scaling', '--processes', '1,2', '--client-processes', '2', '--connections', '2', '--concurrency', '4', '--duration', '1', '--warmup', '0.5', '--results-dir', history],
      120_000,
    );
    expect(r.code, r.stderr).toBe(0);
    interface Level {
      readonly gatewayProcesses: number;
      readonly answered: number;
      readonly failed: number;
      readonly wrong: number;
      readonly serverCpuUsPerRequest: number;
      readonly rowsPerRun: number | null;
      readonly latency: { readonly count: number };
    }
    const run = JSON.parse(await readFile(join(history, 'latest-scaling.json'), 'utf8')) as { scenario: { levels: Level[] } };
    const levels = run.scenario.levels;
    expect(levels.map((l) => l.gatewayProcesses)).toEqual([1, 2]);
    for (const l of levels) {
      expect(l.answered).toBeGreaterThan(0);
      expect(l.latency.count).toBe(l.answered);
      expect(l.failed + l.wrong).toBe(0);
      expect(l.serverCpuUsPerRequest).toBeGreaterThan(0);
    }
    // The worker reports its runs only with several gateway processes (JSON writes NaN as null).
    expect(levels[0]?.rowsPerRun).toBeNull();
    expect(levels[1]?.rowsPerRun).toBeGreaterThanOrEqual(1);
    expect(r.stdout).toMatch(/\| 2 \| \d+ \| [\d.]+× \| [\d.]+ \|/);
    const bad = await bench(['scaling', '--processes', '0,2']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--processes: expected integers from 1 to 64, got '0,2'/);
  }, 120_000);

  it('profiles a server it starts: every process writes a profile, and the CPU of the measured load is charged to stages per request', async () => {
    const profiles = join(dir, 'profiles');
    const r = await bench(['profile', '-m', 'identity_fp32', '--model-repository', TEST_REPOSITORY, '-c', '4', '--duration', '2', '--profile-dir', profiles], 90_000);
    expect(r.code, r.stderr).toBe(0);
    // The gateway's main thread and the worker's (plus its ONNX Runtime threads): two processes at least.
    const pids = new Set((await readdir(profiles)).filter((f) => f.endsWith('.cpuprofile')).map((f) => f.split('.')[3]));
    expect(pids.size).toBeGreaterThanOrEqual(2);
    expect(r.stdout).toMatch(/\| stage \(µs of CPU per request\) \| gateway \(1 threads\) \| worker \(\d+ threads\) \| server \| share \|/);
    const grpcJs = /\| grpc-js \(calls, metadata, message framing\) \| ([\d.]+) \| [\d.]+ \| [\d.]+ \|/.exec(r.stdout);
    expect(grpcJs, r.stdout).not.toBeNull();
    expect(r.stdout).toMatch(/\| ONNX Runtime \(run, tensors\) \| [\d.]+ \| [\d.]+ \|/);
    const busy = /\*\*busy \(profiled\)\*\* \| \*\*([\d.]+)\*\* \| \*\*([\d.]+)\*\*/.exec(r.stdout);
    expect(Number(busy?.[1])).toBeGreaterThan(0);
    expect(Number(busy?.[2])).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/\d+ requests in [\d.]+ s \(\d+\/s\), 0 errors/);
    // Over HTTP (the binary tensor extension): the HTTP handlers carry the calls, grpc-js none of them. Its server's
    // own timers may catch a sample or a few (a first run of some function compiled lazily, on a loaded machine:
    // 1.1 µs a request once in CI, 0 in four runs alone), where a gRPC call costs tens in grpc-js: under a tenth of that.
    const grpcJsPerCall = Number(grpcJs?.[1]);
    expect(grpcJsPerCall).toBeGreaterThan(5);
    const http = await bench(['profile', '-m', 'identity_fp32', '--model-repository', TEST_REPOSITORY, '-i', 'http', '-c', '4', '--duration', '2']);
    expect(http.code, http.stderr).toBe(0);
    expect(http.stderr).toMatch(/profiling identity_fp32 over HTTP at 4 calls in flight/);
    expect(Number(/\| handlers and infer pipeline \| ([\d.]+) \|/.exec(http.stdout)?.[1])).toBeGreaterThan(0);
    expect(Number(/\| grpc-js [^|]*\| ([\d.]+) \|/.exec(http.stdout)?.[1] ?? 0)).toBeLessThan(grpcJsPerCall / 10);
    expect(http.stdout).toMatch(/\d+ requests in [\d.]+ s \(\d+\/s\), 0 errors/);
    // A model the server does not have: the server's answer, not a stack.
    const unknown = await bench(['profile', '-m', 'nosuch', '--model-repository', TEST_REPOSITORY, '--duration', '1']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^fabriek bench: the server refused: NOT_FOUND: model 'nosuch' is not in the repository$/m);
    expect(unknown.stderr).not.toMatch(/\n\s+at /);
    // The same without `profile`: the plain bench asks the server why the model is not ready.
    const unknownPerf = await bench(['-m', 'nosuch', '--model-repository', TEST_REPOSITORY, '-p', '500', '-r', '1']);
    expect(unknownPerf.code).toBe(1);
    expect(unknownPerf.stderr).toMatch(/^fabriek bench: the server refused: NOT_FOUND: model 'nosuch' is not in the repository$/m);
    expect(unknownPerf.stderr).not.toMatch(/\n\s+at /);
    const bad = await bench(['profile', '--model-repository', TEST_REPOSITORY]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/profile: -m MODEL is required/);
    const badProtocol = await bench(['profile', '-m', 'identity_fp32', '--model-repository', TEST_REPOSITORY, '-i', 'h3']);
    expect(badProtocol.code).toBe(2);
    expect(badProtocol.stderr).toMatch(/-i\/--protocol: expected grpc or http, got 'h3'/);
  }, 120_000);

  it('exits 2 with a message for bad flags, an unknown model shape, or a file that is not a result', async () => {
    const noModel = await bench(['--concurrency-range', '1']);
    expect(noModel.code).toBe(2);
    expect(noModel.stderr).toMatch(/-m MODEL is required/);
    const shape = await bench(['-m', 'identity_uint8', '-u', gw.address, '-p', '100', '-r', '1', '--no-save']);
    expect(shape.code).toBe(2);
    expect(shape.stderr).toMatch(/input 'INPUT0' has variable dims \[-1\]: give them with --shape INPUT0:/);
    const notResult = join(dir, 'not-a-result.json');
    await writeFile(notResult, '{"hello": 1}');
    const cmp = await bench(['compare', notResult, notResult]);
    expect(cmp.code).toBe(2);
    expect(cmp.stderr).toMatch(/not a fabriek bench result/);
  }, 30_000);
});
