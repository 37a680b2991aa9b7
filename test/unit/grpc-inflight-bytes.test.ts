import { describe, expect, it } from 'vitest';
import { requestBytes } from '../../gateway/inference/grpc-inflight.js';
import { type ModelInferRequest } from '../../proto/gen/inference.js';

const int = (n: bigint) => ({ parameterChoice: { $case: 'int64Param' as const, value: n } });

describe('requestBytes (what a gRPC request holds on the in-flight gate)', () => {
  const request = (parameters: ModelInferRequest['inputs'][number]['parameters']): ModelInferRequest => ({
    modelName: 'm',
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [
      { name: 'A', datatype: 'FP32', shape: [1n, 4n], parameters: {} },
      { name: 'B', datatype: 'FP32', shape: [1n, 1024n], parameters },
    ],
    outputs: [],
    rawInputContents: [Buffer.alloc(16)],
  });

  it('counts the raw bytes, and the bytes an input in shared memory will be read into', () => {
    expect(requestBytes(request({}))).toBe(16);
    expect(requestBytes(request({ shared_memory_region: { parameterChoice: { $case: 'stringParam', value: 'r' } }, shared_memory_byte_size: int(4096n) }))).toBe(16 + 4096);
  });

  it('counts nothing for a byte size that is not a whole number of bytes (the request is refused for it later)', () => {
    expect(requestBytes(request({ shared_memory_byte_size: int(-5n) }))).toBe(16);
    expect(requestBytes(request({ shared_memory_byte_size: int(2n ** 62n) }))).toBe(16);
    expect(requestBytes(request({ shared_memory_byte_size: { parameterChoice: { $case: 'stringParam', value: '4096' } } }))).toBe(16);
  });
});
