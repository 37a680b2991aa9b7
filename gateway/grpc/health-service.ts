// gRPC's standard health service (grpc.health.v1.Health): what Kubernetes'
// gRPC probes, Envoy's and cloud load balancers' gRPC health checks,
// grpc-health-probe and gRPC clients' own health checking call. The server
// ('') and the inference service by its full name are SERVING exactly when
// ServerReady is true (not draining; with --strict-readiness, every model
// READY), as Triton answers Check. Beyond Triton, which has Check only and
// answers every name alike: 'readiness' is the same, and 'liveness' is
// SERVING while the process answers (ServerLive), the names Kubernetes'
// example gRPC server takes, so that a gateway with --allow-http false still
// has a liveness probe that does not restart it while it drains or waits
// for a model; any other name is NOT_FOUND; Watch streams each change (an
// unknown name gets SERVICE_UNKNOWN and the stream stays open, as the
// protocol says); List names them all.
//
// Ours rather than grpc-health-check's HealthImplementation: its Watch
// streams never end, so a balancer watching would hold a graceful shutdown
// until --exit-timeout-secs, and it parses the .proto at start (48 ms). The
// three messages are coded by hand, as ORCA's are (load/orca-service.ts); the
// tests check them against grpc-health-check's definitions.
import { type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, type ServiceDefinition, status as GrpcStatus } from '@grpc/grpc-js';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { boundedMessage } from '../../core/errors.js';

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

const STATUS_NUMBERS: Readonly<Record<ServingStatus, number>> = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 };
const STATUS_NAMES: readonly ServingStatus[] = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

/** The names a health check answers for by readiness: the whole server, the inference service by its full name, and Kubernetes' readiness probe's. */
export const READINESS_NAMES: readonly string[] = ['', 'inference.GRPCInferenceService', 'readiness'];
/** The name that answers as ServerLive does: SERVING while the process answers. */
export const LIVENESS_NAME = 'liveness';

/** How often open Watch streams look for a change in readiness (a drain is told at once: ServerHealth.refresh). */
export const WATCH_INTERVAL_MS = 1000;

/** HealthCheckRequest { string service = 1; } */
export interface HealthCheckRequest {
  readonly service: string;
}

export function decodeHealthCheckRequest(bytes: Uint8Array): HealthCheckRequest {
  const reader = new BinaryReader(bytes);
  let service = '';
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) service = reader.string();
    else reader.skip(wireType);
  }
  return { service };
}

export function encodeHealthCheckRequest(request: HealthCheckRequest): Uint8Array {
  const writer = new BinaryWriter();
  if (request.service !== '') writer.tag(1, WireType.LengthDelimited).string(request.service);
  return writer.finish();
}

/** HealthCheckResponse { ServingStatus status = 1; } into `writer` (proto3: UNKNOWN, 0, is left out). */
function writeStatus(writer: BinaryWriter, status: ServingStatus): BinaryWriter {
  const n = STATUS_NUMBERS[status];
  if (n !== 0) writer.tag(1, WireType.Varint).int32(n);
  return writer;
}

export function encodeHealthCheckResponse(status: ServingStatus): Uint8Array {
  return writeStatus(new BinaryWriter(), status).finish();
}

export function decodeHealthCheckResponse(bytes: Uint8Array): ServingStatus {
  const reader = new BinaryReader(bytes);
  let status: ServingStatus = 'UNKNOWN';
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    // An enum value this side does not know reads as UNKNOWN.
    if (field === 1 && wireType === WireType.Varint) status = STATUS_NAMES[reader.int32()] ?? 'UNKNOWN';
    else reader.skip(wireType);
  }
  return status;
}

/** HealthListResponse { map<string, HealthCheckResponse> statuses = 1; }: each entry a message { key = 1; value = 2; }. */
export function encodeHealthListResponse(statuses: ReadonlyMap<string, ServingStatus>): Uint8Array {
  const writer = new BinaryWriter();
  for (const [name, status] of statuses) {
    writer.tag(1, WireType.LengthDelimited).fork();
    writer.tag(1, WireType.LengthDelimited).string(name);
    writer.tag(2, WireType.LengthDelimited).fork();
    writeStatus(writer, status).join();
    writer.join();
  }
  return writer.finish();
}

export function decodeHealthListResponse(bytes: Uint8Array): Map<string, ServingStatus> {
  const reader = new BinaryReader(bytes);
  const out = new Map<string, ServingStatus>();
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field !== 1 || wireType !== WireType.LengthDelimited) {
      reader.skip(wireType);
      continue;
    }
    const entry = new BinaryReader(reader.bytes());
    let name = '';
    let status: ServingStatus = 'UNKNOWN';
    while (entry.pos < entry.len) {
      const [f, w] = entry.tag();
      if (f === 1 && w === WireType.LengthDelimited) name = entry.string();
      else if (f === 2 && w === WireType.LengthDelimited) status = decodeHealthCheckResponse(entry.bytes());
      else entry.skip(w);
    }
    out.set(name, status);
  }
  return out;
}

const bytesOf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** Check and Watch take a HealthCheckRequest and answer HealthCheckResponses. */
const checkMessages = {
  requestStream: false,
  requestSerialize: (r: HealthCheckRequest): Buffer => bytesOf(encodeHealthCheckRequest(r)),
  requestDeserialize: (bytes: Buffer): HealthCheckRequest => decodeHealthCheckRequest(bytes),
  responseSerialize: (s: ServingStatus): Buffer => bytesOf(encodeHealthCheckResponse(s)),
  responseDeserialize: (bytes: Buffer): ServingStatus => decodeHealthCheckResponse(bytes),
} as const;

export const healthServiceDefinition: ServiceDefinition = {
  Check: { path: '/grpc.health.v1.Health/Check', responseStream: false, ...checkMessages },
  Watch: { path: '/grpc.health.v1.Health/Watch', responseStream: true, ...checkMessages },
  List: {
    path: '/grpc.health.v1.Health/List',
    requestStream: false,
    responseStream: false,
    // HealthListRequest has no fields.
    requestSerialize: (): Buffer => Buffer.alloc(0),
    requestDeserialize: (): Record<string, never> => ({}),
    responseSerialize: (m: ReadonlyMap<string, ServingStatus>): Buffer => bytesOf(encodeHealthListResponse(m)),
    responseDeserialize: (bytes: Buffer): Map<string, ServingStatus> => decodeHealthListResponse(bytes),
  },
};

type WatchCall = ServerWritableStream<HealthCheckRequest, ServingStatus>;

/** A Watch stream of a known name, and the status it was last sent. */
interface Watching {
  readonly name: string;
  sent: ServingStatus;
}

/** The health service of one gateway process: answers from `ready` (ServerReady's rule), and ends its Watch streams on shutdown. */
export class ServerHealth {
  /** Open Watch streams of a known name. */
  readonly #watching = new Map<WatchCall, Watching>();
  /** Open Watch streams of an unknown name: sent SERVICE_UNKNOWN, kept open until the client or the shutdown ends them. */
  readonly #unknown = new Set<WatchCall>();
  #timer: NodeJS.Timeout | undefined;
  /** endAll was called: a Watch arriving later gets the status and its end at once. */
  #ended = false;

  constructor(private readonly ready: () => boolean) {}

  /** The status of `name` now; undefined for a name it does not answer for. */
  statusOf(name: string): ServingStatus | undefined {
    return statusFor(name, this.ready);
  }

  /** Readiness looked at once for many names (it walks every model version under --strict-readiness). */
  #once(): () => boolean {
    let ready: boolean | undefined;
    return () => (ready ??= this.ready());
  }

  /** Open Watch streams (known names and unknown). */
  get watchers(): number {
    return this.#watching.size + this.#unknown.size;
  }

  readonly handlers = {
    Check: (call: ServerUnaryCall<HealthCheckRequest, ServingStatus>, callback: sendUnaryData<ServingStatus>): void => {
      const name = call.request.service;
      const status = this.statusOf(name);
      if (status !== undefined) callback(null, status);
      else callback({ code: GrpcStatus.NOT_FOUND, details: boundedMessage(unknownService(name)) });
    },
    Watch: (call: WatchCall): void => {
      const forget = (): void => {
        this.#watching.delete(call);
        this.#unknown.delete(call);
        if (this.#watching.size === 0 && this.#timer !== undefined) {
          clearInterval(this.#timer);
          this.#timer = undefined;
        }
      };
      call.on('cancelled', forget);
      call.on('error', forget);
      const name = call.request.service;
      const status = this.statusOf(name);
      if (status === undefined) {
        call.write('SERVICE_UNKNOWN');
        if (this.#ended) call.end();
        else this.#unknown.add(call);
        return;
      }
      call.write(status);
      if (this.#ended) {
        call.end();
        return;
      }
      this.#watching.set(call, { name, sent: status });
      if (this.#timer === undefined) {
        this.#timer = setInterval(() => this.refresh(), WATCH_INTERVAL_MS);
        this.#timer.unref();
      }
    },
    List: (_call: ServerUnaryCall<Record<string, never>, ReadonlyMap<string, ServingStatus>>, callback: sendUnaryData<ReadonlyMap<string, ServingStatus>>): void => {
      const ready = this.#once();
      callback(null, new Map([...READINESS_NAMES, LIVENESS_NAME].map((name) => [name, statusFor(name, ready) ?? 'UNKNOWN'])));
    },
  };

  /** Looks at readiness now, and sends each Watch stream of a known name the status if it changed (a drain calls it as it starts). */
  refresh(): void {
    const ready = this.#once();
    for (const [call, watching] of this.#watching) {
      const status = statusFor(watching.name, ready) ?? 'UNKNOWN';
      if (watching.sent === status) continue;
      watching.sent = status;
      call.write(status);
    }
  }

  /** Ends every Watch stream (OK), so that a graceful shutdown does not wait on the balancers watching. */
  endAll(): void {
    this.#ended = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    for (const call of [...this.#watching.keys(), ...this.#unknown]) call.end();
    this.#watching.clear();
    this.#unknown.clear();
  }
}

function statusFor(name: string, ready: () => boolean): ServingStatus | undefined {
  if (READINESS_NAMES.includes(name)) return ready() ? 'SERVING' : 'NOT_SERVING';
  return name === LIVENESS_NAME ? 'SERVING' : undefined;
}

function unknownService(name: string): string {
  return `unknown service '${name}': the health service answers for '', 'inference.GRPCInferenceService' and 'readiness' (ServerReady) and 'liveness' (ServerLive); a model's readiness is ModelReady`;
}
