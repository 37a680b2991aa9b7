// `fabriek bench` flags, named as perf_analyzer names them, parsed into
// PerfOptions. Pure: no I/O, so the parsing is unit-tested.
import { parseArgs } from 'node:util';
import { type InputDataSource, parseShapeFlag } from './load/input-data.js';
import { type LoadLevel } from './load/level.js';
import { type Distribution } from './load/schedule.js';
import { RAW_ORT_PROVIDERS, type RawOrtProvider } from './baselines/raw-ort.js';
import { type Baseline, LOAD_CLIENTS, type LoadClient, type PerfOptions } from './perf.js';
import { UsageError } from './bench-errors.js';

/** Runs parseArgs, with its errors as UsageError (exit code 2 and the usage). */
export function parsed<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

/** A scenario's own flags, and the `fabriek serve` flags given after `--`. */
export function splitServeFlags(argv: readonly string[]): { readonly own: string[]; readonly serveFlags: string[] } {
  const dashes = argv.indexOf('--');
  return dashes < 0 ? { own: [...argv], serveFlags: [] } : { own: argv.slice(0, dashes), serveFlags: argv.slice(dashes + 1) };
}

export const PERF_USAGE = `Usage: fabriek bench -m MODEL [options]          measure a model (perf_analyzer's flags)
       fabriek bench suite [--quick]             P1–P4 with baselines; writes bench/results/latest.md
       fabriek bench compare A.json B.json [--threshold PCT]
       fabriek bench batching|http [options]     the issue #3 / #4 scenarios (fabriek bench batching --help)
       fabriek bench scaling [options]           req/s over 1, 2, 4, 8 gateway processes (fabriek bench scaling --help)
       fabriek bench profile -m MODEL --model-repository DIR
                                                 CPU per request by stage of the path, from V8 profiles (--help)

Server and model:
  -m, --model-name NAME          model to measure (required)
  -x, --model-version V          version (default: the server's latest)
  -u, --url ADDR                 server: host:port for gRPC, http://host:port for HTTP
                                 (default localhost:8001 / http://localhost:8000); requests go only there
  -i, --protocol grpc|http       (default grpc)
  -H, --header 'NAME: VALUE'     sent with every request (gRPC metadata or HTTP header); repeatable,
                                 e.g. -H "authorization: Bearer $KEY" for a server with --tenants
  --model-repository DIR         without -u: start 'fabriek serve' on DIR (free loopback ports) and measure it;
                                 also where --baseline raw-ort finds the ONNX file
  --model-file PATH              the ONNX file for --baseline raw-ort
  --raw-ort-provider cpu|webgpu  the execution provider of --baseline raw-ort (default cpu; webgpu: the
                                 GPU path of a KIND_GPU instance where CUDA's libraries are missing)
  --cache-config CACHE,K=V       with --model-repository: the started server's response cache (repeatable;
                                 fabriek serve's flag, e.g. local,size=1048576)
  --trace-config SETTING         with --model-repository: the started server's tracing (repeatable;
                                 fabriek serve's flag, e.g. mode=opentelemetry, rate=100)
  -- FLAGS                       last, with --model-repository: more 'fabriek serve' flags for the
                                 started server, e.g. -- --local-workers in-process
Load:
  --concurrency-range S[:E[:STEP]]   closed loop at S, S+STEP, … E clients (default 1)
  --request-rate-range S[:E[:STEP]]  open loop at S … E requests/s instead
  --request-distribution constant|poisson   open-loop arrivals (default constant)
  --max-outstanding N            open loop: requests in flight at most; arrivals beyond are dropped
                                 and counted as CLIENT_OVERLOADED (default 1000)
  -b, --batch-size N             rows per request (default 1)
  --shape NAME:D1,D2             dims of a variable-size input (without the batch dim); repeatable
  --input-data zero|random|FILE  request data; FILE is perf_analyzer's JSON ({"data": [{"IN": […]}, …]}) (default random)
  --string-length N              random BYTES elements' length (default 16)
  --request-timeout-ms MS        per-request deadline (default 30000)
  --load-client h2|grpc-js       gRPC load: h2 sends each input set encoded and framed once, straight
                                 on node:http2, so the cores go to the server; grpc-js re-encodes and
                                 copies every request, as a Node app would (default h2)
  --sequence-length N            a stateful model (sequence_batching): each client sends sequences of N
                                 requests (sequence_id; START on the first, END on the last; a new ID
                                 each sequence); closed loop only (default 0: no sequences)
  --seed N                       random data and Poisson schedule seed (default 1)
  --cache-hit-ratio R            a repeating input mix for a response-cached model: each request repeats
                                 one of 4 hot inputs with probability R (0..1), else sends an input never
                                 sent before; the table shows the server's hit rate (ModelStatistics)
Measurement:
  -p, --measurement-interval MS  window length (default 5000)
  --measurement-mode time_windows|count_windows   (default time_windows)
  --measurement-request-count N  count_windows: answers per window (default 50; a window never exceeds the interval)
  -s, --stability-percentage P   stable when the last 3 windows are within ±P % (default 10)
  -r, --max-trials N             windows at most per level (default 10)
  --warmup-interval MS           load before the first window, not counted (default 1000)
  --percentile N                 watch and report pN latency instead of the average for stability
  --slo-ms MS                    goodput: infer/s answered within MS
Baselines (measured in the same run; the table shows ratios to them):
  --baseline raw-ort|grpc-echo|batching-off|cache-off   repeatable or comma-separated; cache-off: the
                                 same model with its response_cache turned off (config override)
  --rounds N                     measure the baselines and the server N times in turn (default 1; raw-ort
                                 once): each ratio compares rows of one round, and a line per load gives
                                 its median over the rounds (a shared machine drifts between series)
Output:
  -f, --latency-report-file F.csv   perf_analyzer's CSV for the server under test
  --json FILE, --svg FILE        the whole run as JSON; throughput against p99 latency as SVG
  --results-dir DIR              history folder (default bench/results); --no-save to skip it
`;

const OPTIONS = {
  'model-name': { type: 'string', short: 'm' },
  'model-version': { type: 'string', short: 'x', default: '' },
  url: { type: 'string', short: 'u' },
  protocol: { type: 'string', short: 'i', default: 'grpc' },
  header: { type: 'string', short: 'H', multiple: true },
  'model-repository': { type: 'string' },
  'model-file': { type: 'string' },
  'raw-ort-provider': { type: 'string', default: 'cpu' },
  'cache-config': { type: 'string', multiple: true },
  'trace-config': { type: 'string', multiple: true },
  'concurrency-range': { type: 'string' },
  'request-rate-range': { type: 'string' },
  'request-distribution': { type: 'string', default: 'constant' },
  'batch-size': { type: 'string', short: 'b', default: '1' },
  shape: { type: 'string', multiple: true },
  'input-data': { type: 'string', default: 'random' },
  'string-length': { type: 'string', default: '16' },
  'request-timeout-ms': { type: 'string', default: '30000' },
  'load-client': { type: 'string', default: 'h2' },
  seed: { type: 'string', default: '1' },
  'cache-hit-ratio': { type: 'string' },
  'measurement-interval': { type: 'string', short: 'p', default: '5000' },
  'measurement-mode': { type: 'string', default: 'time_windows' },
  'measurement-request-count': { type: 'string', default: '50' },
  'stability-percentage': { type: 'string', short: 's', default: '10' },
  'max-trials': { type: 'string', short: 'r', default: '10' },
  rounds: { type: 'string', default: '1' },
  'warmup-interval': { type: 'string', default: '1000' },
  percentile: { type: 'string' },
  'slo-ms': { type: 'string' },
  'max-outstanding': { type: 'string', default: '1000' },
  'sequence-length': { type: 'string', default: '0' },
  baseline: { type: 'string', multiple: true },
  'latency-report-file': { type: 'string', short: 'f' },
  json: { type: 'string' },
  svg: { type: 'string' },
  'results-dir': { type: 'string' },
  'no-save': { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** A numeric flag's value, or a UsageError naming the flag and the range. */
export function number(flag: string, raw: string, o: { min?: number; max?: number; integer?: boolean } = {}): number {
  const n = Number(raw);
  const { min = -Infinity, max = Infinity, integer = false } = o;
  if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    const kind = integer ? 'an integer' : 'a number';
    throw new UsageError(`--${flag}: expected ${kind}${Number.isFinite(min) ? ` ≥ ${min}` : ''}${Number.isFinite(max) ? ` ≤ ${max}` : ''}, got '${raw}'`);
  }
  return n;
}

const MAX_LEVELS = 100;

/** perf_analyzer's `start[:end[:step]]` → the values (end defaults to start, step to 1). */
export function parseRange(flag: string, raw: string, integer: boolean): number[] {
  const parts = raw.split(':');
  if (parts.length > 3) throw new UsageError(`--${flag}: expected start[:end[:step]], got '${raw}'`);
  const start = number(flag, parts[0] ?? '', { min: integer ? 1 : Number.MIN_VALUE, integer });
  const end = parts[1] !== undefined ? number(flag, parts[1], { min: start, integer }) : start;
  const step = parts[2] !== undefined ? number(flag, parts[2], { min: Number.MIN_VALUE, integer }) : 1;
  const values: number[] = [];
  for (let v = start; v <= end + 1e-9; v += step) {
    values.push(integer ? Math.round(v) : Number(v.toPrecision(12)));
    if (values.length > MAX_LEVELS) throw new UsageError(`--${flag}: '${raw}' makes more than ${MAX_LEVELS} levels`);
  }
  return values;
}

function inputData(raw: string, seed: number): InputDataSource {
  if (raw === 'zero') return { kind: 'zero' };
  if (raw === 'random') return { kind: 'random', seed };
  return { kind: 'file', path: raw };
}

/** perf_analyzer's `-H 'Name: value'` → a lower-case name and its value. */
export function parseHeaders(raw: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const h of raw) {
    const m = /^([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*:\s*(.*)$/.exec(h);
    // The value is not echoed: it is often a key.
    if (!m?.[1]) throw new UsageError(`-H/--header: expected 'NAME: VALUE' (a header name, a colon, the value)`);
    headers[m[1].toLowerCase()] = m[2] ?? '';
  }
  return headers;
}

const BASELINES: readonly Baseline[] = ['raw-ort', 'grpc-echo', 'batching-off', 'cache-off'];

/** Parses perf mode's argv; `{ help: true }` when -h was given. */
export function parsePerfArgs(argv: readonly string[]): PerfOptions | { help: true } {
  const { own, serveFlags } = splitServeFlags(argv);
  const { values } = parsed(() => parseArgs({ args: own, options: OPTIONS, allowPositionals: false, strict: true }));
  if (values.help) return { help: true };
  const model = values['model-name'];
  if (model === undefined || model === '') throw new UsageError('-m MODEL is required');
  const protocol = values.protocol;
  if (protocol !== 'grpc' && protocol !== 'http') throw new UsageError(`-i/--protocol: expected grpc or http, got '${protocol}'`);
  const distribution = values['request-distribution'];
  if (distribution !== 'constant' && distribution !== 'poisson') throw new UsageError(`--request-distribution: expected constant or poisson, got '${distribution}'`);
  if (values['concurrency-range'] !== undefined && values['request-rate-range'] !== undefined) throw new UsageError('give --concurrency-range or --request-rate-range, not both');
  const levels: LoadLevel[] =
    values['request-rate-range'] !== undefined
      ? parseRange('request-rate-range', values['request-rate-range'], false).map((value) => ({ mode: 'request-rate', value, distribution: distribution as Distribution }))
      : parseRange('concurrency-range', values['concurrency-range'] ?? '1', true).map((value) => ({ mode: 'concurrency', value }));
  const sequenceLength = number('sequence-length', values['sequence-length'], { min: 0, max: 1_000_000, integer: true });
  if (sequenceLength > 0 && values['request-rate-range'] !== undefined) {
    throw new UsageError('--sequence-length needs --concurrency-range: each client keeps its own sequence, one request at a time');
  }
  const loadClient = values['load-client'];
  if (!(LOAD_CLIENTS as readonly string[]).includes(loadClient)) throw new UsageError(`--load-client: expected ${LOAD_CLIENTS.join(' or ')}, got '${loadClient}'`);
  const mode = values['measurement-mode'];
  if (mode !== 'time_windows' && mode !== 'count_windows') throw new UsageError(`--measurement-mode: expected time_windows or count_windows, got '${mode}'`);
  const baselines = new Set<Baseline>();
  for (const b of (values.baseline ?? []).flatMap((x) => x.split(','))) {
    if (!(BASELINES as readonly string[]).includes(b)) throw new UsageError(`--baseline: expected ${BASELINES.join(', ')}, got '${b}'`);
    baselines.add(b as Baseline);
  }
  const rawOrtProvider = values['raw-ort-provider'];
  if (!(RAW_ORT_PROVIDERS as readonly string[]).includes(rawOrtProvider)) {
    throw new UsageError(`--raw-ort-provider: expected ${RAW_ORT_PROVIDERS.join(' or ')}, got '${rawOrtProvider}'`);
  }
  const shapes = parsed(() => new Map((values.shape ?? []).map(parseShapeFlag)));
  const seed = number('seed', values.seed, { min: 0, integer: true });
  const url = values.url;
  if (values['cache-config'] !== undefined && (values['model-repository'] === undefined || url !== undefined)) {
    throw new UsageError('--cache-config configures the server the bench starts: give --model-repository and no -u');
  }
  if (values['trace-config'] !== undefined && (values['model-repository'] === undefined || url !== undefined)) {
    throw new UsageError('--trace-config configures the server the bench starts: give --model-repository and no -u');
  }
  if (serveFlags.length > 0 && (values['model-repository'] === undefined || url !== undefined)) {
    throw new UsageError('flags after -- configure the server the bench starts: give --model-repository and no -u');
  }
  if (url !== undefined && protocol === 'grpc' && /^https?:\/\//.test(url)) throw new UsageError(`-u ${url} is an HTTP URL; add -i http, or give host:port for gRPC`);
  return {
    model,
    version: values['model-version'],
    ...(url !== undefined ? { url: protocol === 'http' && !/^https?:\/\//.test(url) ? `http://${url}` : url } : {}),
    protocol,
    headers: parseHeaders(values.header ?? []),
    ...(values['model-repository'] !== undefined ? { modelRepository: values['model-repository'] } : {}),
    ...(values['model-file'] !== undefined ? { modelFile: values['model-file'] } : {}),
    ...(values['cache-config'] !== undefined || values['trace-config'] !== undefined || serveFlags.length > 0
      ? {
          serveArgs: [
            ...(values['cache-config'] ?? []).flatMap((c) => ['--cache-config', c]),
            ...(values['trace-config'] ?? []).flatMap((c) => ['--trace-config', c]),
            ...serveFlags,
          ],
        }
      : {}),
    levels,
    batchSize: number('batch-size', values['batch-size'], { min: 1, integer: true }),
    shapes,
    inputData: inputData(values['input-data'], seed),
    stringLength: number('string-length', values['string-length'], { min: 0, max: 1 << 20, integer: true }),
    intervalMs: number('measurement-interval', values['measurement-interval'], { min: 10, max: 600_000 }),
    ...(mode === 'count_windows' ? { requestCount: number('measurement-request-count', values['measurement-request-count'], { min: 1, integer: true }) } : {}),
    maxTrials: number('max-trials', values['max-trials'], { min: 1, max: 1000, integer: true }),
    rounds: number('rounds', values.rounds, { min: 1, max: 100, integer: true }),
    stability: { stabilityPercent: number('stability-percentage', values['stability-percentage'], { min: 0, max: 1000 }), windows: 3 },
    ...(values.percentile !== undefined ? { percentile: number('percentile', values.percentile, { min: 1, max: 99.999 }) } : {}),
    ...(values['slo-ms'] !== undefined ? { sloMs: number('slo-ms', values['slo-ms'], { min: 0 }) } : {}),
    maxOutstanding: number('max-outstanding', values['max-outstanding'], { min: 1, max: 1_000_000, integer: true }),
    ...(sequenceLength > 0 ? { sequenceLength } : {}),
    warmupMs: number('warmup-interval', values['warmup-interval'], { min: 0, max: 600_000 }),
    timeoutMs: number('request-timeout-ms', values['request-timeout-ms'], { min: 1, max: 3_600_000 }),
    loadClient: loadClient as LoadClient,
    seed,
    ...(values['cache-hit-ratio'] !== undefined ? { cacheHitRatio: number('cache-hit-ratio', values['cache-hit-ratio'], { min: 0, max: 1 }) } : {}),
    baselines,
    rawOrtProvider: rawOrtProvider as RawOrtProvider,
    ...(values['latency-report-file'] !== undefined ? { csvFile: values['latency-report-file'] } : {}),
    ...(values.json !== undefined ? { jsonFile: values.json } : {}),
    ...(values.svg !== undefined ? { svgFile: values.svg } : {}),
    ...(values['results-dir'] !== undefined ? { resultsDir: values['results-dir'] } : {}),
    save: !values['no-save'],
  };
}

/** The longest a perf run may take before its watchdog ends it (ms). */
export function perfWatchdogMs(o: PerfOptions): number {
  const series = 1 + (o.baselines.has('grpc-echo') ? 1 : 0) + (o.baselines.has('batching-off') ? 1 : 0) + (o.baselines.has('cache-off') ? 1 : 0);
  const perLevel = o.warmupMs + o.maxTrials * o.intervalMs + 10_000;
  const raw = o.baselines.has('raw-ort') ? 8 * (o.intervalMs + 5_000) : 0;
  return 2 * (o.rounds * series * o.levels.length * perLevel + raw) + 300_000;
}
