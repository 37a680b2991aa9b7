// SeriesHistogram must scrape exactly as prom-client's Histogram does for the
// same observations (text format, JSON, cluster aggregation), while each
// series is observed through the object its holder keeps.

import { AggregatorRegistry, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { SeriesHistogram } from '../../gateway/metrics/series-histogram.js';

const BUCKETS = [0.001, 0.01, 0.1, 1];
const LABELS = ['model', 'version'] as const;
type L = (typeof LABELS)[number];

// Values on the bounds, between them, below the first and past the last.
const OBSERVED: ReadonlyArray<readonly [Record<L, string>, number]> = [
  [{ model: 'a', version: '1' }, 0],
  [{ model: 'a', version: '1' }, 0.001],
  [{ model: 'a', version: '1' }, 0.0011],
  [{ model: 'a', version: '1' }, 0.1],
  [{ model: 'a', version: '1' }, 7],
  [{ model: 'b', version: '2' }, 0.05],
  [{ model: 'b', version: '2' }, 0.5],
];

function pair(): { ours: SeriesHistogram<L>; theirs: Histogram<L>; oursRegistry: Registry; theirsRegistry: Registry } {
  const oursRegistry = new Registry();
  const theirsRegistry = new Registry();
  const config = { name: 'x_seconds', help: 'help text', labelNames: LABELS, buckets: BUCKETS };
  const ours = new SeriesHistogram<L>({ ...config, registers: [oursRegistry] });
  const theirs = new Histogram<L>({ ...config, registers: [theirsRegistry] });
  return { ours, theirs, oursRegistry, theirsRegistry };
}

describe('SeriesHistogram', () => {
  it('scrapes as prom-client does: every bucket, sum and count, in the same text', async () => {
    const { ours, theirs, oursRegistry, theirsRegistry } = pair();
    for (const [labels, value] of OBSERVED) {
      ours.series(labels).observe(value);
      theirs.observe(labels, value);
    }
    expect(await oursRegistry.metrics()).toBe(await theirsRegistry.metrics());
    expect(await oursRegistry.metrics()).toContain('x_seconds_bucket{le="0.001",model="a",version="1"} 2');
  });

  it('shows a series at 0 from when it is taken, hands out the same series for the same labels, and drops it on remove', async () => {
    const { ours, theirs, oursRegistry, theirsRegistry } = pair();
    const a = ours.series({ model: 'a', version: '1' });
    theirs.zero({ model: 'a', version: '1' });
    expect(await oursRegistry.metrics()).toBe(await theirsRegistry.metrics());
    expect(ours.series({ version: '1', model: 'a' })).toBe(a);
    ours.series({ model: 'b', version: '1' }).observe(2);
    ours.remove({ model: 'b', version: '1' });
    ours.remove('a', '1');
    expect(await oursRegistry.metrics()).not.toContain('model="');
    // A holder of a removed series counts into nothing the scrape sees; a new one starts at 0.
    a.observe(1);
    expect(ours.series({ model: 'a', version: '1' }).count).toBe(0);
  });

  it('zero and reset clear what was observed', async () => {
    const { ours, oursRegistry } = pair();
    const a = ours.series({ model: 'a', version: '1' });
    a.observe(0.5);
    ours.zero({ model: 'a', version: '1' });
    expect(await oursRegistry.metrics()).toContain('x_seconds_count{model="a",version="1"} 0');
    ours.reset();
    expect(await oursRegistry.metrics()).not.toContain('model="a"');
  });

  it('aggregates over gateway processes as prom-client histograms do (sums per bucket)', async () => {
    const one = pair();
    const two = pair();
    for (const [labels, value] of OBSERVED) {
      one.ours.series(labels).observe(value);
      one.theirs.observe(labels, value);
      two.ours.series(labels).observe(value * 2);
      two.theirs.observe(labels, value * 2);
    }
    const ours = AggregatorRegistry.aggregate([await one.oursRegistry.getMetricsAsJSON(), await two.oursRegistry.getMetricsAsJSON()]);
    const theirs = AggregatorRegistry.aggregate([await one.theirsRegistry.getMetricsAsJSON(), await two.theirsRegistry.getMetricsAsJSON()]);
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.metrics()).toContain('x_seconds_count{model="a",version="1"} 10');
  });

  it('keys a one-label histogram by its value alone, and scrapes it as prom-client does', async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const config = { name: 't_seconds', help: 'by tenant', labelNames: ['tenant'] as const, buckets: BUCKETS };
    const h = new SeriesHistogram<'tenant'>({ ...config, registers: [ours] });
    const p = new Histogram<'tenant'>({ ...config, registers: [theirs] });
    expect(h.series({ tenant: 'a' })).toBe(h.series({ tenant: 'a' }));
    expect(h.series({ tenant: 'a' })).not.toBe(h.series({ tenant: '' }));
    for (const [tenant, v] of [['a', 0.01], ['', 0.5], ['a', 3]] as const) {
      h.series({ tenant }).observe(v);
      p.observe({ tenant }, v);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });
  it('observe by labels and startTimer reach the scrape as prom-client\'s do; labels() and a value that is not a number are refused', async () => {
    const { ours, theirs, oursRegistry, theirsRegistry } = pair();
    for (const [labels, value] of OBSERVED) {
      ours.observe(labels, value);
      theirs.observe(labels, value);
    }
    expect(await oursRegistry.metrics()).toBe(await theirsRegistry.metrics());
    const before = ours.series({ model: 'c', version: '1' }).count;
    ours.startTimer({ model: 'c', version: '1' })();
    expect(ours.series({ model: 'c', version: '1' }).count).toBe(before + 1);
    expect(() => ours.labels('a', '1')).toThrow(/labels\(\) is not supported by a SeriesHistogram; use series\(labels\)/);
    expect(() => ours.observe({ model: 'a', version: '1' }, Number.NaN)).toThrow(/x_seconds: the value to observe is not a number: NaN/);
    expect(ours.series({ model: 'a', version: '1' }).count).toBe(5);
  });
});
