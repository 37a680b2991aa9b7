// Samples the gateway's load once per interval and hands the latest report to
// the three places balancers read it: ORCA's out-of-band OpenRcaService
// stream (orca-service.ts), the endpoint-load-metrics-bin trailer of each
// ModelInfer call, and GET /v2/health/load. Sampling walks the model
// versions off the request path; a call only passes the window's trailers.
// A report covers the latest window and, when that saw no request, the
// windows back to the last that did (spanReport in load-report.ts).
import { availableParallelism } from 'node:os';
import { Metadata, type Server } from '@grpc/grpc-js';
import { treeCpuSeconds } from '../../core/process-cpu.js';
import { type ModelManager } from '../repository/model-manager.js';
import { type LoadCounts, type ModelVersionStatistics } from '../stats/model-statistics.js';
import { IDLE_LOAD, type LoadReport, type LoadWindow, MAX_SPAN_SECONDS, spanReport } from './load-report.js';
import { OrcaStreams, encodeOrcaReport, orcaServiceDefinition } from './orca-service.js';

/** The trailer that carries an ORCA report, as gRPC's weighted_round_robin reads it. */
export const ORCA_TRAILER = 'endpoint-load-metrics-bin';

export class LoadReporter {
  #report: LoadReport = IDLE_LOAD;
  #encoded = Buffer.alloc(0);
  #trailer = new Metadata();
  readonly #oob: OrcaStreams;
  /** Last counts seen per statistics object: a reloaded version starts a new one. */
  #seen = new WeakMap<ModelVersionStatistics, LoadCounts>();
  /** The latest windows, oldest first, back over MAX_SPAN_SECONDS: a report may look back to the last request. */
  #windows: LoadWindow[] = [];
  /** Their seconds, summed. */
  #windowSeconds = 0;
  #lastMs = performance.now();
  #lastCpu = treeCpuSeconds(process.pid);
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly models: ModelManager,
    intervalMs: number,
    private readonly cores = availableParallelism(),
  ) {
    this.#oob = new OrcaStreams(() => this.#report, intervalMs);
    this.#timer = setInterval(() => this.sample(), intervalMs);
    this.#timer.unref();
  }

  get current(): LoadReport {
    return this.#report;
  }

  /** Serves OpenRcaService on `server` (before it binds). */
  addToServer(server: Server): void {
    server.addService(orcaServiceDefinition, this.#oob.handlers);
  }

  /**
   * The latest report as a call's trailers, shared by every call of the window (grpc-js clones the trailers it
   * is given). Not grpc-js's per-call recorder (grpc.server_call_metric_recording): its 1.14 parses the ORCA
   * .proto files again on every call, which cut this gateway's throughput twentyfold.
   */
  get trailer(): Metadata {
    return this.#trailer;
  }

  /** Adds the latest report to an error's trailers. */
  addTo(metadata: Metadata): void {
    metadata.set(ORCA_TRAILER, this.#encoded);
  }

  sample(): void {
    const now = performance.now();
    const windowNs = (now - this.#lastMs) * 1e6;
    const cpu = treeCpuSeconds(process.pid);
    let requests = 0;
    let failures = 0;
    let busyNs = 0;
    let queuedNs = 0;
    let instances = 0;
    const seen = new WeakMap<ModelVersionStatistics, LoadCounts>();
    for (const version of this.models.list()) {
      const serving = version.serving;
      if (!serving) continue;
      const counts = serving.stats.loadCounts();
      const before = this.#seen.get(serving.stats);
      seen.set(serving.stats, counts);
      requests += counts.requests - (before?.requests ?? 0);
      failures += counts.failures - (before?.failures ?? 0);
      const slots = serving.slots;
      const running = slots.instanceCount - slots.idle;
      // Executions are counted when they end: one that outlasts the window still kept its instance busy.
      const ended = counts.busyNs - (before?.busyNs ?? 0);
      const busy = ended === 0 ? running * windowNs : ended;
      const pending = serving.scheduler.pending;
      // Only versions at work count their instances: with many models, idle ones' instances are no capacity
      // of the busy ones (they share the workers' threads).
      if (busy === 0 && pending === 0) continue;
      busyNs += busy;
      if (counts.requests > 0) queuedNs += pending * (counts.busyNs / counts.requests);
      instances += slots.instanceCount;
    }
    this.#seen = seen;
    this.#windows.push({ seconds: windowNs / 1e9, cpuSeconds: cpu - this.#lastCpu, cores: this.cores, requests, failures, busyNs, queuedNs, instances });
    this.#windowSeconds += windowNs / 1e9;
    while (this.#windows.length > 1 && this.#windowSeconds - (this.#windows[0] as LoadWindow).seconds >= MAX_SPAN_SECONDS) {
      this.#windowSeconds -= (this.#windows.shift() as LoadWindow).seconds;
    }
    this.#report = spanReport(this.#windows);
    this.#lastMs = now;
    this.#lastCpu = cpu;
    this.#encoded = Buffer.from(encodeOrcaReport(this.#report));
    const trailer = new Metadata();
    trailer.set(ORCA_TRAILER, this.#encoded);
    this.#trailer = trailer;
  }

  /** Stops sampling and ends the out-of-band streams. */
  stop(): void {
    clearInterval(this.#timer);
    this.#oob.endAll();
  }
}
