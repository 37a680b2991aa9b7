// One `--fabriek` value of the Ray Serve comparison (rayserve.ts): how the
// Fabriek side batches and, optionally, how many ONNX Runtime threads its
// model gets: threads=1 leaves the gateway a core of two, a trade measured in
// docs/performance.md (here it lost a third of the req/s).

/** One --fabriek value: its batching (fixed:<µs> or slo:<ms>) and, after a comma, threads=N (intra_op_thread_count). */
export interface FabriekConfig {
  readonly kind: 'fixed' | 'slo';
  readonly value: number;
  /** The model's intra_op_thread_count; undefined: Fabriek's default (cores / instances). */
  readonly threads: number | undefined;
}

const CONFIG_USAGE = "expected fixed:<max_queue_delay µs> or slo:<batching_slo_ms>, optionally followed by ',threads=N'";

export function parseFabriekConfig(text: string): FabriekConfig {
  const [batching = '', ...extra] = text.split(',');
  const [kind, value] = batching.split(':');
  const n = Number(value);
  // max_queue_delay_microseconds is a whole number; batching_slo_ms any positive number.
  const valid = kind === 'fixed' ? /^\d+$/.test(value ?? '') : kind === 'slo' && value !== undefined && value !== '' && Number.isFinite(n) && n > 0;
  if (!valid) throw new Error(`--fabriek '${text}': ${CONFIG_USAGE}`);
  let threads: number | undefined;
  for (const e of extra) {
    const t = /^threads=(\d+)$/.exec(e);
    if (t === null || Number(t[1]) < 1 || threads !== undefined) throw new Error(`--fabriek '${text}': ${CONFIG_USAGE}`);
    threads = Number(t[1]);
  }
  return { kind: kind as FabriekConfig['kind'], value: n, threads };
}
