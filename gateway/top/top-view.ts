// The screen of `fabriek top`: rates and averages over the interval between
// two scrapes of a gateway's /metrics, per model version and per tenant.
// A pure function of the two scrapes, so it is tested without a server.
import { type Sample } from './exposition.js';

export interface Scrape {
  readonly at: number;
  readonly samples: readonly Sample[];
}

/** Sum of the samples named `name`, grouped by the values of `by`. */
function sums(samples: readonly Sample[], name: string, by: readonly string[], where: (s: Sample) => boolean = () => true): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== name || !where(s)) continue;
    const key = by.map((l) => s.labels[l] ?? '').join('\u0000');
    out.set(key, (out.get(key) ?? 0) + s.value);
  }
  return out;
}

/** Growth of a counter between scrapes; a counter that went down (a restart) counts from zero. */
const growth = (now: number | undefined, before: number | undefined): number => {
  const n = now ?? 0;
  const b = before ?? 0;
  return n >= b ? n - b : n;
};

const fixed = (n: number, digits: number): string => (Number.isFinite(n) ? n.toFixed(digits) : '–');

function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string => r.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** The p-quantile (0..1) in seconds of the observations a histogram's buckets gained; NaN without any. */
export function bucketQuantile(buckets: ReadonlyMap<number, number>, q: number): number {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) ?? (bounds.length > 0 ? (buckets.get(bounds[bounds.length - 1] as number) ?? 0) : 0);
  if (total <= 0) return NaN;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const count = buckets.get(le) ?? 0;
    if (count >= rank) {
      if (le === Infinity) return lower;
      // Linear within the bucket, as Prometheus's histogram_quantile does.
      return count === below ? le : lower + ((le - lower) * (rank - below)) / (count - below);
    }
    lower = le;
    below = count;
  }
  return lower;
}

export function topView(before: Scrape | undefined, now: Scrape, source: string): string {
  const seconds = before ? (now.at - before.at) / 1000 : NaN;
  const prev = before?.samples ?? [];
  const cur = now.samples;
  const delta = (name: string, by: readonly string[], where?: (s: Sample) => boolean): Map<string, number> => {
    const a = sums(prev, name, by, where);
    const out = new Map<string, number>();
    for (const [k, v] of sums(cur, name, by, where)) out.set(k, before ? growth(v, a.get(k)) : NaN);
    return out;
  };
  const lines = [`fabriek top · ${source} · ${new Date(now.at).toISOString()}${before ? ` · over ${fixed(seconds, 1)} s` : ''}`];

  const workers = sums(cur, 'fabriek_workers', ['state']);
  lines.push(`workers: ${workers.get('up') ?? 0} up, ${workers.get('down') ?? 0} down`, '');

  const mv = ['model', 'version'];
  const success = delta('nv_inference_request_success', mv);
  const failure = delta('nv_inference_request_failure', mv);
  const requestUs = delta('nv_inference_request_duration_us', mv);
  const queueUs = delta('nv_inference_queue_duration_us', mv);
  const inferences = delta('nv_inference_count', mv);
  const executions = delta('nv_inference_exec_count', mv);
  const pending = sums(cur, 'nv_inference_pending_request_count', mv);
  const models = [...new Set([...success.keys(), ...pending.keys()])].sort();
  lines.push(
    models.length === 0
      ? 'no model has served a request yet'
      : table(
          ['MODEL', 'VERSION', 'REQ/S', 'FAIL/S', 'AVG MS', 'QUEUE MS', 'AVG BATCH', 'PENDING'],
          models.map((key) => {
            const [model = '', version = ''] = key.split('\u0000');
            const ok = success.get(key) ?? NaN;
            return [
              model,
              version,
              fixed(ok / seconds, 1),
              fixed((failure.get(key) ?? 0) / seconds, 1),
              fixed((requestUs.get(key) ?? NaN) / ok / 1000, 2),
              fixed((queueUs.get(key) ?? NaN) / ok / 1000, 2),
              fixed((inferences.get(key) ?? NaN) / (executions.get(key) ?? NaN), 1),
              fixed(pending.get(key) ?? 0, 0),
            ];
          }),
        ),
  );

  const requests = delta('fabriek_tenant_requests_total', ['tenant']);
  if (requests.size > 0) {
    const refused = delta('fabriek_tenant_quota_refusals_total', ['tenant']);
    const buckets = delta('fabriek_tenant_request_duration_seconds_bucket', ['tenant', 'le']);
    const p99 = (tenant: string): number => {
      const mine = new Map<number, number>();
      for (const [key, n] of buckets) {
        const [t, le = ''] = key.split('\u0000');
        if (t === tenant) mine.set(le === '+Inf' ? Infinity : Number(le), n);
      }
      return bucketQuantile(mine, 0.99) * 1000;
    };
    lines.push(
      '',
      table(
        ['TENANT', '', 'REQ/S', 'P99 MS', 'REFUSED/S'],
        [...requests.keys()].sort().map((tenant) => [tenant || '(unidentified)', '', fixed((requests.get(tenant) ?? NaN) / seconds, 1), fixed(p99(tenant), 1), fixed((refused.get(tenant) ?? 0) / seconds, 1)]),
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}
