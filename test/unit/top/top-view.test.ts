import { describe, expect, it } from 'vitest';
import { parseExposition } from '../../../gateway/top/exposition.js';
import { bucketQuantile, topView } from '../../../gateway/top/top-view.js';
import { parseTopOptions } from '../../../gateway/top/top-cli.js';

describe('parseExposition', () => {
  it('reads names, escaped label values and special values, and skips comments and junk', () => {
    const samples = parseExposition(
      [
        '# HELP x help',
        '# TYPE x counter',
        'x 3',
        'y{a="1",b="q\\"uote\\\\ and\\nline"} 2.5 1700000000',
        'z_bucket{le="+Inf"} +Inf',
        'not a sample line',
        'w{a="unterminated} 1',
      ].join('\n'),
    );
    expect(samples).toEqual([
      { name: 'x', labels: {}, value: 3 },
      { name: 'y', labels: { a: '1', b: 'q"uote\\ and\nline' }, value: 2.5 },
      { name: 'z_bucket', labels: { le: '+Inf' }, value: Infinity },
    ]);
  });
});

describe('bucketQuantile', () => {
  it('interpolates within the bucket that holds the rank, as histogram_quantile does', () => {
    const b = new Map([
      [0.01, 50],
      [0.1, 90],
      [1, 100],
      [Infinity, 100],
    ]);
    expect(bucketQuantile(b, 0.5)).toBeCloseTo(0.01);
    expect(bucketQuantile(b, 0.99)).toBeCloseTo(0.1 + 0.9 * 0.9);
    expect(bucketQuantile(new Map(), 0.99)).toBeNaN();
  });
});

const scrape = (at: number, text: string) => ({ at, samples: parseExposition(text) });
const metrics = (ok: number, us: number, fails: number, tenantOk: number) => `
fabriek_workers{state="up"} 2
fabriek_workers{state="down"} 0
nv_inference_request_success{model="mlp",version="1"} ${ok}
nv_inference_request_failure{model="mlp",version="1",reason="REJECTED"} ${fails}
nv_inference_request_duration_us{model="mlp",version="1"} ${us}
nv_inference_queue_duration_us{model="mlp",version="1"} ${us / 4}
nv_inference_count{model="mlp",version="1"} ${ok}
nv_inference_exec_count{model="mlp",version="1"} ${ok / 4}
nv_inference_pending_request_count{model="mlp",version="1"} 3
fabriek_tenant_requests_total{tenant="acme",model="mlp",status="OK"} ${tenantOk}
fabriek_tenant_quota_refusals_total{tenant="acme",limit="requests"} ${fails}
fabriek_tenant_request_duration_seconds_bucket{tenant="acme",le="0.005"} ${tenantOk}
fabriek_tenant_request_duration_seconds_bucket{tenant="acme",le="+Inf"} ${tenantOk}
`;

describe('topView', () => {
  it('shows rates and averages over the interval between two scrapes', () => {
    const view = topView(scrape(0, metrics(1000, 2_000_000, 0, 1000)), scrape(2000, metrics(1400, 2_800_000, 10, 1400)), 'http://g/metrics');
    expect(view).toContain('workers: 2 up, 0 down');
    // 400 answers in 2 s, 800 ms over 400 answers, 200 ms of queue, 400 rows in 100 executions, 10 failures.
    expect(view).toMatch(/mlp\s+1\s+200\.0\s+5\.0\s+2\.00\s+0\.50\s+4\.0\s+3/);
    // Every answer under 5 ms: the p99 interpolates to 4.95 ms.
    expect(view).toMatch(/acme\s+200\.0\s+4\.9\s+5\.0/);
  });

  it('has no rates on the first scrape, and counts a restarted counter from zero', () => {
    expect(topView(undefined, scrape(0, metrics(10, 100, 0, 10)), 'g')).toMatch(/mlp\s+1\s+–\s+–/);
    expect(topView(scrape(0, metrics(1000, 2e6, 0, 1000)), scrape(1000, metrics(100, 2e5, 0, 100)), 'g')).toMatch(/mlp\s+1\s+100\.0/);
  });
});

describe('fabriek top options', () => {
  const usage = (m: string) => new Error(m);
  it('takes host:port, fills the path, and checks the interval', () => {
    expect(parseTopOptions(['--metrics-url', '127.0.0.1:9002'], usage)).toEqual({ url: 'http://127.0.0.1:9002/metrics', intervalMs: 2000, once: false });
    expect(parseTopOptions(['--interval-secs', '0.5', '--once'], usage)).toMatchObject({ intervalMs: 500, once: true });
    expect(() => parseTopOptions(['--interval-secs', '0'], usage)).toThrow("--interval-secs: expected a number from 0.2 to 3600, got '0'");
    expect(() => parseTopOptions(['--metrics-url', 'http://'], usage)).toThrow(/--metrics-url: expected a URL/);
  });
});
