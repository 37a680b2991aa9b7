import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { malformed, withMalformedRequests } from '../../gateway/grpc/malformed-request.js';
import { GRPCInferenceServiceService, ModelInferRequest } from '../../proto/gen/inference.js';

describe('withMalformedRequests', () => {
  const service = withMalformedRequests(GRPCInferenceServiceService);

  it('decodes valid bytes as before', () => {
    const bytes = Buffer.from(ModelInferRequest.encode(ModelInferRequest.fromPartial({ modelName: 'm' })).finish());
    const request = service.modelInfer.requestDeserialize(bytes);
    expect(malformed(request)).toBeUndefined();
    expect(request.modelName).toBe('m');
  });

  it.each([
    ['a wire type protobuf does not have', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), /cant skip wire type 7/],
    ['a length past the end', Buffer.from([0x0a, 0x50, 0x61]), /premature EOF/],
    ['groups nested past the recursion limit', Buffer.alloc(1000, 0x0b), /maximum recursion depth reached/],
  ])('turns %s into INVALID_ARGUMENT naming the method', (_, bytes, why) => {
    const error = malformed(service.modelInfer.requestDeserialize(bytes));
    expect(error?.code).toBe(status.INVALID_ARGUMENT);
    expect(error?.message).toMatch(/^ModelInfer: the request is not a valid protobuf message \(/);
    expect(error?.message).toMatch(why);
    expect(malformed(service.modelStreamInfer.requestDeserialize(bytes))?.message).toMatch(/^ModelStreamInfer: /);
  });

  it('keeps paths and serializers', () => {
    expect(service.modelInfer.path).toBe(GRPCInferenceServiceService.modelInfer.path);
    expect(service.modelInfer.responseSerialize).toBe(GRPCInferenceServiceService.modelInfer.responseSerialize);
  });
});
