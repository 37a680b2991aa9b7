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
// messages are ts-proto's, generated from proto/health.proto as the KServe
// ones are (npm run proto); the tests check them against grpc-health-check's
// definitions.
import { type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, status as GrpcStatus } from '@grpc/grpc-js';
import { boundedMessage } from '../../core/errors.js';
import {
  type HealthCheckRequest,
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthListRequest,
  type HealthListResponse,
  type HealthServer,
} from '../../proto/gen/health.js';

export { HealthService as healthServiceDefinition } from '../../proto/gen/health.js';
export { ServingStatus };

/** The names a health check answers for by readiness: the whole server, the inference service by its full name, and Kubernetes' readiness probe's. */
export const READINESS_NAMES: readonly string[] = ['', 'inference.GRPCInferenceService', 'readiness'];
/** The name that answers as ServerLive does: SERVING while the process answers. */
export const LIVENESS_NAME = 'liveness';

/** How often open Watch streams look for a change in readiness (a drain is told at once: ServerHealth.refresh). */
export const WATCH_INTERVAL_MS = 1000;

const answer = (status: ServingStatus): HealthCheckResponse => ({ status });

type WatchCall = ServerWritableStream<HealthCheckRequest, HealthCheckResponse>;

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

  readonly handlers: HealthServer = {
    check: (call: ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, callback: sendUnaryData<HealthCheckResponse>): void => {
      const name = call.request.service;
      const status = this.statusOf(name);
      if (status !== undefined) callback(null, answer(status));
      else callback({ code: GrpcStatus.NOT_FOUND, details: boundedMessage(unknownService(name)) });
    },
    watch: (call: WatchCall): void => {
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
        call.write(answer(ServingStatus.SERVICE_UNKNOWN));
        if (this.#ended) call.end();
        else this.#unknown.add(call);
        return;
      }
      call.write(answer(status));
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
    list: (_call: ServerUnaryCall<HealthListRequest, HealthListResponse>, callback: sendUnaryData<HealthListResponse>): void => {
      const ready = this.#once();
      const statuses: HealthListResponse['statuses'] = {};
      for (const name of [...READINESS_NAMES, LIVENESS_NAME]) statuses[name] = answer(statusFor(name, ready) ?? ServingStatus.UNKNOWN);
      callback(null, { statuses });
    },
  };

  /** Looks at readiness now, and sends each Watch stream of a known name the status if it changed (a drain calls it as it starts). */
  refresh(): void {
    const ready = this.#once();
    for (const [call, watching] of this.#watching) {
      const status = statusFor(watching.name, ready) ?? ServingStatus.UNKNOWN;
      if (watching.sent === status) continue;
      watching.sent = status;
      call.write(answer(status));
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
  if (READINESS_NAMES.includes(name)) return ready() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  return name === LIVENESS_NAME ? ServingStatus.SERVING : undefined;
}

function unknownService(name: string): string {
  return `unknown service '${name}': the health service answers for '', 'inference.GRPCInferenceService' and 'readiness' (ServerReady) and 'liveness' (ServerLive); a model's readiness is ModelReady`;
}
