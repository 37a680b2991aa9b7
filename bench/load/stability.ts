// perf_analyzer's stability rule, as a pure function: a load level is
// measured until the last `windows` measurements each lie within
// ±stabilityPercent of their own average, for throughput and for latency
// (the average, or the --percentile value when one is given).

export interface WindowMeasurement {
  /** Inferences per second in the window. */
  readonly throughput: number;
  /** The latency the rule watches (µs): average, or the chosen percentile. */
  readonly latencyUs: number;
}

export interface StabilityRule {
  /** ±percent around the average (perf_analyzer's --stability-percentage, default 10). */
  readonly stabilityPercent: number;
  /** How many trailing windows must agree (perf_analyzer: 3). */
  readonly windows: number;
}

export const DEFAULT_STABILITY: StabilityRule = { stabilityPercent: 10, windows: 3 };

function within(values: readonly number[], percent: number): boolean {
  if (values.some((v) => !Number.isFinite(v))) return false;
  const avg = values.reduce((a, b) => a + b, 0) / values.length;
  const f = percent / 100;
  return values.every((v) => v >= avg * (1 - f) && v <= avg * (1 + f));
}

/**
 * True when the last `rule.windows` measurements are stable. A window
 * without answers (throughput 0) is never stable: a stalled server must not
 * pass for a steady one.
 */
export function isStable(measurements: readonly WindowMeasurement[], rule: StabilityRule = DEFAULT_STABILITY): boolean {
  if (measurements.length < rule.windows) return false;
  const last = measurements.slice(-rule.windows);
  if (last.some((m) => m.throughput <= 0)) return false;
  return within(last.map((m) => m.throughput), rule.stabilityPercent) && within(last.map((m) => m.latencyUs), rule.stabilityPercent);
}
