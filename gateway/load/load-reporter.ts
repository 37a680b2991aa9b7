// Samples the gateway's load once per interval and hands the latest report to
// the three places balancers read it: ORCA's out-of-band OpenRcaService
// stream (orca-service.ts), the endpoint-load-metrics-bin
// trailer of each ModelInfer call, and GET /v2/health/load. Sampling walks
// the model versions off the request path; a call only copies four numbers.
import { availableParallelism } from 'node:os';
import { type Server, type ServerUnaryCall } from '@grpc/grpc-js';
import { treeCpuSeconds } from '../../core/process-cpu.js';
import { type ModelManager } from '../repository/model-manager.js';
import { type LoadCounts, type ModelVersionStatistics } from '../stats/model-statistics.js';
import { IDLE_LOAD, type LoadReport, loadReport } from './load-report.js';
import { OrcaStreams, orcaServiceDefinition } from './orca-service.js';

/** What grpc-js records a call's ORCA trailer into. */
export type CallMetricRecorder = ReturnType<ServerUnaryCall<unknown, unknown>['getMetricsRecorder']>;

export class LoadReporter {
  #report: LoadReport = IDLE_LOAD;
  readonly #oob: OrcaStreams;
  /** Last counts seen per statistics object: a reloaded version starts a new one. */
  #seen = new WeakMap<ModelVersionStatistics, LoadCounts>();
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

  /** The latest report into one call's ORCA trailer. */
  record(recorder: CallMetricRecorder): void {
    const r = this.#report;
    recorder.recordCPUUtilizationMetric(r.cpuUtilization);
    recorder.recordApplicationUtilizationMetric(r.applicationUtilization);
    recorder.recordQpsMetric(r.rpsFractional);
    recorder.recordEpsMetric(r.eps);
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
    this.#report = loadReport({
      seconds: windowNs / 1e9,
      cpuSeconds: cpu - this.#lastCpu,
      cores: this.cores,
      requests,
      failures,
      busyNs,
      queuedNs,
      instances,
    });
    this.#lastMs = now;
    this.#lastCpu = cpu;
  }

  /** Stops sampling and ends the out-of-band streams. */
  stop(): void {
    clearInterval(this.#timer);
    this.#oob.endAll();
  }
}
