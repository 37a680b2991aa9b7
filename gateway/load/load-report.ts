// The load a gateway reports to balancers, in ORCA's terms (xds.data.orca.v3
// OrcaLoadReport), from one window's counts (pure: the reporter samples).
// gRPC's weighted_round_robin weighs an endpoint by
// rps_fractional / (application_utilization + eps / rps · penalty), so the
// utilisation must say how full the endpoint is for the traffic it gets.

export interface LoadReport {
  /** Cores the gateway's process tree (gateway + local workers) kept busy, over the host's cores. */
  readonly cpuUtilization: number;
  /**
   * The instances' time the window's executions took, plus the work queued now
   * (its requests at their mean measured cost), over the instances' time in the
   * window. 1 = every instance busy all the time; above 1 = a backlog.
   */
  readonly applicationUtilization: number;
  /** Requests ended per second (answered or failed). */
  readonly rpsFractional: number;
  /** Requests failed per second. */
  readonly eps: number;
}

export const IDLE_LOAD: LoadReport = { cpuUtilization: 0, applicationUtilization: 0, rpsFractional: 0, eps: 0 };

/** What one window saw, as differences of cumulative counts, and the queue now. */
export interface LoadWindow {
  readonly seconds: number;
  /** CPU seconds the process tree used in the window (NaN when unknown). */
  readonly cpuSeconds: number;
  readonly cores: number;
  readonly requests: number;
  readonly failures: number;
  /** ns the instances spent executing batches in the window. */
  readonly busyNs: number;
  /** Expected ns of the work queued now. */
  readonly queuedNs: number;
  /** Instances of the versions that executed or queued work in the window, all workers. */
  readonly instances: number;
}

const finiteOrZero = (x: number): number => (Number.isFinite(x) && x > 0 ? x : 0);

export function loadReport(w: LoadWindow): LoadReport {
  if (!(w.seconds > 0)) return IDLE_LOAD;
  const instanceNs = w.seconds * 1e9 * w.instances;
  return {
    cpuUtilization: finiteOrZero(w.cpuSeconds / w.seconds / w.cores),
    applicationUtilization: instanceNs > 0 ? finiteOrZero((w.busyNs + w.queuedNs) / instanceNs) : 0,
    rpsFractional: finiteOrZero(w.requests / w.seconds),
    eps: finiteOrZero(w.failures / w.seconds),
  };
}

/** The longest span a report looks back over for a request (see spanReport). */
export const MAX_SPAN_SECONDS = 10;

/**
 * The report over the latest windows (oldest first): the newest, and the
 * ones before it back to the last that saw a request, within
 * MAX_SPAN_SECONDS. weighted_round_robin skips a report of 0 rps or 0
 * utilisation and keeps the weight it had; so a gateway that got a low
 * weight in a slow moment (a busy second, a model moving threads), and then
 * fewer requests than one per window, kept reporting nothing it could use
 * and stayed starved until its weight expired (seen in CI: 1 % of the
 * traffic to the faster gateway for 9 s). Over the span back to its last
 * request its rate and its mostly idle instances read as what they are: a
 * high weight. The work queued counts as the newest window saw it; the
 * instances are the most any window in the span had at work, over the
 * whole span.
 */
export function spanReport(windows: readonly LoadWindow[]): LoadReport {
  const newest = windows[windows.length - 1];
  if (newest === undefined) return IDLE_LOAD;
  let span: LoadWindow = newest;
  for (let i = windows.length - 2; i >= 0 && span.requests === 0; i--) {
    const w = windows[i] as LoadWindow;
    if (span.seconds + w.seconds > MAX_SPAN_SECONDS) break;
    span = {
      seconds: span.seconds + w.seconds,
      cpuSeconds: span.cpuSeconds + w.cpuSeconds,
      cores: span.cores,
      requests: span.requests + w.requests,
      failures: span.failures + w.failures,
      busyNs: span.busyNs + w.busyNs,
      queuedNs: span.queuedNs,
      instances: Math.max(span.instances, w.instances),
    };
  }
  return loadReport(span);
}

/** ORCA's field names, for the HTTP endpoint. */
export function orcaJson(r: LoadReport): Record<string, number> {
  return { cpu_utilization: r.cpuUtilization, application_utilization: r.applicationUtilization, rps_fractional: r.rpsFractional, eps: r.eps };
}
