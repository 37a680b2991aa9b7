import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { ServingError } from '../../core/errors.js';
import { type Tensor } from '../../core/tensor.js';
import { encodeOutputs } from '../../gateway/tensor/encode-response.js';
import { emptyContents } from '../../gateway/tensor/typed-contents.js';
import { ModelInferResponse } from '../../proto/gen/inference.js';

const fp32 = (name: string, values: number[], shape = [values.length]): Tensor => ({
  name,
  datatype: 'FP32',
  shape,
  data: new Uint8Array(Float32Array.from(values).buffer),
});

const logits = fp32('logits', [1.5, -2], [1, 2]);
const ids: Tensor = { name: 'ids', datatype: 'INT64', shape: [2], data: new Uint8Array(new BigInt64Array([7n, -1n]).buffer) };
const half: Tensor = { name: 'half', datatype: 'FP16', shape: [1], data: Uint8Array.from([0x00, 0x3c]) };
const text: Tensor = {
  name: 'text',
  datatype: 'BYTES',
  shape: [2],
  data: Uint8Array.from([0, 0, 0, 0, 2, 0, 0, 0, 0xc3, 0xa9]),
};

describe('encodeOutputs', () => {
  it('raw by default: every output in order, bytes not copied', () => {
    const { outputs, rawOutputContents } = encodeOutputs([logits, ids], []);
    expect(outputs).toEqual([
      { name: 'logits', datatype: 'FP32', shape: [1n, 2n], parameters: {} },
      { name: 'ids', datatype: 'INT64', shape: [2n], parameters: {} },
    ]);
    expect(rawOutputContents).toHaveLength(2);
    expect(rawOutputContents[0]?.buffer).toBe(logits.data.buffer);
    expect(rawOutputContents[1]?.buffer).toBe(ids.data.buffer);
    expect(Buffer.isBuffer(rawOutputContents[0])).toBe(true);
  });

  it('keeps only the requested outputs, in the requested order', () => {
    const { outputs, rawOutputContents } = encodeOutputs([logits, ids, text], ['text', 'logits']);
    expect(outputs.map((o) => o.name)).toEqual(['text', 'logits']);
    expect(Array.from(rawOutputContents[0] ?? [])).toEqual(Array.from(text.data));
  });

  it('keeps a view into a larger buffer as that view', () => {
    const backing = new Uint8Array(16);
    backing.set([0, 0, 0x80, 0x3f], 8);
    const sliced: Tensor = { name: 'y', datatype: 'FP32', shape: [1], data: backing.subarray(8, 12) };
    const [buf] = encodeOutputs([sliced], []).rawOutputContents;
    expect(buf?.buffer).toBe(backing.buffer);
    expect(buf?.byteOffset).toBe(8);
    expect(buf?.byteLength).toBe(4);
  });

  it('survives the wire (raw)', () => {
    const encoded = encodeOutputs([logits, half, text], []);
    const wire = ModelInferResponse.decode(
      ModelInferResponse.encode(ModelInferResponse.fromPartial({ modelName: 'm', ...encoded })).finish(),
    );
    expect(wire.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual([
      ['logits', 'FP32', [1n, 2n]],
      ['half', 'FP16', [1n]],
      ['text', 'BYTES', [2n]],
    ]);
    expect(wire.rawOutputContents.map((b) => Array.from(b))).toEqual([
      Array.from(logits.data),
      [0x00, 0x3c],
      Array.from(text.data),
    ]);
  });

  it('typed contents when asked', () => {
    const { outputs, rawOutputContents } = encodeOutputs([logits, ids, text], [], { typed: true });
    expect(rawOutputContents).toEqual([]);
    expect(outputs[0]?.contents).toEqual({ ...emptyContents(), fp32Contents: [1.5, -2] });
    expect(outputs[1]?.contents).toEqual({ ...emptyContents(), int64Contents: [7n, -1n] });
    expect(outputs[2]?.contents?.bytesContents.map((b) => b.toString('utf8'))).toEqual(['', 'é']);
  });

  it('typed falls back to raw for every output when one is FP16 (no mixing)', () => {
    const { outputs, rawOutputContents } = encodeOutputs([logits, half], [], { typed: true });
    expect(outputs.every((o) => o.contents === undefined)).toBe(true);
    expect(rawOutputContents).toHaveLength(2);
  });

  it('a requested output the model did not produce is INTERNAL', () => {
    let error: unknown;
    try {
      encodeOutputs([logits], ['probs']);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ServingError);
    expect((error as ServingError).code).toBe(status.INTERNAL);
    expect((error as ServingError).message).toBe("output 'probs' was requested but the model did not produce it");
  });
});
