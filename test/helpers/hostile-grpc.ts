// Hostile ModelInfer requests as raw bytes: random protobuf, mutations of
// valid requests, and well-formed protobuf with absurd contents. Each case
// says which statuses it may get and, where the answer is an error, what the
// message must mention.
import {
  type InferParameter,
  InferTensorContents,
  ModelInferRequest,
  type ModelInferRequest_InferInputTensor,
} from '../../proto/gen/inference.js';
import { type Random } from './fuzz-random.js';
import { type GrpcCase } from './raw-grpc-client.js';
import { rawBytesElements } from './tensor-data.js';

/** ts-proto encodes whatever it is given: valid protobuf, hostile contents. */
export const encode = (request: ModelInferRequest): Buffer => Buffer.from(ModelInferRequest.encode(request).finish());

type Input = ModelInferRequest_InferInputTensor;

function input(name: string, datatype: string, shape: readonly bigint[], extra: Partial<Input> = {}): Input {
  return { name, datatype, shape: [...shape], parameters: {}, ...extra };
}

export function request(model: string, inputs: Input[], raw: Buffer[], extra: Partial<ModelInferRequest> = {}): ModelInferRequest {
  return { modelName: model, modelVersion: '', id: '', parameters: {}, inputs, outputs: [], rawInputContents: raw, ...extra };
}

export const INVALID = ['INVALID_ARGUMENT'] as const;
const ANSWERED = ['OK', 'INVALID_ARGUMENT', 'NOT_FOUND'] as const;

const fp32Rows = (r: Random, rows: number): Buffer => Buffer.from(Float32Array.from({ length: rows * 16 }, () => r.float() * 100 - 50).buffer);

/** A valid identity_fp32 request and the bytes it must echo. */
export function validFp32(r: Random): { request: ModelInferRequest; raw: Buffer } {
  const rows = r.int(1, 4);
  const raw = fp32Rows(r, rows);
  return { request: request('identity_fp32', [input('INPUT0', 'FP32', [BigInt(rows), 16n])], [raw], { id: `ok-${r.int(0, 1e9)}` }), raw };
}

function validStrings(r: Random): ModelInferRequest {
  const n = r.int(1, 8);
  const elements = Array.from({ length: n }, () => r.ascii(r.int(0, 12)));
  return request('identity_string', [input('INPUT0', 'BYTES', [1n, BigInt(n)])], [Buffer.from(rawBytesElements(elements))]);
}

export function validAddSub(r: Random): ModelInferRequest {
  return request(
    'add_sub',
    [input('INPUT0', 'FP32', [1n, 16n]), input('INPUT1', 'FP32', [1n, 16n])],
    [fp32Rows(r, 1), fp32Rows(r, 1)],
    { outputs: r.chance(0.5) ? [{ name: 'OUTPUT1', parameters: {} }] : [] },
  );
}

function randomParameter(r: Random): InferParameter {
  switch (r.int(0, 6)) {
    case 0:
      return { parameterChoice: undefined };
    case 1:
      return { parameterChoice: { $case: 'boolParam', value: r.chance(0.5) } };
    case 2:
      return { parameterChoice: { $case: 'int64Param', value: r.pick([0n, 1n, 2n, -1n, -(2n ** 63n), 2n ** 63n - 1n, 2n ** 53n + 1n, BigInt(r.int(0, 1e6))]) } };
    case 3:
      return { parameterChoice: { $case: 'uint64Param', value: r.pick([0n, 1n, 2n ** 64n - 1n, 2n ** 53n, BigInt(r.int(0, 1e6))]) } };
    case 4:
      return { parameterChoice: { $case: 'doubleParam', value: r.pick([Number.NaN, Infinity, -Infinity, -1, 1.5, 1e300, 0, 3]) } };
    default:
      return { parameterChoice: { $case: 'stringParam', value: r.pick(['', '1', 'high', r.ascii(r.int(0, 40))]) } };
  }
}

function randomParameters(r: Random): Record<string, InferParameter> {
  const out: Record<string, InferParameter> = {};
  const keys = ['priority', 'timeout', 'binary_data_output', 'sequence_id', '__proto__', 'constructor', 'toString', '', r.ascii(r.int(1, 20))];
  for (let i = r.int(1, 4); i > 0; i--) Object.defineProperty(out, r.pick(keys), { value: randomParameter(r), enumerable: true, writable: true, configurable: true });
  return out;
}

/** The structured cases: valid protobuf, hostile contents. */
export const STRUCTURED: ReadonlyArray<(r: Random) => GrpcCase> = [
  (r) => {
    const { request: req, raw } = validFp32(r);
    return { kind: 'valid fp32', bytes: encode(req), codes: ['OK'], echo: raw };
  },
  (r) => ({ kind: 'valid strings', bytes: encode(validStrings(r)), codes: ['OK'] }),
  (r) => ({ kind: 'valid add_sub', bytes: encode(validAddSub(r)), codes: ['OK'] }),
  (r) => {
    const dim = r.pick([2n ** 62n, 2n ** 63n - 1n, 2n ** 53n, 2n ** 60n + BigInt(r.int(0, 1000))]);
    const shape = r.chance(0.5) ? [1n, dim] : [dim, 16n];
    return { kind: 'huge dim', bytes: encode(request('identity_fp32', [input('INPUT0', 'FP32', shape)], [fp32Rows(r, 1)])), codes: INVALID, message: /invalid dimension \d+ \(expected an integer from 0 to 2\^53-1\)/ };
  },
  (r) => {
    const dim = r.pick([-1n, -(2n ** 63n), -BigInt(r.int(1, 2 ** 31))]);
    return { kind: 'negative dim', bytes: encode(request('identity_fp32', [input('INPUT0', 'FP32', [1n, dim])], [fp32Rows(r, 1)])), codes: INVALID, message: /invalid dimension -\d+/ };
  },
  (r) => {
    // Every dim is a safe integer, their product is not.
    const k = r.int(2, 6);
    const shape = Array.from({ length: k }, () => 2n ** BigInt(Math.ceil(54 / k) + r.int(0, 3)));
    return { kind: 'overflowing shape product', bytes: encode(request('identity_uint8', [input('INPUT0', 'UINT8', shape)], [r.bytes(16)])), codes: INVALID, message: /more than 2\^53 elements/ };
  },
  (r) => ({
    kind: 'huge shape, tiny data',
    bytes: encode(request('identity_uint8', [input('INPUT0', 'UINT8', [BigInt(r.int(1, 4)), 2n ** BigInt(r.int(30, 50))])], [r.bytes(r.int(0, 64))])),
    codes: INVALID,
    message: /needs \d+ bytes, got \d+ in raw_input_contents\[0\]/,
  }),
  (r) => ({
    kind: 'huge BYTES shape, tiny data',
    bytes: encode(request('identity_string', [input('INPUT0', 'BYTES', [1n, 2n ** BigInt(r.int(20, 52))])], [r.bytes(r.int(0, 64))])),
    codes: INVALID,
    message: /needs \d+ BYTES elements, got/,
  }),
  () => ({
    kind: 'empty tensor',
    bytes: encode(request('identity_uint8', [input('INPUT0', 'UINT8', [1n, 0n])], [Buffer.alloc(0)])),
    codes: ['OK', 'INVALID_ARGUMENT'],
  }),
  (r) => {
    const datatype = r.pick(['FP33', 'fp32', '', 'BYTE', 'STRING', 'TYPE_FP32', '\u0000FP32', r.ascii(r.int(1, 30))]);
    return { kind: 'unknown datatype', bytes: encode(request('identity_fp32', [input('INPUT0', datatype, [1n, 16n])], [fp32Rows(r, 1)])), codes: INVALID, message: /unknown datatype/ };
  },
  (r) => {
    const datatype = r.pick(['INT32', 'UINT32']);
    return { kind: 'datatype of another model', bytes: encode(request('identity_fp32', [input('INPUT0', datatype, [1n, 16n])], [fp32Rows(r, 1)])), codes: INVALID, message: /expected datatype FP32, got (INT32|UINT32)/ };
  },
  (r) => {
    const rows = r.int(1, 4);
    const good = rows * 64;
    const size = r.chance(0.5) ? good + r.int(1, 64) : r.int(0, good - 1);
    return { kind: 'raw size wrong', bytes: encode(request('identity_fp32', [input('INPUT0', 'FP32', [BigInt(rows), 16n])], [r.bytes(size)])), codes: INVALID, message: /needs \d+ bytes, got \d+/ };
  },
  (r) => {
    // The last element's length prefix runs past the buffer.
    const n = r.int(1, 5);
    const good = Buffer.from(rawBytesElements(Array.from({ length: n - 1 }, () => r.ascii(r.int(0, 8)))));
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32LE(r.pick([0xffffffff, 0x7fffffff, r.int(10, 1e6)]));
    const raw = Buffer.concat([good, prefix, r.bytes(r.int(0, 9))]);
    return { kind: 'BYTES length past the buffer', bytes: encode(request('identity_string', [input('INPUT0', 'BYTES', [1n, BigInt(n)])], [raw])), codes: INVALID, message: /declares \d+ bytes but only \d+ remain/ };
  },
  (r) => {
    const n = r.int(1, 5);
    const raw = Buffer.concat([Buffer.from(rawBytesElements(Array.from({ length: n }, () => r.ascii(3)))), r.bytes(r.int(1, 3))]);
    return { kind: 'BYTES truncated prefix', bytes: encode(request('identity_string', [input('INPUT0', 'BYTES', [1n, BigInt(n + 1)])], [raw])), codes: INVALID, message: /truncated length prefix|needs \d+ BYTES elements/ };
  },
  (r) => {
    const n = r.int(1, 6);
    const claimed = r.pick([n - 1, n + 1, n * 3]);
    const raw = Buffer.from(rawBytesElements(Array.from({ length: n }, () => r.ascii(r.int(0, 5)))));
    return { kind: 'BYTES count mismatch', bytes: encode(request('identity_string', [input('INPUT0', 'BYTES', [1n, BigInt(claimed)])], [raw])), codes: INVALID, message: /needs \d+ BYTES elements, got/ };
  },
  (r) => {
    const bad = r.pick([Buffer.from([0xff, 0xfe]), Buffer.from([0xc3]), Buffer.from('a\u0000b'), Buffer.from([0xed, 0xa0, 0x80])]);
    const raw = Buffer.concat([Buffer.from([bad.length, 0, 0, 0]), bad]);
    return { kind: 'BYTES not UTF-8 or with NUL', bytes: encode(request('identity_string', [input('INPUT0', 'BYTES', [1n, 1n])], [raw])), codes: INVALID, message: /not valid UTF-8|NUL byte/ };
  },
  (r) => {
    const n = r.int(50, 2000);
    const inputs = Array.from({ length: n }, (_, i) => input(`INPUT${i}`, 'FP32', [1n, 16n]));
    return { kind: 'too many inputs', bytes: encode(request('identity_fp32', inputs, inputs.map(() => fp32Rows(r, 1)))), codes: INVALID, message: /input 'INPUT\d+' is not an input of the model/ };
  },
  (r) => {
    const raws = Array.from({ length: r.pick([0, 2, 3, 50]) }, () => fp32Rows(r, 1));
    const inputs = raws.length === 0 ? [] : [input('INPUT0', 'FP32', [1n, 16n])];
    return {
      kind: 'raw_input_contents count',
      bytes: encode(request('identity_fp32', inputs, raws)),
      codes: INVALID,
      message: /raw_input_contents has \d+ entries for \d+ inputs|missing required input/,
    };
  },
  (r) => ({
    kind: 'duplicate input names',
    bytes: encode(request('add_sub', [input('INPUT0', 'FP32', [1n, 16n]), input('INPUT0', 'FP32', [1n, 16n])], [fp32Rows(r, 1), fp32Rows(r, 1)])),
    codes: INVALID,
    message: /input 'INPUT0' is given more than once/,
  }),
  (r) => ({
    kind: 'empty input name',
    bytes: encode(request('identity_fp32', [input('', 'FP32', [1n, 16n])], [fp32Rows(r, 1)])),
    codes: INVALID,
    message: /input 0 has no name/,
  }),
  (r) => ({
    kind: 'unknown input name',
    bytes: encode(request('identity_fp32', [input(r.pick([r.ascii(r.int(1, 30)), 'input0', 'INPUT1', ' INPUT0', 'x'.repeat(r.int(1000, 200_000))]), 'FP32', [1n, 16n])], [fp32Rows(r, 1)])),
    codes: INVALID,
    message: /is not an input of the model/,
  }),
  (r) => ({
    kind: 'missing input',
    bytes: encode(request('add_sub', [input(r.pick(['INPUT0', 'INPUT1']), 'FP32', [1n, 16n])], [fp32Rows(r, 1)])),
    codes: INVALID,
    message: /missing required input 'INPUT[01]'/,
  }),
  (r) => {
    const { request: req } = validFp32(r);
    return {
      kind: 'request parameters of any type',
      bytes: encode({ ...req, modelName: r.pick(['identity_fp32', 'batched_fp32']), parameters: randomParameters(r) }),
      // A `timeout` of a few µs on batched_fp32 expires in the queue: Triton's UNAVAILABLE.
      codes: ['OK', 'INVALID_ARGUMENT', 'UNAVAILABLE'],
      message: /parameter '(priority|timeout)': expected a non-negative integer|^Request timeout expired: model 'batched_fp32\/1', after \d+ µs in the queue$/,
    };
  },
  (r) => {
    const parameters = randomParameters(r);
    if (r.chance(0.3)) parameters['shared_memory_region'] = { parameterChoice: { $case: 'stringParam', value: 'region' } };
    return {
      kind: 'input parameters of any type',
      bytes: encode(request('identity_fp32', [input('INPUT0', 'FP32', [1n, 16n], { parameters })], [fp32Rows(r, 1)])),
      // The fuzz gateway has no --system-shared-memory: a region named is refused (raw contents for it, or the mode off).
      codes: ['OK', 'INVALID_ARGUMENT', 'FAILED_PRECONDITION'],
      message: /system shared memory is off on this gateway|raw_input_contents has 1 entries for the 0 inputs not in shared memory|needs 'shared_memory_byte_size' too/,
    };
  },
  (r) => ({
    kind: 'contents in the wrong field',
    bytes: encode(request('identity_fp32', [input('INPUT0', 'FP32', [1n, 16n], { contents: InferTensorContents.fromPartial(r.pick([{ intContents: [1] }, { bytesContents: [Buffer.from('x')] }, { fp64Contents: [1] }, { boolContents: [true] }])) })], [])),
    codes: INVALID,
    message: /expects its data in fp32_contents, got \w+_contents/,
  }),
  (r) => ({
    kind: 'contents count wrong',
    bytes: encode(request('identity_fp32', [input('INPUT0', 'FP32', [1n, 16n], { contents: InferTensorContents.fromPartial({ fp32Contents: Array.from({ length: r.pick([0, 15, 17, 1000]) }, () => 1) }) })], [])),
    codes: INVALID,
    message: /expected 16 elements in fp32_contents, got \d+/,
  }),
  (r) => ({
    kind: 'contents and raw',
    bytes: encode(request('identity_fp32', [input('INPUT0', 'FP32', [1n, 16n], { contents: InferTensorContents.fromPartial({ fp32Contents: new Array<number>(16).fill(1) }) })], [fp32Rows(r, 1)])),
    codes: INVALID,
    message: /has both contents and raw_input_contents/,
  }),
  () => ({ kind: 'no data', bytes: encode(request('identity_fp32', [input('INPUT0', 'FP32', [1n, 16n])], [])), codes: INVALID, message: /has no data/ }),
  (r) => ({
    kind: 'typed value out of range',
    bytes: encode(request('identity_uint8', [input('INPUT0', 'UINT8', [1n, 1n], { contents: InferTensorContents.fromPartial({ uintContents: [r.pick([256, 300, 2 ** 32 - 1])] }) })], [])),
    codes: INVALID,
    message: /value \d+ at uint_contents\[0\] is out of range for UINT8/,
  }),
  () => ({
    kind: 'FP16 as typed contents',
    bytes: encode(request('identity_fp32', [input('INPUT0', 'FP16', [1n, 16n], { contents: InferTensorContents.fromPartial({ fp32Contents: [1] }) })], [])),
    codes: INVALID,
    message: /FP16 has no typed contents field/,
  }),
  (r) => ({
    kind: 'unknown model',
    bytes: encode({ ...validFp32(r).request, modelName: r.pick([r.ascii(r.int(1, 64)), 'é'.repeat(r.int(1000, 100_000)), 'x'.repeat(r.int(1000, 300_000))]) }),
    codes: ['NOT_FOUND'],
    message: /is not in the repository/,
  }),
  (r) => ({
    kind: 'bad version',
    bytes: encode({ ...validFp32(r).request, modelVersion: r.pick(['abc', '-1', '99999999999999999999', '1.0', ' 1', '2', '0x1']) }),
    codes: ['NOT_FOUND'],
    message: /has no version/,
  }),
  (r) => ({
    kind: 'unknown or repeated output',
    bytes: encode({ ...validAddSub(r), outputs: r.chance(0.5) ? [{ name: 'OUTPUT9', parameters: {} }] : [{ name: 'OUTPUT0', parameters: {} }, { name: 'OUTPUT0', parameters: {} }] }),
    codes: INVALID,
    message: /is not an output of the model|is requested more than once/,
  }),
  (r) => ({
    kind: 'classification parameter',
    bytes: encode({ ...validAddSub(r), outputs: [{ name: r.pick(['OUTPUT0', 'OUTPUT1']), parameters: { classification: randomParameter(r) } }] }),
    codes: ['OK', ...INVALID],
    message: /parameter 'classification' must be (an int64_param|a non-negative integer)/,
  }),
  (r) => ({
    kind: 'huge rank',
    bytes: encode(request('identity_uint8', [input('INPUT0', 'UINT8', new Array<bigint>(r.int(100, 100_000)).fill(1n))], [r.bytes(1)])),
    codes: INVALID,
    message: /expected shape \[-1,-1\], got \[/,
  }),
  (r) => {
    const rows = r.int(5, 64);
    return { kind: 'batch over max_batch_size', bytes: encode(request('identity_fp32', [input('INPUT0', 'FP32', [BigInt(rows), 16n])], [fp32Rows(r, rows)])), codes: INVALID, message: new RegExp(`batch size ${rows} exceeds max_batch_size 4`) };
  },
  () => ({ kind: 'batch of zero', bytes: encode(request('identity_fp32', [input('INPUT0', 'FP32', [0n, 16n])], [Buffer.alloc(0)])), codes: INVALID, message: /expected batch size at least 1, got 0/ }),
  (r) => {
    const shape = r.pick([[3n, 2n], [2n, 3n, 1n], [6n], [1n, 2n, 3n]]);
    return { kind: 'fixed shape mismatch', bytes: encode(request('fixed_fp32', [input('X', 'FP32', shape)], [r.bytes(24)])), codes: INVALID, message: /expected shape \[2,3\], got/ };
  },
  (r) => ({
    kind: 'message over --max-message-bytes',
    bytes: encode(request('identity_uint8', [input('INPUT0', 'UINT8', [1n, BigInt((1 << 20) + 1)])], [Buffer.alloc((1 << 20) + r.int(1, 4096))])),
    codes: ['RESOURCE_EXHAUSTED'],
    message: /larger than max/,
  }),
  (r) => {
    // grpc-js's server keeps a grpc-timeout in 32 bits: past ~24.8 days it wraps, sometimes into the past.
    const { request: req, raw } = validFp32(r);
    return { kind: 'far deadline', bytes: encode(req), codes: ['OK', 'DEADLINE_EXCEEDED'], echo: raw, timeoutMs: r.pick([24, 30, 400, 5000]) * 86_400_000 };
  },
];

/** Random bytes, mutated valid requests, and nested protobuf groups. */
export const UNSTRUCTURED: ReadonlyArray<(r: Random) => GrpcCase> = [
  (r) => ({ kind: 'random bytes', bytes: r.bytes(r.pick([0, 1, 2, 5, 16, 100, r.int(0, 4096)])), codes: ['INVALID_ARGUMENT', 'NOT_FOUND'] }),
  (r) => {
    const base = r.pick([encode(validFp32(r).request), encode(validStrings(r)), encode(validAddSub(r))]);
    return { kind: 'mutated valid request', bytes: r.mutate(base), codes: ANSWERED };
  },
  (r) => ({ kind: 'nested groups', bytes: Buffer.alloc(r.int(100, 100_000), 0x0b), codes: ['INVALID_ARGUMENT'] }),
];
