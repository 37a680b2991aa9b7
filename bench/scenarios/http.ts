import autocannon from 'autocannon';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildModels } from '../../models/build/test-models.js';
import { GATEWAY_CLI, removeAtExit, startChildServer } from '../load/child-server.js';
import { mdTable, num } from '../report/format.js';

// The REST endpoint under autocannon: POST /v2/models/identity_fp32/infer
// with a JSON body, at 1 and 64 connections. Afterwards the server's
// Prometheus counters must equal the 2xx answers autocannon counted: the
// check that /metrics tells the truth under load.

const MODEL = 'identity_fp32';
const BODY = JSON.stringify({
  inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [1, 16], data: Array.from({ length: 16 }, (_, i) => i / 4) }],
});

export interface HttpOptions {
  readonly concurrencies: readonly number[];
  readonly durationMs: number;
  readonly log: (line: string) => void;
}

export interface HttpLevel {
  readonly connections: number;
  readonly requestsPerSecond: number;
  readonly latencyMs: { readonly avg: number; readonly p50: number; readonly p90: number; readonly p99: number };
  readonly ok: number;
  readonly non2xx: number;
  readonly errors: number;
}

function counter(metrics: string, name: string): number {
  const line = metrics.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`model="${MODEL}"`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

export async function runHttp(o: HttpOptions): Promise<{ json: unknown; markdown: string; ok: boolean }> {
  const repo = await mkdtemp(join(tmpdir(), 'fabriek-bench-http-'));
  const forget = removeAtExit(repo);
  await buildModels(repo, [MODEL]);
  const server = await startChildServer(
    GATEWAY_CLI,
    ['serve', '--model-repository', repo, '--grpc-address', '127.0.0.1', '--grpc-port', '0', '--http-address', '127.0.0.1', '--http-port', '0', '--metrics-port', '0', '--log-level', 'warn'],
    / HTTP on 127\.0\.0\.1:(\d+)/,
  );
  const metricsPort = Number(/metrics on 127\.0\.0\.1:(\d+)/.exec(server.readyLine)?.[1]);
  const levels: HttpLevel[] = [];
  let sent2xx = 0;
  try {
    for (const connections of o.concurrencies) {
      const r = await autocannon({
        url: `http://${server.address}/v2/models/${MODEL}/infer`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: BODY,
        connections,
        // A fixed count, not a duration: stopping on time would drop the
        // connections with requests in flight, which the server rightly
        // counts as cancelled, and the counts could not be compared.
        amount: Math.round(((connections === 1 ? 400 : 1000) * o.durationMs) / 1000),
      });
      sent2xx += r['2xx'];
      levels.push({
        connections,
        requestsPerSecond: (r['2xx'] + r.non2xx) / r.duration,
        latencyMs: { avg: r.latency.average, p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99 },
        ok: r['2xx'],
        non2xx: r.non2xx,
        errors: r.errors + r.timeouts,
      });
      o.log(`  http c=${connections}: ${num((r['2xx'] + r.non2xx) / r.duration)} req/s, p50 ${r.latency.p50} ms, non-2xx ${r.non2xx}, errors ${r.errors}`);
    }
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const success = counter(text, 'nv_inference_request_success');
    const failure = metricsFailures(text);
    const countsMatch = success === sent2xx && failure === 0;
    const ok = countsMatch && levels.every((l) => l.non2xx === 0 && l.errors === 0);
    const table = mdTable(
      ['connections', 'req/s', 'avg ms', 'p50 ms', 'p90 ms', 'p99 ms', '2xx', 'non-2xx', 'errors'],
      levels.map((l) => [String(l.connections), num(l.requestsPerSecond), num(l.latencyMs.avg, 2), String(l.latencyMs.p50), String(l.latencyMs.p90), String(l.latencyMs.p99), String(l.ok), String(l.non2xx), String(l.errors)]),
    );
    const markdown =
      `autocannon on \`POST /v2/models/${MODEL}/infer\` (JSON body, FP32 [1,16]), a fixed number of requests per level (about ${o.durationMs / 1000} s).\n\n${table}\n\n` +
      `/metrics after the run: nv_inference_request_success = ${success}, failures = ${failure}; autocannon counted ${sent2xx} 2xx answers: ${countsMatch ? '**equal**' : '**DIFFERENT**'}.\n`;
    return { json: { model: MODEL, levels, metrics: { success, failure, sent2xx } }, markdown, ok };
  } finally {
    await server.stop();
    await rm(repo, { recursive: true, force: true });
    forget();
  }
}

/** Sum of nv_inference_request_failure over every reason, for the model. */
function metricsFailures(metrics: string): number {
  let sum = 0;
  for (const l of metrics.split('\n')) {
    if (l.startsWith('nv_inference_request_failure{') && l.includes(`model="${MODEL}"`)) sum += Number(l.slice(l.lastIndexOf(' ') + 1));
  }
  return sum;
}
