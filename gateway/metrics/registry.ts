import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { type GpuReader, type GpuSample, nvidiaSmiReader } from './gpu.js';
import { SeriesHistogram } from './series-histogram.js';
import { type InferenceMetrics, type SummedCounter, VersionMetrics } from './version-metrics.js';

export { VersionMetrics } from './version-metrics.js';

/** Queue waits range from microseconds (idle) to seconds (overload). */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/**
 * `read`, taken once per scrape: prom-client collects every metric of a
 * scrape in one synchronous pass, so what is read is kept until the loop's
 * next turn and given to the other metrics of the same scrape.
 */
export function oncePerScrape<T>(read: () => Iterable<T>): () => readonly T[] {
  let kept: T[] | undefined;
  return () => {
    if (kept === undefined) {
      kept = [...read()];
      setImmediate(() => (kept = undefined));
    }
    return kept;
  };
}

export interface PendingCount {
  readonly model: string;
  readonly version: string;
  readonly pending: number;
}

/** One measured point of a version's cost model (core/cost-model.ts). */
export interface CostPointSample {
  readonly model: string;
  readonly version: string;
  /** The instance kind whose executions it learned (core/kind-costs.ts). */
  readonly kind: string;
  /** Mean rows of the executions in the bucket. */
  readonly rows: number;
  /** Expected seconds of one execution of that many rows (compute plus overhead). */
  readonly seconds: number;
}

/** The in-flight gate's state (gateway/inference/inflight-gate.ts). */
export interface InflightSample {
  readonly requests: number;
  readonly bytes: number;
  readonly admitBytes: number;
  readonly maxBytes: number;
}

/** The gRPC sessions' stream windows (gateway/grpc/stream-window.ts). */
export interface StreamWindowSample {
  /** Sessions whose stream window is narrow now. */
  readonly narrowSessions: number;
  readonly narrowings: number;
}

/** A TLS listener's certificate in force (core/tls-reloader.ts): the public ones, and the worker link's client side. */
export interface TlsSample {
  /** 'grpc' or 'http' (HTTP/REST and /metrics). */
  readonly listener: string;
  readonly notAfterSeconds: number;
  readonly reloads: number;
  readonly failures: number;
}

/** A stateful version's sequences (sequence_batching), in this process. */
export interface SequenceSample {
  readonly model: string;
  readonly version: string;
  /** Sequences holding a candidate place. */
  readonly running: number;
  /** Sequences in the backlog, waiting for one. */
  readonly waiting: number;
  /** Sequences ended by max_sequence_idle_microseconds since the version loaded. */
  readonly endedIdle: number;
}

/** A version batching in SLO mode (`batching_slo_ms`). */
export interface SloSample {
  readonly model: string;
  readonly version: string;
  readonly sloSeconds: number;
  /** Requests cut into a batch after their deadline had passed (the batcher's own check: 0 unless something is wrong). */
  readonly computedPastDeadline: number;
  /** Rows of a full batch in SLO mode: where larger batches stop paying (CostModel.efficientRows). */
  readonly fullBatchRows: number;
}

/** One worker's share of a version placed on several workers, as this gateway sees it (InstanceSlots.placements). */
export interface WorkerShareSample {
  readonly model: string;
  readonly version: string;
  readonly worker: string;
  /** Executions this gateway sent there since the worker was added. */
  readonly sent: number;
  /** Those not answered yet. */
  readonly out: number;
  /** The least compute of our last executions there (the worker's speed); undefined until timed. */
  readonly executionSeconds: number | undefined;
  /** Other gateways' work waiting there, by the worker's last report less the time since; undefined when not reported lately. */
  readonly othersWaitSeconds: number | undefined;
  /** Our compute there over what the version's cost model for its instance kind expected for its rows (least of the last 8); undefined until known. */
  readonly computeRatio: number | undefined;
}

export interface MetricsOptions {
  /** Default process metrics (`fabriek_process_*`, `fabriek_nodejs_*`); default true. */
  readonly defaultMetrics?: boolean;
  /** GPU source; default nvidia-smi cached for 1 s; `false` for none. */
  readonly gpu?: GpuReader | false;
  /** The server has a response cache (--cache-config): Triton's nv_cache_* counters, per version. */
  readonly responseCache?: boolean;
}

const VL = ['model', 'version'] as const;

/**
 * Fabriek's Prometheus registry. Per-version inference metrics come from
 * `forVersion(...)` sinks fed by ModelVersionStatistics; gauges that are
 * state rather than events (pending requests, GPUs) are read at scrape time.
 */
export class MetricsRegistry {
  readonly registry = new Registry();
  readonly #inference: InferenceMetrics;
  readonly #workers: Gauge<'state'>;
  readonly #versions = new Map<string, VersionMetrics>();
  #pending: () => Iterable<PendingCount> = () => [];
  #costs: () => Iterable<CostPointSample> = () => [];
  #slos: () => Iterable<SloSample> = () => [];
  #workerShares: () => Iterable<WorkerShareSample> = () => [];
  #sequences: () => Iterable<SequenceSample> = () => [];
  #inflight: () => InflightSample | undefined = () => undefined;
  #streamWindow: () => StreamWindowSample | undefined = () => undefined;
  #tls: () => Iterable<TlsSample> = () => [];

  constructor(options: MetricsOptions = {}) {
    const registers = [this.registry];
    const versions = this.#versions;
    // A summed counter takes what each version summed since the last scrape as the scrape reads it.
    const counter = (name: string, help: string, key: SummedCounter): Counter<'model' | 'version'> =>
      new Counter({
        name,
        help,
        labelNames: VL,
        registers,
        collect() {
          for (const v of versions.values()) v.flush(key, this);
        },
      });
    const histogram = (name: string, help: string, buckets: number[]): SeriesHistogram<'model' | 'version'> =>
      new SeriesHistogram({ name, help, labelNames: VL, buckets, registers });
    this.#inference = {
      success: counter('nv_inference_request_success', 'Number of successful inference requests, all batch sizes', 'success'),
      failure: new Counter({
        name: 'nv_inference_request_failure',
        help: 'Number of failed inference requests, all batch sizes',
        labelNames: [...VL, 'reason'],
        registers,
      }),
      inferenceCount: counter('nv_inference_count', 'Number of inferences performed (rows; does not include cached requests)', 'inferenceCount'),
      execCount: counter('nv_inference_exec_count', 'Number of model executions performed', 'execCount'),
      requestUs: counter('nv_inference_request_duration_us', 'Cumulative inference request duration in microseconds', 'requestUs'),
      queueUs: counter('nv_inference_queue_duration_us', 'Cumulative inference queuing duration in microseconds', 'queueUs'),
      computeInputUs: counter('nv_inference_compute_input_duration_us', 'Cumulative compute input duration in microseconds', 'computeInputUs'),
      computeInferUs: counter('nv_inference_compute_infer_duration_us', 'Cumulative compute inference duration in microseconds', 'computeInferUs'),
      computeOutputUs: counter('nv_inference_compute_output_duration_us', 'Cumulative inference compute output duration in microseconds', 'computeOutputUs'),
      queueSeconds: histogram('fabriek_queue_duration_seconds', 'Time a request waited in the queue, per request', LATENCY_BUCKETS),
      computeInferSeconds: histogram(
        'fabriek_compute_infer_duration_seconds',
        'Model execution time on the worker, per execution',
        LATENCY_BUCKETS,
      ),
      batchSize: histogram('fabriek_batch_size', 'Rows per model execution', BATCH_BUCKETS),
      ...(options.responseCache
        ? {
            cache: {
              hits: counter('nv_cache_num_hits_per_model', 'Number of cache hits per model', 'cacheHits'),
              misses: counter('nv_cache_num_misses_per_model', 'Number of cache misses per model', 'cacheMisses'),
              hitUs: counter('nv_cache_hit_duration_per_model', 'Total cache hit duration per model, in microseconds', 'cacheHitUs'),
              missUs: counter('nv_cache_miss_duration_per_model', 'Total cache miss (insert + lookup) duration per model, in microseconds', 'cacheMissUs'),
            },
          }
        : {}),
    };
    const pending = (): Iterable<PendingCount> => this.#pending();
    new Gauge({
      name: 'nv_inference_pending_request_count',
      help: 'Instantaneous number of pending requests awaiting execution per-model',
      labelNames: VL,
      registers,
      collect() {
        this.reset();
        for (const p of pending()) this.set({ model: p.model, version: p.version }, p.pending);
      },
    });
    const costs = (): Iterable<CostPointSample> => this.#costs();
    new Gauge({
      name: 'fabriek_batch_cost_seconds',
      help: 'Expected seconds of one execution by batch size, as the cost model that sheds requests learned it, per instance kind (kind: the execution provider the instances run on; rows: mean rows of the power-of-two bucket)',
      labelNames: [...VL, 'kind', 'rows'],
      registers,
      aggregator: 'average',
      collect() {
        this.reset();
        for (const c of costs()) this.set({ model: c.model, version: c.version, kind: c.kind, rows: String(Math.round(c.rows * 10) / 10) }, c.seconds);
      },
    });
    const slos = (): Iterable<SloSample> => this.#slos();
    new Gauge({
      name: 'fabriek_batching_slo_seconds',
      aggregator: 'max',
      help: 'The SLO of versions that form batches by it (batching_slo_ms or --batching-slo-ms); absent for fixed max_queue_delay',
      labelNames: VL,
      registers,
      collect() {
        this.reset();
        for (const s of slos()) this.set({ model: s.model, version: s.version }, s.sloSeconds);
      },
    });
    new Gauge({
      name: 'fabriek_batch_full_rows',
      help: 'Rows of a full batch of SLO-mode versions: the smallest size doing 90 % of the best throughput the cost model measured (at most max_batch_size), and while tenants share the version no more than keeps a newcomer within twice a row\'s latency alone and its deadline',
      labelNames: VL,
      registers,
      collect() {
        this.reset();
        for (const s of slos()) this.set({ model: s.model, version: s.version }, s.fullBatchRows);
      },
    });
    new Counter({
      name: 'fabriek_batch_computed_past_deadline',
      help: 'Requests of SLO-mode versions put into a batch after their deadline had passed (expected 0: such requests are shed)',
      labelNames: VL,
      registers,
      collect() {
        this.reset();
        for (const s of slos()) this.inc({ model: s.model, version: s.version }, s.computedPastDeadline);
      },
    });
    // Five metrics read the shares at each scrape, and building them walks every placement: read once per scrape.
    const shares = oncePerScrape((): Iterable<WorkerShareSample> => this.#workerShares());
    const WL = [...VL, 'worker'] as const;
    new Counter({
      name: 'fabriek_worker_executions_total',
      help: 'Executions this gateway sent to each worker, for versions placed on several workers (the choice of worker by expected finish)',
      labelNames: WL,
      registers,
      collect() {
        this.reset();
        for (const s of shares()) this.inc({ model: s.model, version: s.version, worker: s.worker }, s.sent);
      },
    });
    // One series per worker of a version placed on several; a share whose value is not known yet is left out.
    const shareGauge = (name: string, help: string, aggregator: 'sum' | 'average', read: (s: WorkerShareSample) => number | undefined): void => {
      new Gauge({
        name,
        help,
        labelNames: WL,
        registers,
        aggregator,
        collect() {
          this.reset();
          for (const s of shares()) {
            const value = read(s);
            if (value !== undefined) this.set({ model: s.model, version: s.version, worker: s.worker }, value);
          }
        },
      });
    };
    shareGauge('fabriek_worker_executions_out', 'Executions this gateway has sent to each worker and not had answered, for versions placed on several workers', 'sum', (s) => s.out);
    shareGauge(
      'fabriek_worker_execution_seconds',
      "Each worker's speed on a version placed on several workers: the least compute of this gateway's last 8 executions there (absent until one is timed)",
      'average',
      (s) => s.executionSeconds,
    );
    shareGauge(
      'fabriek_worker_compute_ratio',
      "Each worker's compute for this gateway's executions over what the version's cost model for that worker's instance kind expected for their rows (least of the last 8; 0.5 = twice as fast as the model), for versions placed on several workers",
      'average',
      (s) => s.computeRatio,
    );
    shareGauge(
      'fabriek_worker_others_wait_seconds',
      "Other gateways' work waiting on each worker per instance, by the worker's last reported backlog less this gateway's, for versions placed on several workers (absent when not reported lately)",
      'average',
      (s) => s.othersWaitSeconds,
    );
    const sequences = (): Iterable<SequenceSample> => this.#sequences();
    new Gauge({
      name: 'fabriek_sequences',
      help: "Sequences of stateful versions (sequence_batching): running (holding a candidate place) or waiting in the backlog for one",
      labelNames: [...VL, 'state'],
      registers,
      aggregator: 'sum',
      collect() {
        this.reset();
        for (const s of sequences()) {
          this.set({ model: s.model, version: s.version, state: 'running' }, s.running);
          this.set({ model: s.model, version: s.version, state: 'waiting' }, s.waiting);
        }
      },
    });
    new Counter({
      name: 'fabriek_sequences_ended_idle_total',
      help: 'Sequences ended because no request of theirs came within max_sequence_idle_microseconds (their state dropped; a later request without START is refused)',
      labelNames: VL,
      registers,
      collect() {
        this.reset();
        for (const s of sequences()) this.inc({ model: s.model, version: s.version }, s.endedIdle);
      },
    });
    const inflight = (): InflightSample | undefined => this.#inflight();
    const inflightGauge = (name: string, help: string, read: (s: InflightSample) => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const s = inflight();
          if (s) this.set(read(s));
        },
      });
    };
    inflightGauge('fabriek_inflight_requests', 'Inference requests the gateway holds (bodies being received, queued, running)', (s) => s.requests);
    inflightGauge('fabriek_inflight_bytes', 'Request bytes the gateway holds in flight', (s) => s.bytes);
    inflightGauge('fabriek_inflight_max_bytes', 'The bound on request bytes in flight (--max-inflight-bytes)', (s) => s.maxBytes);
    inflightGauge(
      'fabriek_inflight_admit_bytes',
      'Request bytes the gateway admits now: --max-inflight-bytes, or less after requests it admitted were shed or timed out before they ran',
      (s) => s.admitBytes,
    );
    const streamWindow = (): StreamWindowSample | undefined => this.#streamWindow();
    new Gauge({
      name: 'fabriek_grpc_narrow_window_sessions',
      help: 'gRPC connections whose HTTP/2 stream window is 65535 bytes instead of 16 MiB: 8 or more calls on them were refused before their messages were read within a second, and none since within the last (a refused body then costs the connection at most that)',
      registers,
      collect() {
        const s = streamWindow();
        if (s) this.set(s.narrowSessions);
      },
    });
    new Counter({
      name: 'fabriek_grpc_stream_window_narrowings_total',
      help: "Times a gRPC connection's stream window narrowed because calls on it were refused before their messages were read (8 within a second)",
      registers,
      collect() {
        const s = streamWindow();
        if (s) {
          this.reset();
          this.inc(s.narrowings);
        }
      },
    });
    const tls = (): Iterable<TlsSample> => this.#tls();
    new Gauge({
      name: 'fabriek_tls_certificate_expiry_timestamp_seconds',
      help: "When the certificate a TLS listener presents expires (Unix seconds; listener: grpc, http for HTTP/REST and /metrics, or worker for the client certificate shown to workers); alert on it minus time()",
      labelNames: ['listener'],
      registers,
      aggregator: 'min',
      collect() {
        this.reset();
        for (const t of tls()) this.set({ listener: t.listener }, t.notAfterSeconds);
      },
    });
    new Counter({
      name: 'fabriek_tls_reloads_total',
      help: "A TLS listener's files read again after they changed (or on SIGHUP): ok, put in force for new connections; failed, refused by the startup checks (the previous certificate stays)",
      labelNames: ['listener', 'result'],
      registers,
      collect() {
        this.reset();
        for (const t of tls()) {
          this.inc({ listener: t.listener, result: 'ok' }, t.reloads);
          this.inc({ listener: t.listener, result: 'failed' }, t.failures);
        }
      },
    });
    // aggregator: how several gateway processes' values combine in /metrics (--gateway-processes; prom-client's cluster aggregation).
    this.#workers = new Gauge({ name: 'fabriek_workers', help: 'Worker processes by state', labelNames: ['state'], registers, aggregator: 'max' });
    this.setWorkers({ up: 0, down: 0 });
    if (options.gpu !== false) registerGpuGauges(this.registry, options.gpu ?? nvidiaSmiReader());
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'fabriek_' });
  }

  /** The sink for one loaded version; pass it to ModelVersionStatistics. The same object for the same version. */
  forVersion(model: string, version: string): VersionMetrics {
    const key = JSON.stringify([model, version]);
    let v = this.#versions.get(key);
    if (!v) {
      v = new VersionMetrics(this.#inference, model, version);
      this.#versions.set(key, v);
    }
    return v;
  }

  /** Drops a version's series once it is unloaded, as Triton does. */
  removeVersion(model: string, version: string): void {
    const key = JSON.stringify([model, version]);
    this.#versions.get(key)?.remove();
    this.#versions.delete(key);
  }

  /** Read at every scrape: each serving version's `scheduler.pending`. */
  setPendingProvider(provider: () => Iterable<PendingCount>): void {
    this.#pending = provider;
  }

  /** Read at every scrape: each batching version's cost model. */
  setCostProvider(provider: () => Iterable<CostPointSample>): void {
    this.#costs = provider;
  }

  /** Read at every scrape: each version batching in SLO mode. */
  setSloProvider(provider: () => Iterable<SloSample>): void {
    this.#slos = provider;
  }

  /** Read at every scrape: each worker's share of the versions placed on several workers. */
  setWorkerShareProvider(provider: () => Iterable<WorkerShareSample>): void {
    this.#workerShares = provider;
  }

  /** Read at every scrape: each stateful version's sequences. */
  setSequenceProvider(provider: () => Iterable<SequenceSample>): void {
    this.#sequences = provider;
  }

  /** Read at every scrape: the in-flight gate. */
  setInflightProvider(provider: () => InflightSample): void {
    this.#inflight = provider;
  }

  /** Read at every scrape: the public TLS listeners' certificates. */
  setTlsProvider(provider: () => Iterable<TlsSample>): void {
    this.#tls = provider;
  }

  /** Read at every scrape: the gRPC sessions' stream window. */
  setStreamWindowProvider(provider: () => StreamWindowSample): void {
    this.#streamWindow = provider;
  }

  /** Worker processes connected (`up`) and planned but not connected (`down`). */
  setWorkers(counts: { up: number; down: number }): void {
    this.#workers.set({ state: 'up' }, counts.up);
    this.#workers.set({ state: 'down' }, counts.down);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}

function registerGpuGauges(registry: Registry, read: GpuReader): void {
  const registers = [registry];
  // Each gauge asks the reader; nvidiaSmiReader's 1 s cache makes that one nvidia-smi run per scrape.
  const gauge = (name: string, help: string, pick: (s: GpuSample) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['gpu'],
      registers,
      // Every gateway process reads the same GPUs.
      aggregator: 'first',
      async collect() {
        const samples = await read();
        this.reset();
        for (const s of samples) this.set({ gpu: s.index }, pick(s));
      },
    });
  };
  gauge('fabriek_gpu_utilization_ratio', 'GPU utilisation (0..1) from nvidia-smi', (s) => s.utilization);
  gauge('fabriek_gpu_memory_used_bytes', 'GPU memory in use, bytes, from nvidia-smi', (s) => s.memoryUsedBytes);
  gauge('fabriek_gpu_memory_total_bytes', 'GPU memory in total, bytes, from nvidia-smi', (s) => s.memoryTotalBytes);
}
