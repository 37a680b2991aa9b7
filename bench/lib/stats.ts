/** Latency samples in µs and their percentiles (the whole window is kept; runs are bounded). */
export class LatencyRecorder {
  #samples = new Float64Array(1 << 16);
  #n = 0;

  record(us: number): void {
    if (this.#n === this.#samples.length) {
      const grown = new Float64Array(this.#samples.length * 2);
      grown.set(this.#samples);
      this.#samples = grown;
    }
    this.#samples[this.#n++] = us;
  }

  get count(): number {
    return this.#n;
  }

  summary(): LatencySummary {
    const s = this.#samples.slice(0, this.#n).sort();
    const at = (p: number): number => (s.length === 0 ? NaN : (s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN));
    let sum = 0;
    for (const v of s) sum += v;
    return { count: s.length, avgUs: s.length ? sum / s.length : NaN, p50Us: at(0.5), p90Us: at(0.9), p95Us: at(0.95), p99Us: at(0.99) };
  }
}

export interface LatencySummary {
  readonly count: number;
  readonly avgUs: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p95Us: number;
  readonly p99Us: number;
}
