import { describe, expect, it } from 'vitest';
import { type Datatype } from '../../core/datatypes.js';
import { decodeInferRequest, encodeInferResponse, flattenData, jsonToRaw, rawToJsonData } from '../../gateway/http/json-tensors.js';
import { modelConfigJson, modelStatisticsJson } from '../../gateway/http/model-json.js';
import { ModelConfig } from '../../proto/gen/model_config.js';
import { ModelVersionStatistics } from '../../gateway/stats/model-statistics.js';

const body = (json: unknown, ...binary: Uint8Array[]): { body: Buffer; length: number } => {
  const head = Buffer.from(JSON.stringify(json));
  return { body: Buffer.concat([head, ...binary]), length: head.byteLength };
};

const JSON_VALUES: Array<[Datatype, unknown[]]> = [
  ['BOOL', [true, false, true]],
  ['UINT8', [0, 7, 255]],
  ['UINT16', [0, 300, 65535]],
  ['UINT32', [0, 70000, 4294967295]],
  ['UINT64', [0, 1, Number.MAX_SAFE_INTEGER]],
  ['INT8', [-128, 0, 127]],
  ['INT16', [-32768, 5, 32767]],
  ['INT32', [-2147483648, 9, 2147483647]],
  ['INT64', [-Number.MAX_SAFE_INTEGER, 0, Number.MAX_SAFE_INTEGER]],
  ['FP32', [1.5, -2.25, 0]],
  ['FP64', [0.1, -1e300, 3]],
  ['BYTES', ['', 'hallo', 'grüße']],
];

describe('JSON tensor data', () => {
  it.each(JSON_VALUES)('%s round-trips through raw bytes', (datatype, values) => {
    const raw = jsonToRaw(values as never[], datatype, 'x');
    expect(JSON.parse(rawToJsonData(raw, datatype, 'x'))).toEqual(values);
  });

  it('writes 64-bit integers exactly, beyond 2^53', () => {
    const raw = new Uint8Array(new BigUint64Array([2n ** 64n - 1n]).buffer);
    expect(rawToJsonData(raw, 'UINT64', 'x')).toBe('[18446744073709551615]');
  });

  it('flattens nested data in row-major order', () => {
    expect(flattenData([[1, 2, 3], [4, 5, 6]])).toEqual([1, 2, 3, 4, 5, 6]);
    expect(flattenData(7)).toEqual([7]);
  });

  it('rejects wrong types, out-of-range and unsafe integers, and FP16/BF16 in JSON', () => {
    expect(() => jsonToRaw([1], 'BOOL', 'x')).toThrow(/expected true or false for BOOL/);
    expect(() => jsonToRaw([256], 'UINT8', 'x')).toThrow(/out of range for UINT8/);
    expect(() => jsonToRaw([1.5], 'INT32', 'x')).toThrow(/out of range for INT32/);
    expect(() => jsonToRaw(['1'], 'FP32', 'x')).toThrow(/expected a number/);
    expect(() => jsonToRaw([2 ** 60], 'INT64', 'x')).toThrow(/within ±2\^53/);
    expect(() => jsonToRaw([3], 'BYTES', 'x')).toThrow(/expected a string/);
    expect(() => jsonToRaw([1], 'FP16', 'x')).toThrow(/FP16 cannot be sent as JSON; send it in binary/);
    expect(() => rawToJsonData(new Uint8Array(2), 'BF16', 'x')).toThrow(/binary_data: true/);
  });
});

describe('decodeInferRequest', () => {
  it('decodes JSON and binary inputs, parameters and output choices', () => {
    const fp16 = new Uint8Array([0, 60, 0, 64]);
    const { body: b, length } = body(
      {
        id: 'r1',
        parameters: { binary_data_output: true, priority: 1 },
        inputs: [
          { name: 'A', datatype: 'INT32', shape: [2, 2], data: [[1, 2], [3, 4]] },
          { name: 'B', datatype: 'FP16', shape: [2], parameters: { binary_data_size: 4 } },
        ],
        outputs: [{ name: 'X', parameters: { binary_data: false } }, { name: 'Y' }],
      },
      fp16,
    );
    const r = decodeInferRequest(b, length, 'm', '');
    expect(r.request.id).toBe('r1');
    expect(r.request.parameters).toEqual({ priority: 1 });
    expect(r.request.outputs).toEqual(['X', 'Y']);
    expect(r.binaryDefault).toBe(true);
    expect(r.binaryOutputs.get('X')).toBe(false);
    expect([...new Int32Array(r.request.inputs[0]!.data.slice().buffer)]).toEqual([1, 2, 3, 4]);
    expect([...r.request.inputs[1]!.data]).toEqual([...fp16]);
  });

  it('rejects malformed requests with messages that say what was wrong', () => {
    const decode = (json: unknown, ...bin: Uint8Array[]): unknown => {
      const { body: b, length } = body(json, ...bin);
      return decodeInferRequest(b, bin.length > 0 ? length : undefined, 'm', '');
    };
    expect(() => decodeInferRequest(Buffer.from('{oops'), undefined, 'm', '')).toThrow(/failed to parse the request JSON/);
    expect(() => decode({})).toThrow(/needs an 'inputs' array/);
    expect(() => decode({ inputs: [{ name: 'A', datatype: 'FP33', shape: [1], data: [1] }] })).toThrow(/unknown datatype 'FP33'/);
    expect(() => decode({ inputs: [{ name: 'A', datatype: 'FP32', shape: [-1], data: [1] }] })).toThrow(/invalid dimension -1/);
    expect(() => decode({ inputs: [{ name: 'A', datatype: 'FP32', shape: [3], data: [1, 2] }] })).toThrow(/needs 3 elements, got 2/);
    expect(() => decode({ inputs: [{ name: 'A', datatype: 'FP32', shape: [1] }] })).toThrow(/has no data/);
    const a = { name: 'A', datatype: 'FP32', shape: [1], data: [1] };
    expect(() => decode({ inputs: [a, a] })).toThrow(/given more than once/);
    const bin = (size: number): unknown => ({ name: 'B', datatype: 'FP32', shape: [2], parameters: { binary_data_size: size } });
    expect(() => decode({ inputs: [bin(8)] }, new Uint8Array(4))).toThrow(/runs past the end/);
    expect(() => decode({ inputs: [bin(4)] }, new Uint8Array(4))).toThrow(/needs 8 bytes, got 4/);
    expect(() => decode({ inputs: [bin(8)] }, new Uint8Array(12))).toThrow(/12 bytes of binary data .* add up to 8/);
    expect(() => decodeInferRequest(Buffer.from('{}'), 10, 'm', '')).toThrow(/inference-header-content-length is 10/);
  });
});

describe('encodeInferResponse', () => {
  const result = {
    modelName: 'm',
    modelVersion: '1',
    id: 'r',
    outputs: [
      { name: 'X', datatype: 'INT32' as const, shape: [2], data: new Uint8Array(new Int32Array([5, -6]).buffer) },
      { name: 'Y', datatype: 'FP16' as const, shape: [1], data: new Uint8Array([0, 60]) },
    ],
  };

  it('sends JSON data, or binary parts with binary_data_size, per output', () => {
    const r = encodeInferResponse(result, { binaryDefault: false, binaryOutputs: new Map([['Y', true]]) });
    expect(JSON.parse(r.json)).toEqual({
      model_name: 'm',
      model_version: '1',
      id: 'r',
      outputs: [
        { name: 'X', datatype: 'INT32', shape: [2], data: [5, -6] },
        { name: 'Y', datatype: 'FP16', shape: [1], parameters: { binary_data_size: 2 } },
      ],
    });
    expect(r.binary.map((b) => [...b])).toEqual([[0, 60]]);
  });

  it('refuses FP16 as JSON', () => {
    expect(() => encodeInferResponse(result, { binaryDefault: false, binaryOutputs: new Map() })).toThrow(/FP16 cannot be sent as JSON/);
  });
});

describe('model JSON as Triton prints it', () => {
  it('config: snake_case fields, enums by name, int64 as numbers, map keys kept', () => {
    const config = ModelConfig.fromPartial({
      name: 'm',
      maxBatchSize: 0,
      input: [{ name: 'INPUT0', dataType: 8, dims: [-1n, 16n] }],
      schedulingChoice: { $case: 'dynamicBatching', value: { maxQueueDelayMicroseconds: 100n, preferredBatchSize: [4] } },
      parameters: { execution_provider: { stringValue: 'cpu' } },
    });
    const json = modelConfigJson(config) as Record<string, unknown>;
    expect(json['max_batch_size']).toBe(0);
    expect(json['input']).toEqual([expect.objectContaining({ name: 'INPUT0', data_type: 'TYPE_INT32', dims: [-1, 16] })]);
    expect(json['dynamic_batching']).toMatchObject({ max_queue_delay_microseconds: 100, preferred_batch_size: [4] });
    expect(json['parameters']).toEqual({ execution_provider: { string_value: 'cpu' } });
  });

  it('stats: every Triton field, counters as numbers', () => {
    const s = new ModelVersionStatistics();
    s.failed(1000);
    const json = modelStatisticsJson(s.snapshot('m', '1')) as Record<string, Record<string, unknown>>;
    expect(json).toMatchObject({ name: 'm', version: '1', inference_count: 0, execution_count: 0, batch_stats: [] });
    expect(json['inference_stats']).toMatchObject({ fail: { count: 1, ns: 1000 }, success: { count: 0, ns: 0 }, cache_miss: { count: 0, ns: 0 } });
  });
});
