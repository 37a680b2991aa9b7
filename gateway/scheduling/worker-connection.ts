import {
  type CallOptions,
  type ClientUnaryCall,
  type Metadata,
  type ServiceError,
  credentials,
  Metadata as GrpcMetadata,
  status as GrpcStatus,
} from '@grpc/grpc-js';
import { ServingError } from '../../core/errors.js';
import {
  type ExecuteRequest,
  type ExecuteResponse,
  type LoadModelRequest,
  type LoadModelResponse,
  type StatusResponse,
  WorkerClient,
} from '../../proto/gen/worker.js';

/** Where a worker is and what it runs on. */
export interface WorkerEndpoint {
  readonly id: string;
  /** grpc target: `unix:/path.sock` or `host:port`. */
  readonly address: string;
  readonly deviceKind: 'cpu' | 'gpu';
  readonly deviceId: number;
}

type Callback<Res> = (error: ServiceError | null, response: Res) => void;
type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: Callback<Res>,
) => ClientUnaryCall;

/**
 * Is this failure the worker's process or connection going away (so the work
 * may be retried elsewhere), rather than an answer from a healthy worker?
 */
export function isWorkerLost(error: unknown): boolean {
  return error instanceof WorkerLostError;
}

/** The worker did not answer: it died, or its connection broke. */
export class WorkerLostError extends ServingError {
  override name = 'WorkerLostError';
}

/** The gateway's connection to one worker process (internal gRPC). */
export class WorkerConnection {
  readonly endpoint: WorkerEndpoint;
  readonly #client: WorkerClient;

  constructor(endpoint: WorkerEndpoint, maxMessageBytes: number) {
    this.endpoint = endpoint;
    this.#client = new WorkerClient(endpoint.address, credentials.createInsecure(), {
      'grpc.max_receive_message_length': maxMessageBytes,
      'grpc.max_send_message_length': maxMessageBytes,
      // Workers are local or on a trusted network; keep the channel warm.
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
    });
  }

  loadModel(request: LoadModelRequest, timeoutMs = 10 * 60_000): Promise<LoadModelResponse> {
    return this.#call(this.#client.loadModel.bind(this.#client), request, Date.now() + timeoutMs);
  }

  unloadModel(modelKey: string, timeoutMs = 5 * 60_000): Promise<void> {
    return this.#call(this.#client.unloadModel.bind(this.#client), { modelKey }, Date.now() + timeoutMs).then(
      () => undefined,
    );
  }

  execute(request: ExecuteRequest, deadline: number): Promise<ExecuteResponse> {
    return this.#call(this.#client.execute.bind(this.#client), request, deadline);
  }

  status(timeoutMs = 5_000): Promise<StatusResponse> {
    return this.#call(this.#client.status.bind(this.#client), {}, Date.now() + timeoutMs);
  }

  close(): void {
    this.#client.close();
  }

  #call<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, deadline: number): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const options: Partial<CallOptions> = Number.isFinite(deadline) ? { deadline } : {};
      method(request, new GrpcMetadata(), options, (error, response) => {
        if (error) reject(this.#translate(error));
        else resolve(response);
      });
    });
  }

  /** Worker answers keep their code; transport failures become WorkerLostError. */
  #translate(error: ServiceError): ServingError {
    const who = `worker ${this.endpoint.id}`;
    // A worker's own answers carry a status it chose. UNAVAILABLE without a
    // worker message, or CANCELLED/INTERNAL raised by the transport, mean the
    // process or connection is gone.
    if (error.code === GrpcStatus.UNAVAILABLE || error.code === GrpcStatus.CANCELLED) {
      return new WorkerLostError(GrpcStatus.UNAVAILABLE, `${who} is unavailable: ${error.details}`, {
        cause: error,
      });
    }
    if (error.code === GrpcStatus.DEADLINE_EXCEEDED) {
      return new ServingError(GrpcStatus.DEADLINE_EXCEEDED, `deadline exceeded while ${who} was running the request`);
    }
    if (error.code === GrpcStatus.INTERNAL && /stream|connection|protocol|RST_STREAM/i.test(error.details)) {
      return new WorkerLostError(GrpcStatus.UNAVAILABLE, `${who} connection failed: ${error.details}`, {
        cause: error,
      });
    }
    return new ServingError(error.code, error.details, { cause: error });
  }
}
