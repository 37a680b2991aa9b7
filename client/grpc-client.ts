import {
  type CallOptions,
  type ChannelCredentials,
  type ClientUnaryCall,
  type Metadata,
  type requestCallback,
  type ServiceError,
  credentials,
  Metadata as GrpcMetadata,
  status as GrpcStatus,
} from '@grpc/grpc-js';
import { ModelConfig } from '../proto/gen/model_config.js';
import {
  GRPCInferenceServiceClient,
  GRPCInferenceServiceService,
  type ModelConfigResponse,
  ModelInferRequest,
  type ModelInferResponse,
  type ModelMetadataResponse,
  type ModelStatistics,
  type ModelStatisticsResponse,
  type RepositoryIndexResponse,
  type ServerMetadataResponse,
} from '../proto/gen/inference.js';
import { InferenceError, fromGrpcError } from './errors.js';
import { type GrpcInputEncoding, fromModelInferResponse, fromModelMetadata, toModelInferRequest } from './grpc-codec.js';
import {
  type InferenceClient,
  type InferOptions,
  type InferResult,
  type LoadModelOptions,
  type UnloadModelOptions,
  type SharedMemoryRegionStatus,
  type ModelConfigSummary,
  type ModelMetadata,
  type PreparedInfer,
  type PrepareOptions,
  type RequestOptions,
  type ServerMetadata,
  configText,
  deadlineOf,
} from './inference-client.js';
import { type InferInput } from './typed-tensors.js';

export type { RequestOptions } from './inference-client.js';

export interface KeepAliveOptions {
  /** Interval between HTTP/2 pings on a connection with calls in flight (default 300 000 ms). */
  readonly timeMs?: number;
  /** How long a ping may go unanswered before the connection is dropped (default 20 000 ms). */
  readonly timeoutMs?: number;
  /** Ping idle connections too (default false). */
  readonly permitWithoutCalls?: boolean;
}

export interface ClientOptions {
  /** Largest message sent or received (default 1 GiB; gRPC's own default is 4 MiB). */
  readonly maxMessageBytes?: number;
  /** Connect with TLS (plaintext when absent). PEM contents, not paths. Ignored when `credentials` is given. */
  readonly tls?: ClientTlsOptions;
  /**
   * HTTP/2 keep-alive pings, which find a dead peer during long calls. The
   * default interval (5 min) is the least a C++ gRPC server (Triton) accepts
   * without answering GOAWAY "too_many_pings".
   */
  readonly keepAlive?: KeepAliveOptions;
  /** Default: insecure (plain TCP). */
  readonly credentials?: ChannelCredentials;
  /** How typed inputs go on the wire (default raw). */
  readonly inputEncoding?: GrpcInputEncoding;
  /** Extra grpc-js channel options. */
  readonly channelOptions?: Readonly<Record<string, string | number>>;
  /** Metadata sent with every call, e.g. `{ authorization: 'Bearer KEY' }`; a call's own metadata wins. */
  readonly metadata?: Readonly<Record<string, string>>;
}

export interface ClientTlsOptions {
  /** CA bundle the server's certificate must chain to; default: the system's roots. */
  readonly rootCert?: Buffer;
  /** Client certificate chain and key, for servers that require mutual TLS. */
  readonly certChain?: Buffer;
  readonly privateKey?: Buffer;
}

type Callback<Res> = (error: ServiceError | null, response: Res) => void;
type Method<Req, Res> = (req: Req, md: Metadata, opts: Partial<CallOptions>, cb: Callback<Res>) => ClientUnaryCall;

const MODEL_INFER = GRPCInferenceServiceService.modelInfer;
/** A prepared request is its message's bytes already: grpc-js only frames them. */
const asEncoded = (b: Buffer): Buffer => b;

/** A ModelInferRequest encoded once (InferenceGrpcClient.prepareInfer). */
class PreparedGrpcInfer implements PreparedInfer {
  readonly protocol = 'grpc';
  readonly model: string;
  readonly bytes: Buffer;

  constructor(model: string, encoded: Uint8Array) {
    this.model = model;
    // A view, not a copy: the encoder's buffer is this request's alone.
    this.bytes = Buffer.from(encoded.buffer, encoded.byteOffset, encoded.byteLength);
  }

  get byteLength(): number {
    return this.bytes.byteLength;
  }
}

/**
 * A promise-based client for the KServe v2 gRPC protocol (Fabriek, Triton,
 * KServe). Two levels: the InferenceClient methods (`infer`,
 * `getModelMetadata`, … with typed tensors), and the wire-level methods
 * (`modelInfer`, `modelMetadata`, …) that take and give the protocol's
 * messages. Every failure is an InferenceError with the gRPC code.
 */
export class InferenceGrpcClient implements InferenceClient {
  readonly protocol = 'grpc';
  readonly address: string;
  readonly raw: GRPCInferenceServiceClient;
  readonly #encoding: GrpcInputEncoding;
  readonly #metadata: Readonly<Record<string, string>>;

  /** `address`: host:port, or grpc://host:port. */
  constructor(address: string, options: ClientOptions = {}) {
    const max = options.maxMessageBytes ?? 1 << 30;
    const k = options.keepAlive ?? {};
    this.address = address.replace(/^grpc:\/\//, '');
    this.#encoding = options.inputEncoding ?? 'raw';
    this.#metadata = options.metadata ?? {};
    const tls = options.tls;
    const channel =
      options.credentials ??
      (tls ? credentials.createSsl(tls.rootCert ?? null, tls.privateKey ?? null, tls.certChain ?? null) : credentials.createInsecure());
    this.raw = new GRPCInferenceServiceClient(this.address, channel, {
      'grpc.max_receive_message_length': max,
      'grpc.max_send_message_length': max,
      'grpc.keepalive_time_ms': k.timeMs ?? 300_000,
      'grpc.keepalive_timeout_ms': k.timeoutMs ?? 20_000,
      'grpc.keepalive_permit_without_calls': k.permitWithoutCalls === true ? 1 : 0,
      ...options.channelOptions,
    });
  }

  // --- InferenceClient ---------------------------------------------------

  isServerLive(o?: RequestOptions): Promise<boolean> {
    return this.serverLive(o);
  }

  isServerReady(o?: RequestOptions): Promise<boolean> {
    return this.serverReady(o);
  }

  isModelReady(model: string, version = '', o?: RequestOptions): Promise<boolean> {
    return this.modelReady(model, version, o);
  }

  getServerMetadata(o?: RequestOptions): Promise<ServerMetadata> {
    return this.serverMetadata(o);
  }

  async getModelMetadata(model: string, version = '', o?: RequestOptions): Promise<ModelMetadata> {
    return fromModelMetadata(await this.modelMetadata(model, version, o));
  }

  async getModelConfig(model: string, version = '', o?: RequestOptions): Promise<ModelConfigSummary> {
    const config = (await this.modelConfig(model, version, o)).config ?? ModelConfig.fromPartial({});
    return { name: config.name, maxBatchSize: config.maxBatchSize, dynamicBatching: config.schedulingChoice?.$case === 'dynamicBatching', config };
  }

  async getInferenceStatistics(model = '', version = '', o?: RequestOptions): Promise<ModelStatistics[]> {
    return (await this.modelStatistics(model, version, o)).modelStats;
  }

  async loadModel(model: string, o: LoadModelOptions = {}): Promise<void> {
    const parameters = o.config === undefined ? {} : { config: { parameterChoice: { $case: 'stringParam' as const, value: configText(o.config) } } };
    await this.#call(this.raw.repositoryModelLoad, { repositoryName: '', modelName: model, parameters }, o);
  }

  async unloadModel(model: string, o: UnloadModelOptions = {}): Promise<void> {
    const parameters = o.unloadDependents === undefined ? {} : { unload_dependents: { parameterChoice: { $case: 'boolParam' as const, value: o.unloadDependents } } };
    await this.#call(this.raw.repositoryModelUnload, { repositoryName: '', modelName: model, parameters }, o);
  }

  async registerSystemSharedMemory(name: string, key: string, byteSize: number, offset = 0, o?: RequestOptions): Promise<void> {
    await this.#call(this.raw.systemSharedMemoryRegister, { name, key, offset: BigInt(offset), byteSize: BigInt(byteSize) }, o);
  }

  async unregisterSystemSharedMemory(name = '', o?: RequestOptions): Promise<void> {
    await this.#call(this.raw.systemSharedMemoryUnregister, { name }, o);
  }

  async getSystemSharedMemoryStatus(name = '', o?: RequestOptions): Promise<SharedMemoryRegionStatus[]> {
    const { regions } = await this.#call(this.raw.systemSharedMemoryStatus, { name }, o);
    return Object.values(regions).map((r) => ({ name: r.name, key: r.key, offset: Number(r.offset), byteSize: Number(r.byteSize) }));
  }

  async infer(model: string, inputs: readonly InferInput[], o: InferOptions = {}): Promise<InferResult> {
    return fromModelInferResponse(await this.modelInfer(toModelInferRequest(model, inputs, o, this.#encoding), o));
  }

  prepareInfer(model: string, inputs: readonly InferInput[], o: PrepareOptions = {}): PreparedInfer {
    return new PreparedGrpcInfer(model, ModelInferRequest.encode(toModelInferRequest(model, inputs, o, this.#encoding)).finish());
  }

  async inferPrepared(prepared: PreparedInfer, o?: RequestOptions): Promise<InferResult> {
    if (!(prepared instanceof PreparedGrpcInfer)) {
      throw new InferenceError(GrpcStatus.INVALID_ARGUMENT, `a request prepared by a ${prepared.protocol} client cannot be sent over gRPC`);
    }
    const send: Method<Buffer, ModelInferResponse> = (req, md, opts, cb) =>
      // grpc-js types the answer as possibly undefined; #call reads it only without an error, when it is set.
      this.raw.makeUnaryRequest(MODEL_INFER.path, asEncoded, MODEL_INFER.responseDeserialize, req, md, opts, cb as requestCallback<ModelInferResponse>);
    return fromModelInferResponse(await this.#call(send, prepared.bytes, o));
  }

  // --- wire level -------------------------------------------------------

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
    for (const [k, v] of Object.entries({ ...this.#metadata, ...o.metadata })) md.set(k, v);
    const deadline = deadlineOf(o);
    const opts: Partial<CallOptions> = deadline !== undefined ? { deadline } : {};
    return new Promise<Res>((resolve, reject) => {
      const signal = o.signal;
      const onAbort = (): void => call.cancel();
      const call = method.call(this.raw, request, md, opts, (error, response) => {
        // A long-lived signal shared by many calls must not collect listeners.
        signal?.removeEventListener('abort', onAbort);
        if (error) reject(fromGrpcError(error));
        else resolve(response);
      });
      if (signal?.aborted) call.cancel();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
