#!/usr/bin/env node
import { type ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { parseArgs } from 'node:util';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { describeRun, runInfo, saveRun } from '../history.js';
import { latencyHistogram, recordUs, summarize } from '../load/histogram.js';
import { mdTable, ms, num } from '../report/format.js';
import { addSubRequest, isExpectedSum } from './add-sub.js';
import { startCluster } from './cluster.js';

// Issue #6's fault benchmark: a worker is killed (SIGKILL) at a known point
// under closed-loop load through two gateways, and we count what happened to
// every request: lost (never answered), duplicated (answered twice, or the
// servers counted more answers than the client got), failed, and how long
// until the remaining workers carry the load.

const USAGE = `Usage: npm run bench:fault -- [options]
  --workers N        registered workers (default 3)
  --gateways N       gateways, each with --workers 0 (default 2)
  --concurrency N    requests in flight (default 16)
  --duration S       whole run (default 12)
  --kill-at S        when worker w1 is killed with SIGKILL (default 5)
  --ttl S            workers' registry lease (default 3)
`;

interface Sample {
  readonly sentMs: number;
  readonly doneMs: number;
  readonly ok: boolean;
  readonly code: string;
}

const MODEL = 'add_sub';
const BUCKET_MS = 100;

async function servedCount(clients: readonly InferenceGrpcClient[]): Promise<number> {
  let n = 0;
  for (const c of clients) {
    const s = await c.modelStatistics(MODEL);
    for (const m of s.modelStats) n += Number(m.inferenceStats?.success?.count ?? 0n) + Number(m.inferenceStats?.fail?.count ?? 0n);
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      workers: { type: 'string', default: '3' },
      gateways: { type: 'string', default: '2' },
      concurrency: { type: 'string', default: '16' },
      duration: { type: 'string', default: '12' },
      'kill-at': { type: 'string', default: '5' },
      ttl: { type: 'string', default: '3' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const o = {
    workers: Number(values.workers),
    gateways: Number(values.gateways),
    concurrency: Number(values.concurrency),
    durationMs: Number(values.duration) * 1000,
    killAtMs: Number(values['kill-at']) * 1000,
    ttlSecs: Number(values.ttl),
  };
  if (![o.workers, o.gateways, o.concurrency, o.durationMs, o.killAtMs, o.ttlSecs].every((n) => Number.isFinite(n) && n > 0) || o.workers < 2 || o.killAtMs >= o.durationMs) {
    process.stderr.write(`bad options (need ≥ 2 workers and kill-at < duration)\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const info = runInfo();
  process.stdout.write(`fault benchmark: ${o.workers} workers, ${o.gateways} gateways, c=${o.concurrency}; SIGKILL w1 at ${o.killAtMs / 1000} s of ${o.durationMs / 1000} s\n`);
  const cluster = await startCluster({ workers: o.workers, gateways: o.gateways, ttlSecs: o.ttlSecs, model: MODEL });
  const clients = cluster.gateways.map((g) => new InferenceGrpcClient(g.address));
  const redis = new Redis(cluster.redisUrl);
  try {
    // Both gateways see every worker before the clock starts.
    for (const c of clients) {
      const until = Date.now() + 20_000;
      while (!(await c.modelReady(MODEL).catch(() => false)) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 1_500));
    const servedBefore = await servedCount(clients);

    const samples: Sample[] = [];
    const answers = new Map<string, number>();
    let seq = 0;
    let sent = 0;
    let wrong = 0;
    const t0 = performance.now();
    const stopAt = t0 + o.durationMs;
    const loop = async (): Promise<void> => {
      while (performance.now() < stopAt) {
        const n = seq++;
        const { request: req, expected } = addSubRequest(n);
        const client = clients[n % clients.length] as InferenceGrpcClient;
        const sentMs = performance.now() - t0;
        sent++;
        try {
          const res = await client.modelInfer(req, { timeoutMs: 15_000 });
          answers.set(res.id, (answers.get(res.id) ?? 0) + 1);
          const right = res.id === req.id && isExpectedSum(res.rawOutputContents[0], expected);
          if (!right) wrong++;
          samples.push({ sentMs, doneMs: performance.now() - t0, ok: right, code: right ? 'OK' : 'WRONG_ANSWER' });
        } catch (error) {
          const e = error as ServiceError;
          samples.push({ sentMs, doneMs: performance.now() - t0, ok: false, code: GrpcStatus[e.code] ?? String(e.code) });
        }
      }
    };
    const loops = Promise.all(Array.from({ length: o.concurrency }, () => loop()));

    // The kill, at a known point.
    await new Promise((r) => setTimeout(r, o.killAtMs));
    const victim = cluster.workers.get('w1');
    const killMs = performance.now() - t0;
    if (victim) process.kill(victim.pid, 'SIGKILL');
    let leftRegistryMs = NaN;
    const watchRegistry = (async () => {
      while (performance.now() < stopAt + 5_000) {
        if ((await redis.exists('fabriek:worker:w1')) === 0) {
          leftRegistryMs = performance.now() - t0 - killMs;
          return;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    // Lost = sent but never answered: wait for the loops well past every deadline.
    const settled = await Promise.race([loops.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), o.durationMs + 20_000))]);
    await watchRegistry;
    const servedAfter = await servedCount(clients);

    const answered = samples.length;
    const lost = sent - answered;
    const duplicatedIds = [...answers.values()].filter((n) => n > 1).length;
    const serverExtra = servedAfter - servedBefore - answered;
    const failed = samples.filter((s) => !s.ok);
    const failures: Record<string, number> = {};
    for (const f of failed) failures[f.code] = (failures[f.code] ?? 0) + 1;

    // Throughput per 100 ms; recovery = from the kill until a 500 ms window
    // after it completes as many requests as 90 % of the second before it did.
    const buckets = new Array<number>(Math.ceil(o.durationMs / BUCKET_MS) + 1).fill(0);
    for (const s of samples) if (s.ok) buckets[Math.min(buckets.length - 1, Math.floor(s.doneMs / BUCKET_MS))]! += 1;
    const killBucket = Math.floor(killMs / BUCKET_MS);
    const rate = (from: number, n: number): number => buckets.slice(from, from + n).reduce((a, b) => a + b, 0) / ((n * BUCKET_MS) / 1000);
    const before = rate(killBucket - 10, 10);
    let recoveredMs = NaN;
    for (let b = killBucket; b + 5 <= buckets.length - 1; b++) {
      if (rate(b, 5) >= 0.9 * before) {
        recoveredMs = (b + 5) * BUCKET_MS - killMs;
        break;
      }
    }
    const after = rate(killBucket + 10, Math.max(1, buckets.length - 1 - killBucket - 10));
    const hBefore = latencyHistogram();
    const hAround = latencyHistogram();
    for (const s of samples) {
      if (s.doneMs < killMs) recordUs(hBefore, (s.doneMs - s.sentMs) * 1000);
      else if (s.sentMs < killMs + 1_000) recordUs(hAround, (s.doneMs - s.sentMs) * 1000);
    }
    const lb = summarize(hBefore);
    const la = summarize(hAround);

    const rows: string[][] = [
      ['requests sent', String(sent)],
      ['answered', String(answered)],
      ['lost (never answered)', String(lost) + (settled ? '' : ' (loops did not settle)')],
      ['duplicated (same id answered twice)', String(duplicatedIds)],
      ['server-counted answers minus client answers', String(serverExtra)],
      ['failed', `${failed.length} (${num((100 * failed.length) / Math.max(1, answered), 2)} %)${failed.length ? ': ' + JSON.stringify(failures) : ''}`],
      ['wrong answers', String(wrong)],
      ['throughput in the second before the kill', `${num(before)} req/s`],
      ['throughput after the kill (from +1 s)', `${num(after)} req/s`],
      ['time until the remaining workers carry ≥ 90 % of the load (500 ms windows)', Number.isFinite(recoveredMs) ? `${num(recoveredMs)} ms` : 'not within the run'],
      ['time until the killed worker left the registry', Number.isFinite(leftRegistryMs) ? `${num(leftRegistryMs)} ms (TTL ${o.ttlSecs} s)` : 'not within the run'],
      ['latency before the kill: p50 / p99 / max', `${ms(lb.p50Us)} / ${ms(lb.p99Us)} / ${ms(lb.maxUs)} ms`],
      ['latency of requests sent in the first second after: p50 / p99 / max', `${ms(la.p50Us)} / ${ms(la.p99Us)} / ${ms(la.maxUs)} ms`],
    ];
    const md =
      `# Fault benchmark (issue #6)\n\n${describeRun(info)}\n\n` +
      `${o.workers} \`fabriek worker --registry\` processes, ${o.gateways} gateways (\`--workers 0\`), one redis-server, all on this machine; ` +
      `model ${MODEL}, closed loop c=${o.concurrency} round robin over the gateways for ${o.durationMs / 1000} s; worker w1 killed with SIGKILL at ${num(killMs / 1000, 2)} s.\n\n` +
      mdTable(['', 'measured'], rows) +
      '\n';
    process.stdout.write(`\n${md}`);
    const paths = saveRun(
      {
        format: 'fabriek-bench/1',
        kind: 'fault',
        info,
        options: { ...o, sent, answered, lost, duplicatedIds, serverExtra, failures, wrong, latencyBefore: lb, latencyAfterKill: la, buckets },
        levels: [],
        metrics: [
          { id: 'lost', label: 'requests lost', value: lost, unit: 'requests', better: 'lower' },
          { id: 'duplicated', label: 'requests answered twice', value: duplicatedIds + Math.max(0, serverExtra), unit: 'requests', better: 'lower' },
          { id: 'failed', label: 'requests failed', value: failed.length, unit: 'requests', better: 'lower' },
          { id: 'recovery', label: 'time until the remaining workers carry the load', value: recoveredMs, unit: 'ms', better: 'lower' },
          { id: 'registry-leave', label: 'time until the killed worker left the registry', value: leftRegistryMs, unit: 'ms', better: 'lower' },
          { id: 'throughput-after', label: 'throughput after the kill', value: after, unit: 'req/s', better: 'higher' },
        ],
      },
      { markdown: md },
      { name: 'fault', latest: 'latest-fault' },
    );
    process.stdout.write(`\nresults: ${paths.join(', ')}\n`);
  } finally {
    redis.disconnect();
    for (const c of clients) c.close();
    await cluster.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`fault benchmark failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
