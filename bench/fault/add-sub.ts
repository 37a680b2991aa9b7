import { type ModelInferRequest } from '../../proto/gen/inference.js';

// Requests for the example add_sub model (FP32 [1,16] + [1,16]) whose answer
// is known: the fault benchmark and the failover tests check every one.

export function addSubRequest(seq: number): { request: ModelInferRequest; expected: Float32Array } {
  const a = Float32Array.from({ length: 16 }, (_, i) => (seq % 997) + i);
  const b = Float32Array.from({ length: 16 }, (_, i) => i / 4);
  return {
    request: {
      modelName: 'add_sub',
      modelVersion: '',
      id: `r${seq}`,
      parameters: {},
      inputs: [
        { name: 'INPUT0', datatype: 'FP32', shape: [1n, 16n], parameters: {}, contents: undefined },
        { name: 'INPUT1', datatype: 'FP32', shape: [1n, 16n], parameters: {}, contents: undefined },
      ],
      outputs: [],
      rawInputContents: [Buffer.from(a.buffer), Buffer.from(b.buffer)],
    },
    expected: Float32Array.from(a, (x, i) => x + (b[i] ?? 0)),
  };
}

/** Is this answer (first output, raw FP32) the expected sum? */
export function isExpectedSum(raw: Uint8Array | undefined, expected: Float32Array): boolean {
  const got = raw ? new Float32Array(Uint8Array.from(raw).buffer) : new Float32Array();
  return got.length === expected.length && got.every((x, i) => x === expected[i]);
}
