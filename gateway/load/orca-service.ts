// ORCA's out-of-band service (xds.service.orca.v3.OpenRcaService): a client
// opens StreamCoreMetrics and gets the gateway's load at the interval it asks
// (never faster than the gateway samples). Ours rather than grpc-js's
// ServerMetricRecorder: its streams never end, so a connected balancer would
// hold a graceful shutdown until --exit-timeout-secs; these end when asked.
// The two messages have a handful of scalar fields, coded here by hand.
import { type ServerWritableStream, type ServiceDefinition } from '@grpc/grpc-js';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { type LoadReport } from './load-report.js';

/** The longest delay a timer takes (2^31 − 1 ms, about 24.8 days). */
const MAX_INTERVAL_MS = 2 ** 31 - 1;

/** OrcaLoadReportRequest: the interval asked for, in ms (0 = none asked). */
export interface OrcaRequest {
  readonly reportIntervalMs: number;
}

export function decodeOrcaRequest(bytes: Uint8Array): OrcaRequest {
  const reader = new BinaryReader(bytes);
  let reportIntervalMs = 0;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      // google.protobuf.Duration { int64 seconds = 1; int32 nanos = 2; }
      const duration = new BinaryReader(reader.bytes());
      let seconds = 0;
      let nanos = 0;
      while (duration.pos < duration.len) {
        const [f, w] = duration.tag();
        if (f === 1 && w === WireType.Varint) seconds = Number(duration.int64());
        else if (f === 2 && w === WireType.Varint) nanos = duration.int32();
        else duration.skip(w);
      }
      // Within setInterval's range: a longer delay fires at once, every millisecond.
      reportIntervalMs = Math.min(MAX_INTERVAL_MS, Math.max(0, seconds * 1000 + nanos / 1e6));
    } else {
      reader.skip(wireType); // request_cost_names: none are kept
    }
  }
  return { reportIntervalMs };
}

/** OrcaLoadReport's fields that a gateway reports (proto3: zeros are left out). */
export function encodeOrcaReport(r: LoadReport): Uint8Array {
  const writer = new BinaryWriter();
  const double = (field: number, value: number): void => {
    if (value !== 0) writer.tag(field, WireType.Bit64).double(value);
  };
  double(1, r.cpuUtilization);
  double(6, r.rpsFractional);
  double(7, r.eps);
  double(9, r.applicationUtilization);
  return writer.finish();
}

/** The four fields back (tests and clients of the trailer). */
export function decodeOrcaReport(bytes: Uint8Array): LoadReport {
  const reader = new BinaryReader(bytes);
  const out = { cpuUtilization: 0, applicationUtilization: 0, rpsFractional: 0, eps: 0 };
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (wireType !== WireType.Bit64) {
      reader.skip(wireType);
      continue;
    }
    const value = reader.double();
    if (field === 1) out.cpuUtilization = value;
    else if (field === 6) out.rpsFractional = value;
    else if (field === 7) out.eps = value;
    else if (field === 9) out.applicationUtilization = value;
  }
  return out;
}

export const orcaServiceDefinition: ServiceDefinition = {
  StreamCoreMetrics: {
    path: '/xds.service.orca.v3.OpenRcaService/StreamCoreMetrics',
    requestStream: false,
    responseStream: true,
    requestSerialize: () => Buffer.alloc(0),
    requestDeserialize: (bytes: Buffer): OrcaRequest => decodeOrcaRequest(bytes),
    responseSerialize: (report: LoadReport): Buffer => Buffer.from(encodeOrcaReport(report)),
    responseDeserialize: (bytes: Buffer): LoadReport => decodeOrcaReport(bytes),
  },
};

/** The open StreamCoreMetrics calls; each is written the current report at its interval. */
export class OrcaStreams {
  readonly #open = new Map<ServerWritableStream<OrcaRequest, LoadReport>, NodeJS.Timeout>();

  constructor(
    private readonly current: () => LoadReport,
    /** The shortest interval granted: the gateway's sampling interval. */
    private readonly minIntervalMs: number,
  ) {}

  readonly handlers = {
    StreamCoreMetrics: (call: ServerWritableStream<OrcaRequest, LoadReport>): void => {
      const intervalMs = Math.max(this.minIntervalMs, call.request.reportIntervalMs);
      call.write(this.current());
      this.#open.set(
        call,
        setInterval(() => call.write(this.current()), intervalMs),
      );
      const close = (): void => {
        clearInterval(this.#open.get(call));
        this.#open.delete(call);
      };
      call.on('cancelled', close);
      call.on('error', close);
    },
  };

  /** Ends every stream (OK), so that a graceful shutdown does not wait on balancers. */
  endAll(): void {
    for (const [call, timer] of this.#open) {
      clearInterval(timer);
      call.end();
    }
    this.#open.clear();
  }
}
