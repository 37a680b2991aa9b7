import { describe, expect, it } from 'vitest';
import { decodeModelInferRequest, encodeModelInferResponse, encodeModelStreamInferResponse } from '../../gateway/grpc/infer-codec.js';
import { ModelInferRequest, type ModelInferResponse, ModelInferResponse as ResponseCodec, ModelStreamInferResponse } from '../../proto/gen/inference.js';

const request: ModelInferRequest = {
  modelName: 'add_sub',
  modelVersion: '1',
  id: 'r-1',
  parameters: { priority: { parameterChoice: { $case: 'int64Param', value: 2n } } },
  inputs: [
    { name: 'INPUT0', datatype: 'FP32', shape: [1n, 4n], parameters: {}, contents: undefined },
    { name: 'INPUT1', datatype: 'INT32', shape: [1n, 2n], parameters: {}, contents: { boolContents: [], intContents: [5, 6], int64Contents: [], uintContents: [], uint64Contents: [], fp32Contents: [], fp64Contents: [], bytesContents: [] } },
  ],
  outputs: [{ name: 'OUTPUT0', parameters: {} }],
  rawInputContents: [Buffer.from(new Float32Array([1, 2, 3, 4]).buffer), Buffer.alloc(0)],
};

const response: ModelInferResponse = {
  modelName: 'add_sub',
  modelVersion: '1',
  id: 'r-1',
  parameters: {},
  outputs: [{ name: 'OUTPUT0', datatype: 'FP32', shape: [1n, 40n], parameters: {} }, { name: 'OUTPUT1', datatype: 'UINT8', shape: [1n, 0n], parameters: {} }],
  rawOutputContents: [Buffer.alloc(160, 9), Buffer.alloc(0)],
};

describe('ModelInfer codec', () => {
  it('decodes a request as the generated decoder does, raw contents as views of the message', () => {
    const bytes = Buffer.from(ModelInferRequest.encode(request).finish());
    const decoded = decodeModelInferRequest(bytes);
    expect(decoded).toEqual(ModelInferRequest.decode(bytes));
    expect(decoded.rawInputContents[0]?.buffer).toBe(bytes.buffer);
    // Unknown fields are skipped, as generated code does.
    const withUnknown = Buffer.concat([bytes, Buffer.from([0x80, 0x01, 0x05])]);
    expect(decodeModelInferRequest(withUnknown)).toEqual(ModelInferRequest.decode(withUnknown));
  });

  it('throws on truncated bytes as the generated decoder does', () => {
    const bytes = Buffer.from(ModelInferRequest.encode(request).finish()).subarray(0, 40);
    expect(() => ModelInferRequest.decode(bytes)).toThrow();
    expect(() => decodeModelInferRequest(bytes)).toThrow();
  });

  it('encodes responses byte for byte as the generated encoder, big outputs included', () => {
    const big = { ...response, rawOutputContents: [Buffer.alloc(300_000, 1), Buffer.alloc(0)] };
    for (const r of [response, big, { ...response, rawOutputContents: [] }]) {
      expect(encodeModelInferResponse(r).equals(Buffer.from(ResponseCodec.encode(r).finish()))).toBe(true);
      for (const m of [{ errorMessage: '', inferResponse: r }, { errorMessage: 'model é failed', inferResponse: undefined }, { errorMessage: 'x', inferResponse: r }]) {
        expect(encodeModelStreamInferResponse(m).equals(Buffer.from(ModelStreamInferResponse.encode(m).finish()))).toBe(true);
      }
    }
  });
});
