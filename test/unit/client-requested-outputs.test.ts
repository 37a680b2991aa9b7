import { describe, expect, it } from 'vitest';
import { encodeInferRequest } from '../../client/http-codec.js';
import { requestedOutputs } from '../../client/inference-client.js';
import { input } from '../../client/typed-tensors.js';

describe('requestedOutputs', () => {
  it('is undefined (every output) without outputs or classification', () => {
    expect(requestedOutputs({})).toBeUndefined();
    expect(requestedOutputs({ classification: {} })).toBeUndefined();
  });

  it('asks for the classified outputs besides those named, once each', () => {
    expect(requestedOutputs({ outputs: ['A', 'B'], classification: { B: 3, C: 5 } })).toEqual([
      { name: 'A', classes: 0 },
      { name: 'B', classes: 3 },
      { name: 'C', classes: 5 },
    ]);
    expect(requestedOutputs({ classification: { C: 5 } })).toEqual([{ name: 'C', classes: 5 }]);
  });

  it("writes the HTTP parameter as Triton's clients do, on that output only", () => {
    const body = encodeInferRequest([input('X', 'FP32', [1, 2], [1, 2])], { outputs: ['A'], classification: { B: 2 } }, false);
    const json = JSON.parse(Buffer.from(body.parts[0] as Uint8Array).toString()) as { outputs: unknown };
    expect(json.outputs).toEqual([
      { name: 'A', parameters: { binary_data: false } },
      { name: 'B', parameters: { binary_data: false, classification: 2 } },
    ]);
  });
});
