import {
  type CallOptions,
  type ClientUnaryCall,
  type Metadata,
  type ServiceError,
  credentials,
  Metadata as GrpcMetadata,
} from '@grpc/grpc-js';
import {
  GRPCInferenceServiceClient,
  type ModelConfigResponse,
  type ModelInferRequest,
  type ModelInferResponse,
  type ModelMetadataResponse,
  type ModelStatisticsResponse,
  type RepositoryIndexResponse,
  type ServerMetadataResponse,
} from '../proto/gen/inference.js';

export interface ClientOptions {
  /** Largest message sent or received (default 1 GiB; gRPC's own default is 4 MiB). */
  readonly maxMessageBytes?: number;
  /** Connect with TLS (plaintext when absent). PEM contents, not paths. */
  readonly tls?: ClientTlsOptions;
}

export interface ClientTlsOptions {
  /** CA bundle the server's certificate must chain to; default: the system's roots. */
  readonly rootCert?: Buffer;
  /** Client certificate chain and key, for servers that require mutual TLS. */
  readonly certChain?: Buffer;
  readonly privateKey?: Buffer;
}

export interface RequestOptions {
  /** Relative timeout in ms; becomes the gRPC deadline. */
  readonly timeoutMs?: number;
  readonly metadata?: Record<string, string>;
  readonly signal?: AbortSignal;
}

type Callback<Res> = (error: ServiceError | null, response: Res) => void;
type Method<Req, Res> = (req: Req, md: Metadata, opts: Partial<CallOptions>, cb: Callback<Res>) => ClientUnaryCall;

/** A promise-based client for the KServe v2 gRPC protocol (Fabriek, Triton, KServe). */
export class InferenceGrpcClient {
  readonly raw: GRPCInferenceServiceClient;

  constructor(address: string, options: ClientOptions = {}) {
    const max = options.maxMessageBytes ?? 1 << 30;
    const tls = options.tls;
    const channel = tls
      ? credentials.createSsl(tls.rootCert ?? null, tls.privateKey ?? null, tls.certChain ?? null)
      : credentials.createInsecure();
    this.raw = new GRPCInferenceServiceClient(address, channel, {
      'grpc.max_receive_message_length': max,
      'grpc.max_send_message_length': max,
    });
  }

  serverLive(o?: RequestOptions): Promise<boolean> {
    return this.#call(this.raw.serverLive, {}, o).then((r) => r.live);
  }

  serverReady(o?: RequestOptions): Promise<boolean> {
    return this.#call(this.raw.serverReady, {}, o).then((r) => r.ready);
  }

  serverMetadata(o?: RequestOptions): Promise<ServerMetadataResponse> {
    return this.#call(this.raw.serverMetadata, {}, o);
  }

  modelReady(name: string, version = '', o?: RequestOptions): Promise<boolean> {
    return this.#call(this.raw.modelReady, { name, version }, o).then((r) => r.ready);
  }

  modelMetadata(name: string, version = '', o?: RequestOptions): Promise<ModelMetadataResponse> {
    return this.#call(this.raw.modelMetadata, { name, version }, o);
  }

  modelConfig(name: string, version = '', o?: RequestOptions): Promise<ModelConfigResponse> {
    return this.#call(this.raw.modelConfig, { name, version }, o);
  }

  modelStatistics(name = '', version = '', o?: RequestOptions): Promise<ModelStatisticsResponse> {
    return this.#call(this.raw.modelStatistics, { name, version }, o);
  }

  repositoryIndex(ready = false, o?: RequestOptions): Promise<RepositoryIndexResponse> {
    return this.#call(this.raw.repositoryIndex, { repositoryName: '', ready }, o);
  }

  modelInfer(request: ModelInferRequest, o?: RequestOptions): Promise<ModelInferResponse> {
    return this.#call(this.raw.modelInfer, request, o);
  }

  close(): void {
    this.raw.close();
  }

  #call<Req, Res>(method: Method<Req, Res>, request: Req, o: RequestOptions = {}): Promise<Res> {
    const md = new GrpcMetadata();
    for (const [k, v] of Object.entries(o.metadata ?? {})) md.set(k, v);
    const opts: Partial<CallOptions> = o.timeoutMs !== undefined ? { deadline: Date.now() + o.timeoutMs } : {};
    return new Promise<Res>((resolve, reject) => {
      const signal = o.signal;
      const onAbort = (): void => call.cancel();
      const call = method.call(this.raw, request, md, opts, (error, response) => {
        // A long-lived signal shared by many calls must not collect listeners.
        signal?.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else resolve(response);
      });
      if (signal?.aborted) call.cancel();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
