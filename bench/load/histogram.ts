import * as hdr from 'hdr-histogram-js';

/** Client latency in µs, read from an HDR histogram (3 significant digits). */
export interface LatencySummary {
  readonly count: number;
  readonly avgUs: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p95Us: number;
  readonly p99Us: number;
  readonly maxUs: number;
  /** The percentile asked for with --percentile, when one was. */
  readonly pxUs?: number;
}

/** An HDR histogram of µs values from 1 µs up to a minute (auto-resizes beyond). */
export function latencyHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
}

export function recordUs(h: hdr.Histogram, us: number): void {
  h.recordValue(Math.max(1, Math.round(us)));
}

/** The histograms added into a new one (the inputs are left as they are). */
export function mergeHistograms(parts: readonly hdr.Histogram[]): hdr.Histogram {
  const merged = latencyHistogram();
  for (const p of parts) merged.add(p);
  return merged;
}

export function summarize(h: hdr.Histogram, percentile?: number): LatencySummary {
  const empty = h.totalCount === 0;
  const at = (p: number): number => (empty ? NaN : h.getValueAtPercentile(p));
  return {
    count: h.totalCount,
    avgUs: empty ? NaN : h.mean,
    p50Us: at(50),
    p90Us: at(90),
    p95Us: at(95),
    p99Us: at(99),
    maxUs: empty ? NaN : h.maxValue,
    ...(percentile !== undefined ? { pxUs: at(percentile) } : {}),
  };
}
