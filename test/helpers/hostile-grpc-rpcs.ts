// Hostile calls to the other RPCs: random and mutated bytes, load configs
// nested too deep, huge model names, and client cancellations of ModelInfer.
import {
  ModelConfigRequest,
  ModelMetadataRequest,
  ModelReadyRequest,
  ModelStatisticsRequest,
  RepositoryIndexRequest,
  RepositoryModelLoadRequest,
  RepositoryModelUnloadRequest,
} from '../../proto/gen/inference.js';
import { type Random } from './fuzz-random.js';
import { encode, INVALID, validAddSub, validFp32 } from './hostile-grpc.js';
import { type GrpcCase, SERVICE } from './raw-grpc-client.js';

const RPCS = ['ServerLive', 'ServerReady', 'ModelReady', 'ServerMetadata', 'ModelMetadata', 'ModelConfig', 'ModelStatistics', 'RepositoryIndex', 'RepositoryModelLoad', 'RepositoryModelUnload', 'SystemSharedMemoryStatus', 'CudaSharedMemoryRegister', 'TraceSetting', 'LogSettings'];

/** A valid request for another RPC; load and unload only ever name a model that is not in the repository. */
function otherRequest(r: Random): { path: string; bytes: Buffer } {
  const name = r.pick(['identity_fp32', 'add_sub', 'nope', '']);
  const version = r.pick(['', '1', '2']);
  const request = (rpc: string, bytes: Uint8Array): { path: string; bytes: Buffer } => ({ path: SERVICE + rpc, bytes: Buffer.from(bytes) });
  switch (r.int(0, 6)) {
    case 0:
      return request('ModelReady', ModelReadyRequest.encode({ name, version }).finish());
    case 1:
      return request('ModelMetadata', ModelMetadataRequest.encode({ name, version }).finish());
    case 2:
      return request('ModelConfig', ModelConfigRequest.encode({ name, version }).finish());
    case 3:
      return request('ModelStatistics', ModelStatisticsRequest.encode({ name, version }).finish());
    case 4:
      return request('RepositoryIndex', RepositoryIndexRequest.encode({ repositoryName: '', ready: r.chance(0.5) }).finish());
    case 5:
      return request('RepositoryModelUnload', RepositoryModelUnloadRequest.encode({ repositoryName: '', modelName: 'nope', parameters: {} }).finish());
    default:
      return request(
        'RepositoryModelLoad',
        RepositoryModelLoadRequest.encode({ repositoryName: '', modelName: 'nope', parameters: { config: { parameterChoice: { $case: 'stringParam', value: '{"max_batch_size": 2}' } } } }).finish(),
      );
  }
}

/** The other RPCs: random and mutated bytes, deep load configs, huge names. */
export const OTHER_RPCS: ReadonlyArray<(r: Random) => GrpcCase> = [
  (r) => ({ kind: 'random bytes, any RPC', path: SERVICE + r.pick(RPCS), bytes: r.bytes(r.int(0, 512)), codes: ['OK', 'INVALID_ARGUMENT', 'NOT_FOUND', 'UNIMPLEMENTED'] }),
  (r) => {
    const { path, bytes } = otherRequest(r);
    return { kind: 'mutated request, any RPC', path, bytes: r.mutate(bytes), codes: ['OK', 'INVALID_ARGUMENT', 'NOT_FOUND'] };
  },
  (r) => {
    const depth = r.pick([101, 1000, 50_000]);
    const config = '{"max_batch_size":'.repeat(depth) + '1' + '}'.repeat(depth);
    return {
      kind: 'load config nested too deep',
      path: `${SERVICE}RepositoryModelLoad`,
      bytes: Buffer.from(RepositoryModelLoadRequest.encode({ repositoryName: '', modelName: 'nope', parameters: { config: { parameterChoice: { $case: 'stringParam', value: config } } } }).finish()),
      codes: INVALID,
      message: /parameter 'config' of 'nope' nests deeper than 100 levels/,
    };
  },
  (r) => {
    const rpc = r.pick(['ModelMetadata', 'ModelConfig', 'ModelStatistics', 'ModelReady']);
    const name = 'n'.repeat(r.int(2000, 300_000));
    const bytes = rpc === 'ModelReady' ? ModelReadyRequest.encode({ name, version: '' }).finish() : ModelMetadataRequest.encode({ name, version: '' }).finish();
    return { kind: 'huge model name, any RPC', path: SERVICE + rpc, bytes: Buffer.from(bytes), codes: ['OK', 'NOT_FOUND'] };
  },
  (r) => {
    const base = r.chance(0.5) ? validFp32(r).request : validAddSub(r);
    return { kind: 'cancelled by the client', bytes: encode(base), codes: ['OK', 'CANCELLED'], cancelAfterMs: r.int(0, 5) };
  },
];
