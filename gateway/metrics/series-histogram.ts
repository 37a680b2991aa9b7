import { type Aggregator, Histogram, type HistogramConfiguration, type LabelValues } from 'prom-client';

// A histogram observed on every request. prom-client's labelled observe turns
// the labels into a key (names sorted, values joined) and checks them at
// every call: three of them per request were about 3 µs of a gateway's CPU
// on a small model. Here each series is held by whoever observes it
// (VersionMetrics holds its version's), so an observation is a bucket scan
// and three additions.

/** One labelled series of a SeriesHistogram. */
export class HistogramSeries {
  /** Observations per bucket (not cumulative), the last one past every bound (+Inf). */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<LabelValues<string>>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    // As Prometheus: a bucket counts the values up to and including its bound.
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

/**
 * A prom-client Histogram whose series live in their holders (`series`).
 * Scrapes, the text format and cluster aggregation (--gateway-processes) see
 * what prom-client's own Histogram would give for the same observations.
 * Observe through a series on a hot path; `observe(labels, value)` and
 * `startTimer` reach the same series (a label lookup each), and `labels()`
 * is refused.
 */
export class SeriesHistogram<T extends string> extends Histogram<T> {
  readonly #config: HistogramConfiguration<T>;
  readonly #bounds: readonly number[];
  readonly #names: readonly T[];
  readonly #series = new Map<string, HistogramSeries>();

  constructor(configuration: HistogramConfiguration<T> & { readonly buckets: number[]; readonly labelNames: readonly T[] }) {
    super(configuration);
    this.#config = configuration;
    this.#bounds = [...configuration.buckets].sort((a, b) => a - b);
    this.#names = configuration.labelNames;
    // prom-client's constructor sets its observe on the instance, into a store this class's scrape does not read:
    // replaced, so that an observation by labels (startTimer's too) is not silently lost.
    this.observe = ((labels: LabelValues<T> | number, value?: number): void => {
      const [l, v] = typeof labels === 'number' ? [{}, labels] : [labels, value];
      if (typeof v !== 'number' || Number.isNaN(v)) throw new TypeError(`${configuration.name}: the value to observe is not a number: ${String(v)}`);
      this.series(l).observe(v);
    }) as Histogram<T>['observe'];
  }

  /** Refused: prom-client's labelled child would observe into a store the scrape does not read. Use `series`. */
  override labels(..._values: unknown[]): never {
    throw new Error(`${this.#config.name}: labels() is not supported by a SeriesHistogram; use series(labels)`);
  }

  /** The series for `labels`, at 0 from now on until removed; the same object for the same labels. */
  series(labels: LabelValues<T>): HistogramSeries {
    const key = this.#key(labels);
    let series = this.#series.get(key);
    if (series === undefined) this.#series.set(key, (series = new HistogramSeries({ ...labels }, this.#bounds)));
    return series;
  }

  override zero(labels: LabelValues<T>): void {
    const series = this.series(labels);
    series.counts.fill(0);
    series.sum = 0;
    series.count = 0;
  }

  /** Drops a series, by its labels or its label values in labelNames' order; a holder's series stops counting. */
  override remove(...args: unknown[]): void {
    const [first] = args;
    if (typeof first === 'object' && first !== null) {
      this.#series.delete(this.#key(first as LabelValues<T>));
      return;
    }
    const labels: LabelValues<T> = {};
    this.#names.forEach((name, i) => {
      if (args[i] !== undefined) labels[name] = String(args[i]);
    });
    this.#series.delete(this.#key(labels));
  }

  override reset(): void {
    // prom-client's constructor calls reset() before this class's fields exist.
    if (#series in this) this.#series.clear();
  }

  /**
   * The series in prom-client's own scrape shape (bucket labels apart from
   * the series' shared ones). prom-client's registry reads this for the text
   * format, and Histogram.get(), inherited, turns it into the JSON the
   * cluster aggregation sends between processes.
   */
  getForPromString(): Promise<ScrapeData> {
    const values: ScrapeValue[] = [];
    const { name, help, aggregator = 'sum' } = this.#config;
    const bucket = `${name}_bucket`;
    for (const s of this.#series.values()) {
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += s.counts[i] as number;
        values.push({ labels: { le }, sharedLabels: s.labels, value: cumulative, metricName: bucket });
      });
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${name}_sum` });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${name}_count` });
    }
    return Promise.resolve({ name, help, type: 'histogram', values, aggregator });
  }

  #key(labels: LabelValues<T>): string {
    const names = this.#names;
    // One label (a tenant): its value is the key, nothing built per call.
    if (names.length === 1) return String(labels[names[0] as T] ?? '');
    return names.map((n) => String(labels[n] ?? '')).join('\u0000');
  }
}

/** One line of a scrape, as prom-client's Histogram gives it before its labels are merged. */
interface ScrapeValue {
  readonly labels: { le?: number | '+Inf' };
  /** The series' labels, shared by its lines: prom-client merges them into each line's own `labels`. */
  readonly sharedLabels: Readonly<LabelValues<string>>;
  readonly value: number;
  readonly metricName: string;
}

interface ScrapeData {
  readonly name: string;
  readonly help: string;
  readonly type: 'histogram';
  readonly values: ScrapeValue[];
  readonly aggregator: Aggregator;
}
