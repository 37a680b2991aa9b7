import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferenceGrpcClient } from '../../client/grpc-client.js';
import { hashKey } from '../../gateway/tenants/key-hash.js';
import { zerosRequest } from '../helpers/call-outcome.js';
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.js';
import { failureSummary, startLoad } from '../helpers/load-driver.js';
import { waitFor } from '../helpers/processes.js';
import { type PrometheusServer, promtool, startPrometheus } from '../helpers/prometheus-server.js';
import { makeTestPki, type TestPki } from '../helpers/test-certs.js';

// The dashboard (deploy/grafana/fabriek.json) and the alert rules
// (deploy/prometheus/alerts.yml) checked against the real thing: promtool
// checks and unit-tests the rules, Debian's prometheus scrapes a real
// `fabriek serve` every second while it serves a short load (and refuses a
// tenant over its quota), and every query of the dashboard and of the rules
// must return data from that Prometheus. A metric renamed, a label dropped or
// a typo in PromQL fails here, not in front of the on-call person. The
// gateway runs what has panels of its own: the response cache, on-demand
// loading and an SLO-mode model (add_sub with batching_slo_ms), and serves
// HTTP/REST and /metrics over TLS (the certificate panels and alerts), which
// Prometheus scrapes trusting the test CA.

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DASHBOARD = join(ROOT, 'deploy/grafana/fabriek.json');
const RULES = join(ROOT, 'deploy/prometheus/alerts.yml');
const KEY = 'observability-key-0123456789';
const TIGHT_KEY = 'observability-tight-0123456789';

interface Dashboard {
  panels: { title: string; targets?: { expr: string }[] }[];
  templating: { list: { name: string; type: string; query: unknown }[] };
}
interface RuleFile {
  groups: { rules: { alert?: string; record?: string; expr: string }[] }[];
}

/** A Grafana expression as Prometheus takes it: the variables set to "all", the rate window to 1m. */
function resolveGrafana(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$__interval', '1m').replace(/\$\{?(model|tenant|job)\}?/g, '.*');
}

/**
 * An alert's expression with its final threshold made a `bool` comparison,
 * so it returns a 0/1 sample wherever the watched series exist instead of
 * nothing while all is well: "returns data" then means the series are there.
 */
function boolOfAlert(expr: string): string {
  const m = /^([\s\S]*?)\s*(==|!=|>=|<=|>|<)\s*(-?[\d.e]+)\s*$/.exec(expr.trim());
  if (!m) throw new Error(`alert expression without a final threshold comparison: ${expr}`);
  return `${m[1]} ${m[2]} bool ${m[3]}`;
}

describe('Grafana dashboard and Prometheus alert rules against a real Prometheus', () => {
  let dir: string;
  let gateway: GatewayProcess;
  let prometheus: PrometheusServer;
  let pki: TestPki;
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
  const rules = parseYaml(readFileSync(RULES, 'utf8')) as RuleFile;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fabriek-observability-'));
    pki = await makeTestPki();
    cpSync(join(ROOT, 'models/examples/add_sub'), join(dir, 'models', 'add_sub'), { recursive: true });
    // A stateful model, for the sequence panels and alert.
    cpSync(join(ROOT, 'models/examples/running_sum'), join(dir, 'models', 'running_sum'), { recursive: true });
    const config = join(dir, 'models', 'add_sub', 'config.pbtxt');
    writeFileSync(
      config,
      `${readFileSync(config, 'utf8')}response_cache { enable: true }\nparameters { key: "batching_slo_ms" value { string_value: "200" } }\n`,
    );
    writeFileSync(
      join(dir, 'tenants.yaml'),
      [
        'tenants:',
        '  team:',
        `    keys: ["${hashKey(KEY)}"]`,
        '    models: ["*"]',
        '  tight:',
        `    keys: ["${hashKey(TIGHT_KEY)}"]`,
        '    models: ["*"]',
        '    quotas: { requests_per_second: 0.001, request_burst: 2 }',
        '',
      ].join('\n'),
    );
    gateway = await startGateway([
      '--model-repository',
      join(dir, 'models'),
      '--workers',
      '1',
      '--tenants',
      join(dir, 'tenants.yaml'),
      '--cache-config',
      'local,size=1048576',
      '--model-control-mode',
      'on-demand',
      '--model-memory-budget',
      '4models',
      '--http-use-ssl',
      'true',
      '--http-server-cert',
      pki.server.cert,
      '--http-server-key',
      pki.server.key,
      '--log-level',
      'warn',
    ]);
    const metricsPort = /metrics on [^ ;]+:(\d+)/.exec(gateway.readyLine)?.[1];
    prometheus = await startPrometheus([`127.0.0.1:${metricsPort}`], [RULES], { caFile: pki.ca });
  }, 120_000);

  afterAll(async () => {
    await gateway?.stop('SIGKILL');
    await prometheus?.close();
    await pki?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('promtool checks the rules and their unit tests pass', async () => {
    expect(await promtool(['check', 'rules', RULES])).toContain('SUCCESS: 12 rules found');
    expect(await promtool(['test', 'rules', 'alerts.test.yml'], join(ROOT, 'deploy/prometheus'))).toContain('SUCCESS');
  });

  it('every dashboard and alert query returns data from Prometheus scraping fabriek serve under load', async () => {
    const client = new InferenceGrpcClient(gateway.address, { metadata: { authorization: `Bearer ${KEY}` } });
    const load = startLoad(() => client, 4);
    // A tenant over its quota, so refusals are counted too.
    const tight = zerosRequest('add_sub', ['INPUT0', 'INPUT1'], 16);
    const refused: string[] = [];
    for (let i = 0; i < 6; i++) {
      await gateway.client.modelInfer(tight, { metadata: { authorization: `Bearer ${TIGHT_KEY}` } }).catch((e: ServiceError) => refused.push(GrpcStatus[e.code] ?? '?'));
    }
    expect(refused).toEqual(['RESOURCE_EXHAUSTED', 'RESOURCE_EXHAUSTED', 'RESOURCE_EXHAUSTED', 'RESOURCE_EXHAUSTED']);
    // A sequence left open (it loads running_sum on demand), so the sequence gauges exist.
    const one = { ...zerosRequest('running_sum', ['INPUT'], 1), parameters: { sequence_id: { parameterChoice: { $case: 'int64Param' as const, value: 77n } }, sequence_start: { parameterChoice: { $case: 'boolParam' as const, value: true } } } };
    await gateway.client.modelInfer(one, { metadata: { authorization: `Bearer ${KEY}` } });
    // Enough scrapes that rates and derivatives over 1m have points: 6 while the load runs.
    await waitFor(async () => {
      const r = await prometheus.query('count_over_time(up{job="fabriek"}[1m])');
      return r.ok && Number((r.result[0] as { value?: [number, string] } | undefined)?.value?.[1] ?? 0) >= 6;
    }, 30_000, 'six scrapes of the gateway');
    const outcomes = await load.stop();
    client.close();
    expect(failureSummary(outcomes)).toEqual({});

    const queries: { where: string; expr: string }[] = [];
    for (const panel of dashboard.panels) for (const t of panel.targets ?? []) queries.push({ where: `panel '${panel.title}'`, expr: resolveGrafana(t.expr) });
    for (const group of rules.groups) for (const rule of group.rules) queries.push({ where: `rule ${rule.alert ?? rule.record}`, expr: rule.alert ? boolOfAlert(rule.expr) : rule.expr });
    expect(queries.length).toBeGreaterThan(30);
    const empty: string[] = [];
    for (const q of queries) {
      const r = await prometheus.query(q.expr);
      if (!r.ok) empty.push(`${q.where}: error ${r.error}: ${q.expr}`);
      else if (r.result.length === 0) empty.push(`${q.where}: no data: ${q.expr}`);
    }
    expect(empty).toEqual([]);

    // The variables' label_values(metric, label) find values too.
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
      const m = /^label_values\((\w+), (\w+)\)$/.exec((v.query as { query: string }).query);
      expect(m, v.name).not.toBeNull();
      const body = (await prometheus.get(`/api/v1/label/${m?.[2]}/values?match[]=${m?.[1]}`)) as { data: string[] };
      expect(body.data.length, `variable ${v.name}`).toBeGreaterThan(0);
    }
    // Prometheus loaded and evaluates every rule without error.
    const loaded = (await prometheus.get('/api/v1/rules')) as { data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] } };
    const health = loaded.data.groups.flatMap((g) => g.rules.map((r) => `${r.name}: ${r.health}${r.lastError ? ` ${r.lastError}` : ''}`));
    expect(health).toEqual(rules.groups.flatMap((g) => g.rules.map((r) => `${r.alert ?? r.record}: ok`)));
  }, 90_000);

  it('boolOfAlert turns the final threshold into a bool comparison, and refuses an expression without one', () => {
    expect(boolOfAlert('sum(x) > 0')).toBe('sum(x) > bool 0');
    expect(boolOfAlert('a / clamp_min(b, 1e-9)\n  > 0.05\n')).toBe('a / clamp_min(b, 1e-9) > bool 0.05');
    expect(boolOfAlert('up{job="fabriek"} == 0')).toBe('up{job="fabriek"} == bool 0');
    expect(() => boolOfAlert('absent(up)')).toThrow('without a final threshold');
  });
});
