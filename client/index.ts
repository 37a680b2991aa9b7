// The Fabriek client library: `import { InferenceGrpcClient, input } from 'fabriek'`.
import { type ClientOptions, InferenceGrpcClient } from './grpc-client.js';
import { type HttpClientOptions, InferenceHttpClient } from './http-client.js';
import { type InferenceClient } from './inference-client.js';

export { InferenceError, isInferenceError, statusName, grpcCodeOfHttpStatus } from './errors.js';
export { InferenceGrpcClient, type ClientOptions, type KeepAliveOptions } from './grpc-client.js';
export { InferenceHttpClient, type HttpClientOptions } from './http-client.js';
export type { GrpcInputEncoding } from './grpc-codec.js';
export { createSharedMemoryRegion, destroySharedMemoryRegion, readSharedMemory, writeSharedMemory } from './system-shared-memory.js';
export {
  InferOutput,
  InferResult,
  type InferenceClient,
  type InferOptions,
  type PreparedInfer,
  type PrepareOptions,
  type LoadModelOptions,
  type UnloadModelOptions,
  type SharedMemoryRegionStatus,
  type ModelConfigSummary,
  type ModelMetadata,
  type RequestOptions,
  type SequenceOptions,
  type ServerMetadata,
  type TensorMetadata,
} from './inference-client.js';
export {
  decodeRaw,
  encodeBytesElements,
  encodeRaw,
  float32ToFp16,
  fp16ToFloat32,
  fromJsonValues,
  input,
  isSharedMemoryInput,
  sharedMemoryInput,
  splitBytesElements,
  toJsonValues,
  type InferInput,
  type InputData,
  type InputDataMap,
  type ParameterValue,
  type SharedMemoryPlace,
  type TensorData,
  type TensorDataMap,
} from './typed-tensors.js';
export type { Datatype } from '../core/datatypes.js';

/**
 * A client for `url`: http:// or https:// gives the REST client, grpc:// or a
 * bare host:port the gRPC one (or say which with `protocol`).
 */
export function createClient(url: string, protocol?: 'grpc' | 'http', options: ClientOptions & HttpClientOptions = {}): InferenceClient {
  const p = protocol ?? (/^https?:\/\//.test(url) ? 'http' : 'grpc');
  return p === 'http' ? new InferenceHttpClient(url, options) : new InferenceGrpcClient(url, options);
}
