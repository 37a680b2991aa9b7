import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { type TenantCall, TenantMetrics } from '../../../gateway/metrics/tenant-metrics.js';

const call = (over: Partial<TenantCall>): TenantCall => ({
  tenant: 'a',
  model: 'm',
  status: 'OK',
  items: 2,
  computeNs: 5e8,
  queueNs: 2.5e8,
  seconds: 0.01,
  infer: true,
  ...over,
});

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('TenantMetrics', () => {
  it('adds the calls summed since the last scrape, per tenant, model and status, exactly once', async () => {
    const registry = new Registry();
    const metrics = new TenantMetrics(registry);
    metrics.record(call({}));
    metrics.record(call({}));
    metrics.record(call({ tenant: 'b', status: 'RESOURCE_EXHAUSTED' }));
    metrics.record(call({ infer: false, items: 0, computeNs: 0, queueNs: 0 }));
    let text = await registry.metrics();
    expect(sample(text, 'fabriek_tenant_requests_total{tenant="a",model="m",status="OK"}')).toBe(3);
    expect(sample(text, 'fabriek_tenant_requests_total{tenant="b",model="m",status="RESOURCE_EXHAUSTED"}')).toBe(1);
    // Only answered inferences count rows, compute and latency.
    expect(sample(text, 'fabriek_tenant_batch_items_total{tenant="a",model="m"}')).toBe(4);
    expect(sample(text, 'fabriek_tenant_compute_seconds_total{tenant="a",model="m"}')).toBe(1);
    expect(sample(text, 'fabriek_tenant_queue_seconds_total{tenant="a",model="m"}')).toBe(0.5);
    expect(sample(text, 'fabriek_tenant_batch_items_total{tenant="b",model="m"}')).toBeUndefined();
    expect(sample(text, 'fabriek_tenant_request_duration_seconds_count{tenant="a"}')).toBe(2);
    // A second scrape with nothing new shows the same totals; new calls add to them.
    text = await registry.metrics();
    expect(sample(text, 'fabriek_tenant_requests_total{tenant="a",model="m",status="OK"}')).toBe(3);
    metrics.record(call({ items: 1 }));
    const json = await registry.getMetricsAsJSON();
    const items = json.find((m) => m.name === 'fabriek_tenant_batch_items_total')?.values.find((v) => v.labels.tenant === 'a');
    expect(items?.value).toBe(5);
  });
});
