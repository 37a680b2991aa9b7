// One `--fabriek` value of the Ray Serve comparison (rayserve.ts): how the
// Fabriek side batches and, optionally, how many ONNX Runtime threads its
// model gets. On a 2-core host ONNX Runtime on both cores preempts the
// gateway, which then answers late; threads=1 leaves it a core.

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
  if ((kind !== 'fixed' && kind !== 'slo') || value === undefined || value === '' || !(n >= 0) || (kind === 'slo' && n === 0)) throw new Error(`--fabriek '${text}': ${CONFIG_USAGE}`);
  let threads: number | undefined;
  for (const e of extra) {
    const t = /^threads=(\d+)$/.exec(e);
    if (t === null || Number(t[1]) < 1 || threads !== undefined) throw new Error(`--fabriek '${text}': ${CONFIG_USAGE}`);
    threads = Number(t[1]);
  }
  return { kind, value: n, threads };
}
