// What both clients (gRPC and HTTP) offer, in one protocol-neutral shape,
// named after Triton's client libraries (is_server_live, get_model_metadata,
// infer, …) so code moves between protocols by changing one constructor.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { type Datatype, isDatatype } from '../core/datatypes.js';
import { type ModelStatistics } from '../proto/gen/inference.js';
import { InferenceError } from './errors.js';
import { type InferInput, type ParameterValue, type SharedMemoryPlace, type TensorData, decodeRaw, encodeRaw } from './typed-tensors.js';

export interface RequestOptions {
  /** Relative timeout in ms: the gRPC deadline, or the HTTP request's time limit. */
  readonly timeoutMs?: number;
  /** Absolute deadline (ms since the epoch); the earlier of this and timeoutMs applies. */
  readonly deadline?: number;
  /** gRPC metadata, or HTTP headers. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Aborting cancels the call: CANCELLED. */
  readonly signal?: AbortSignal;
}

export interface InferOptions extends RequestOptions {
  /** Model version; empty or absent = the server's choice (latest). */
  readonly version?: string;
  /** Request id, echoed in the answer. */
  readonly id?: string;
  /** Outputs to return; absent = all of them (or only those in `classification`). */
  readonly outputs?: readonly string[];
  /**
   * Outputs to return as their K largest elements per batch item (Triton's
   * classification extension): output name → K. Each comes back as BYTES
   * strings "value:index" or "value:index:label" (labels from the model's
   * label_filename), largest first. They are asked for besides `outputs`.
   */
  readonly classification?: Readonly<Record<string, number>>;
  /**
   * Outputs the server writes to system shared memory regions instead of
   * the answer (a gateway with --system-shared-memory): output name → the
   * region (registered with registerSystemSharedMemory), its byte size and
   * offset. Asked for besides `outputs`; their InferOutput has
   * `inSharedMemory` set and no data.
   */
  readonly sharedMemoryOutputs?: Readonly<Record<string, SharedMemoryPlace>>;
  /** Request parameters, e.g. Triton's `priority` and `timeout` (µs). */
  readonly parameters?: Readonly<Record<string, ParameterValue>>;
  /**
   * The request's place in a sequence, for a stateful model (one with
   * `sequence_batching`): the sequence's correlation ID (a non-zero integer
   * or a non-empty string), and whether this request starts or ends it. Sent
   * as Triton's `sequence_id`, `sequence_start` and `sequence_end`.
   */
  readonly sequence?: SequenceOptions;
}

export interface SequenceOptions {
  readonly id: number | string;
  readonly start?: boolean;
  readonly end?: boolean;
}

/** The request parameters an infer call sends: `parameters`, and the sequence's when it names one. */
export function requestParameters(o: Pick<InferOptions, 'parameters' | 'sequence'>): Readonly<Record<string, ParameterValue>> | undefined {
  const seq = o.sequence;
  if (seq === undefined) return o.parameters;
  return { ...o.parameters, sequence_id: seq.id, ...(seq.start ? { sequence_start: true } : {}), ...(seq.end ? { sequence_end: true } : {}) };
}

/** What a prepared request carries: everything of InferOptions but the per-call options. */
export type PrepareOptions = Omit<InferOptions, keyof RequestOptions>;

/**
 * An infer request encoded once by `prepareInfer`, to send any number of
 * times with `inferPrepared` (load generators, probes): each call then costs
 * only the transport, not a re-encode and a copy of every tensor. Belongs to
 * the protocol whose client made it.
 */
export interface PreparedInfer {
  readonly protocol: 'grpc' | 'http';
  readonly model: string;
  /** Bytes of the encoded request. */
  readonly byteLength: number;
}

export interface ServerMetadata {
  readonly name: string;
  readonly version: string;
  readonly extensions: readonly string[];
}

export interface TensorMetadata {
  readonly name: string;
  readonly datatype: string;
  /** -1 marks a variable dimension (the batch dimension of batching models included). */
  readonly shape: readonly number[];
}

export interface ModelMetadata {
  readonly name: string;
  readonly versions: readonly string[];
  readonly platform: string;
  readonly inputs: readonly TensorMetadata[];
  readonly outputs: readonly TensorMetadata[];
}

/** The parts of a model's config that clients act on, plus the protocol's own form of all of it. */
export interface ModelConfigSummary {
  readonly name: string;
  /** 0: the model does not batch; shapes in metadata are full shapes. */
  readonly maxBatchSize: number;
  readonly dynamicBatching: boolean;
  /** The whole config as the server sent it: Triton's JSON form (HTTP), or the ModelConfig message (gRPC). */
  readonly config: unknown;
}

export interface LoadModelOptions extends RequestOptions {
  /** Triton's config override: a ModelConfig as JSON (object or text) replacing config.pbtxt. */
  readonly config?: unknown;
}

/** A registered system shared memory region (Triton's status fields). */
export interface SharedMemoryRegionStatus {
  readonly name: string;
  /** The POSIX shared memory object, e.g. '/my_input' (/dev/shm/my_input). */
  readonly key: string;
  readonly offset: number;
  readonly byteSize: number;
}

export interface UnloadModelOptions extends RequestOptions {
  /** Triton's `unload_dependents`: an ensemble's steps loaded only for it, and used by no other loaded ensemble, unload too. */
  readonly unloadDependents?: boolean;
}

/** One output of an answer. `data` is decoded on first use, so an unread output costs nothing. */
export class InferOutput {
  readonly name: string;
  readonly datatype: Datatype;
  readonly shape: readonly number[];
  /** The server wrote it to a system shared memory region (InferOptions.sharedMemoryOutputs): `data` and `raw` are not in the answer. */
  readonly inSharedMemory: boolean;
  #raw: Uint8Array | undefined;
  #data: TensorData | undefined;

  constructor(name: string, datatype: string, shape: readonly number[], content: { readonly raw: Uint8Array } | { readonly data: TensorData } | { readonly inSharedMemory: true }) {
    if (!isDatatype(datatype)) throw new InferenceError(GrpcStatus.UNKNOWN, `output '${name}': the server sent an unknown datatype '${datatype}'`);
    this.name = name;
    this.datatype = datatype;
    this.shape = shape;
    this.inSharedMemory = 'inSharedMemory' in content;
    if ('raw' in content) this.#raw = content.raw;
    else if ('data' in content) this.#data = content.data;
  }

  /** The elements as the typed form of the datatype (TensorDataMap). */
  get data(): TensorData {
    this.#notInAnswer();
    this.#data ??= decodeRaw(this.datatype, this.shape, this.#raw ?? new Uint8Array(0), this.name);
    return this.#data;
  }

  /** The raw little-endian bytes (BYTES: length-prefixed elements). */
  get raw(): Uint8Array {
    this.#notInAnswer();
    this.#raw ??= encodeRaw({ name: this.name, datatype: this.datatype, shape: this.shape, data: this.#data } as InferInput);
    return this.#raw;
  }

  #notInAnswer(): void {
    if (this.inSharedMemory) throw new TypeError(`output '${this.name}' is not in the answer: the server wrote it to shared memory (read it with readSharedMemory)`);
  }

  /** The data, typed for `datatype`; throws a TypeError if the output has another datatype. */
  as<D extends Datatype>(datatype: D): TensorData<D> {
    if (this.datatype !== datatype) throw new TypeError(`output '${this.name}' is ${this.datatype}, not ${datatype}`);
    return this.data as TensorData<D>;
  }
}

export class InferResult {
  readonly modelName: string;
  readonly modelVersion: string;
  readonly id: string;
  readonly parameters: Readonly<Record<string, ParameterValue>>;
  readonly outputs: readonly InferOutput[];

  constructor(fields: { modelName: string; modelVersion: string; id: string; parameters: Readonly<Record<string, ParameterValue>>; outputs: readonly InferOutput[] }) {
    this.modelName = fields.modelName;
    this.modelVersion = fields.modelVersion;
    this.id = fields.id;
    this.parameters = fields.parameters;
    this.outputs = fields.outputs;
  }

  /** The output called `name`; throws a TypeError when the answer has none. */
  output(name: string): InferOutput {
    const o = this.outputs.find((x) => x.name === name);
    if (!o) throw new TypeError(`the answer has no output '${name}'; it has ${this.outputs.map((x) => x.name).join(', ') || 'none'}`);
    return o;
  }

  /** Shorthand for output(name).as(datatype). */
  data<D extends Datatype>(name: string, datatype: D): TensorData<D> {
    return this.output(name).as(datatype);
  }
}

/** The KServe v2 client surface shared by InferenceGrpcClient and InferenceHttpClient. */
export interface InferenceClient {
  readonly protocol: 'grpc' | 'http';
  /** host:port (gRPC) or the base URL (HTTP). */
  readonly address: string;
  isServerLive(o?: RequestOptions): Promise<boolean>;
  isServerReady(o?: RequestOptions): Promise<boolean>;
  isModelReady(model: string, version?: string, o?: RequestOptions): Promise<boolean>;
  getServerMetadata(o?: RequestOptions): Promise<ServerMetadata>;
  getModelMetadata(model: string, version?: string, o?: RequestOptions): Promise<ModelMetadata>;
  getModelConfig(model: string, version?: string, o?: RequestOptions): Promise<ModelConfigSummary>;
  /** Triton's statistics per model version (all models when `model` is empty). */
  getInferenceStatistics(model?: string, version?: string, o?: RequestOptions): Promise<ModelStatistics[]>;
  loadModel(model: string, o?: LoadModelOptions): Promise<void>;
  unloadModel(model: string, o?: UnloadModelOptions): Promise<void>;
  /**
   * Triton's system shared memory (a gateway started with --system-shared-memory):
   * registers `byteSize` bytes from `offset` of the object `key` as region `name`.
   * Inputs and outputs then name it in their parameters (`shared_memory_region`,
   * `shared_memory_byte_size`, `shared_memory_offset`); client/system-shared-memory.ts
   * makes and reads such objects.
   */
  registerSystemSharedMemory(name: string, key: string, byteSize: number, offset?: number, o?: RequestOptions): Promise<void>;
  /** Unregisters region `name` ('' or absent: every region). */
  unregisterSystemSharedMemory(name?: string, o?: RequestOptions): Promise<void>;
  /** The regions registered ('' or absent: all; a name not registered fails NOT_FOUND). */
  getSystemSharedMemoryStatus(name?: string, o?: RequestOptions): Promise<SharedMemoryRegionStatus[]>;
  infer(model: string, inputs: readonly InferInput[], o?: InferOptions): Promise<InferResult>;
  prepareInfer(model: string, inputs: readonly InferInput[], o?: PrepareOptions): PreparedInfer;
  /** Sends a request from `prepareInfer` of a client of the same protocol. */
  inferPrepared(prepared: PreparedInfer, o?: RequestOptions): Promise<InferResult>;
  close(): void;
}

/** The earliest of `timeoutMs` from now and `deadline`; undefined when neither is set. */
export function deadlineOf(o: RequestOptions | undefined): number | undefined {
  const fromTimeout = o?.timeoutMs !== undefined ? Date.now() + o.timeoutMs : undefined;
  if (fromTimeout === undefined) return o?.deadline;
  return o?.deadline === undefined ? fromTimeout : Math.min(fromTimeout, o.deadline);
}

/** The config override as the text Triton's load API carries. */
export function configText(config: unknown): string {
  return typeof config === 'string' ? config : JSON.stringify(config);
}

/** The outputs a request names, with the classification (0 = none) and the shared memory place each asks for; undefined = all of them. */
export function requestedOutputs(
  o: Pick<InferOptions, 'outputs' | 'classification' | 'sharedMemoryOutputs'>,
): readonly { readonly name: string; readonly classes: number; readonly shared?: SharedMemoryPlace | undefined }[] | undefined {
  const classes = o.classification ?? {};
  const shared = o.sharedMemoryOutputs ?? {};
  const named = o.outputs ?? [];
  const extra = [...new Set([...Object.keys(classes), ...Object.keys(shared)])].filter((name) => !named.includes(name));
  if (o.outputs === undefined && extra.length === 0) return undefined;
  return [...named, ...extra].map((name) => ({ name, classes: classes[name] ?? 0, shared: shared[name] }));
}

