import { type ServiceError, status as GrpcStatus } from '@grpc/grpc-js';
import * as hdr from 'hdr-histogram-js';
import { type InferenceGrpcClient } from '../../client/grpc-client.js';
import { type ModelInferRequest, type ModelInferResponse } from '../../proto/gen/inference.js';

/** Client latency in µs, read from an HDR histogram (3 significant digits). */
export interface LatencySummary {
  readonly count: number;
  readonly avgUs: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p95Us: number;
  readonly p99Us: number;
  readonly maxUs: number;
}

/** An HDR histogram of µs values from 1 µs up to a minute (auto-resizes beyond). */
export function latencyHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
}

export function recordUs(h: hdr.Histogram, us: number): void {
  h.recordValue(Math.max(1, Math.round(us)));
}

export function summarize(h: hdr.Histogram): LatencySummary {
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
  };
}

export interface ClosedLoopOptions {
  /** Requests in flight at all times (perf_analyzer's concurrency). */
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** Request number `seq` (0, 1, 2, … across warm-up and window). */
  readonly request: (seq: number) => ModelInferRequest;
  /** Batch rows per request, for infer/s (default 1). */
  readonly rowsPerRequest?: number;
  /** gRPC deadline per request (default 30 s). */
  readonly timeoutMs?: number;
  /** Stop the window early after this many answers (default: time only). */
  readonly maxRequests?: number;
  /** Every successful answer, warm-up included; keep it cheap, it runs on the load loop. */
  readonly onResponse?: (seq: number, response: ModelInferResponse, measured: boolean) => void;
  /** Called when the measurement window opens and closes (e.g. to read server statistics). */
  readonly onWindowStart?: () => void;
  readonly onWindowEnd?: () => void;
}

export interface ClosedLoopResult {
  readonly concurrency: number;
  /** Requests answered successfully inside the window. */
  readonly requests: number;
  readonly seconds: number;
  readonly requestsPerSecond: number;
  readonly inferPerSecond: number;
  readonly latency: LatencySummary;
  /** Failed requests inside the window, by gRPC status code name. */
  readonly errors: Readonly<Record<string, number>>;
  /** The first failure's message, to say what went wrong. */
  readonly firstError?: string;
}

// After the window, answers still in flight get this long before they are
// cancelled, so a stalled server cannot keep the run alive.
const DRAIN_GRACE_MS = 5_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function codeName(error: unknown): string {
  const code = (error as Partial<ServiceError> | undefined)?.code;
  return typeof code === 'number' ? (GrpcStatus[code] ?? `CODE_${code}`) : 'CLIENT_ERROR';
}

/**
 * Closed-loop load: `concurrency` callers each send their next request as
 * soon as the last one is answered. Counts and latencies come only from
 * answers that arrive inside the window. Bounded by time (and optionally
 * count); it always stops by itself.
 */
export async function closedLoop(client: InferenceGrpcClient, o: ClosedLoopOptions): Promise<ClosedLoopResult> {
  const histogram = latencyHistogram();
  const errors: Record<string, number> = {};
  // One controller per request: the client adds an abort listener per call
  // and never removes it, so a shared signal would collect one per request.
  const inFlight = new Set<AbortController>();
  const timeoutMs = o.timeoutMs ?? 30_000;
  const maxRequests = o.maxRequests ?? Number.POSITIVE_INFINITY;
  let firstError: string | undefined;
  let seq = 0;
  let measuring = false;
  let stopped = false;
  let answered = 0;
  let windowStart = 0;
  let windowEnd = 0;
  let countReached: () => void = () => undefined;
  const reached = new Promise<void>((r) => (countReached = r));

  const caller = async (): Promise<void> => {
    while (!stopped) {
      const n = seq++;
      const abort = new AbortController();
      inFlight.add(abort);
      const t0 = performance.now();
      try {
        const response = await client.modelInfer(o.request(n), { timeoutMs, signal: abort.signal });
        const inWindow = measuring && !stopped;
        o.onResponse?.(n, response, inWindow);
        if (inWindow) {
          recordUs(histogram, (performance.now() - t0) * 1000);
          if (++answered >= maxRequests) countReached();
        }
      } catch (error) {
        if (measuring && !stopped) {
          const name = codeName(error);
          errors[name] = (errors[name] ?? 0) + 1;
          firstError ??= `${name}: ${error instanceof Error ? error.message : String(error)}`;
          // A server answering errors instantly would otherwise spin this loop.
          if (name === 'UNAVAILABLE' || name === 'CLIENT_ERROR') await sleep(1);
        }
      } finally {
        inFlight.delete(abort);
      }
    }
  };

  const callers = Array.from({ length: o.concurrency }, caller);
  await sleep(o.warmupMs);
  measuring = true;
  windowStart = performance.now();
  o.onWindowStart?.();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([reached, new Promise<void>((r) => (timer = setTimeout(r, o.durationMs)))]);
  clearTimeout(timer);
  windowEnd = performance.now();
  stopped = true;
  o.onWindowEnd?.();
  const grace = setTimeout(() => {
    for (const a of inFlight) a.abort();
  }, Math.min(timeoutMs, DRAIN_GRACE_MS));
  await Promise.all(callers);
  clearTimeout(grace);

  const seconds = (windowEnd - windowStart) / 1000;
  const requests = histogram.totalCount;
  const result: ClosedLoopResult = {
    concurrency: o.concurrency,
    requests,
    seconds,
    requestsPerSecond: requests / seconds,
    inferPerSecond: (requests * (o.rowsPerRequest ?? 1)) / seconds,
    latency: summarize(histogram),
    errors,
    ...(firstError !== undefined ? { firstError } : {}),
  };
  histogram.destroy();
  return result;
}
