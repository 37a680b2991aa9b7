// The generated test models: they build deterministically, load in ONNX
// Runtime (CPU) and compute what they claim, checked against plain-JS references.

import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFloatInitializers, type FloatTensor } from '../../models/build/onnx-graph.js';
import { mulberry32, uniformFloat32 } from '../../models/build/seeded-random.js';
import {
  buildModel,
  buildModels,
  EXAMPLE_CONFIGS,
  EXAMPLE_MODELS,
  modelPath,
  TEST_MODELS,
  type TestModelName,
} from '../../models/build/test-models.js';
import { packageTensor } from '../helpers/ort-reference.js';

const EXAMPLES_DIR = join(import.meta.dirname, '..', '..', 'models', 'examples');

let repo: string;

beforeAll(async () => {
  repo = await mkdtemp(join(tmpdir(), 'fabriek-test-models-'));
  await buildModels(repo);
});

afterAll(async () => {
  await rm(repo, { recursive: true, force: true });
});

async function withSession<T>(name: TestModelName, fn: (s: ort.InferenceSession) => Promise<T>): Promise<T> {
  const session = await ort.InferenceSession.create(modelPath(repo, name));
  try {
    return await fn(session);
  } finally {
    await session.release();
  }
}

function output(outputs: ort.InferenceSession.OnnxValueMapType, name: string): ort.Tensor {
  const t = outputs[name];
  if (t === undefined) throw new Error(`missing output ${name}`);
  return t;
}

function floats(t: ort.Tensor): Float32Array {
  if (!(t.data instanceof Float32Array)) throw new Error(`expected float32 data, got ${t.type}`);
  return t.data;
}

function weight(w: ReadonlyMap<string, FloatTensor>, name: string): FloatTensor {
  const t = w.get(name);
  if (t === undefined) throw new Error(`missing initializer ${name}`);
  return t;
}

function expectClose(actual: Float32Array, expected: Float64Array, tol = 1e-4): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs((actual[i] ?? NaN) - (expected[i] ?? NaN)));
  expect(worst).toBeLessThan(tol);
}

// ---------------------------------------------------------------------------
// Plain-JS references (float64 accumulation), weights read back from the model.
// ---------------------------------------------------------------------------

/** y = x·Wᵀ + b with W stored [out, in] (Gemm transB=1). */
function gemm(x: Float64Array, rows: number, w: FloatTensor, b: FloatTensor): Float64Array {
  const [out = 0, inp = 0] = w.dims;
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < out; o++) {
      let acc = b.data[o] ?? 0;
      for (let i = 0; i < inp; i++) acc += (x[r * inp + i] ?? 0) * (w.data[o * inp + i] ?? 0);
      y[r * out + o] = acc;
    }
  }
  return y;
}

function relu(x: Float64Array): Float64Array {
  return x.map((v) => Math.max(0, v));
}

function mlpReference(bytes: Uint8Array, input: Float32Array, rows: number): Float64Array {
  const w = readFloatInitializers(bytes);
  const layers = [...w.keys()].filter((k) => k.endsWith('.weight')).length;
  let x: Float64Array = Float64Array.from(input);
  for (let l = 1; l <= layers; l++) {
    x = gemm(x, rows, weight(w, `fc${l}.weight`), weight(w, `fc${l}.bias`));
    if (l < layers) x = relu(x);
  }
  return x;
}

/** NCHW conv, 3x3 kernel, stride 1, pad 1. */
function conv3x3(x: Float64Array, n: number, cin: number, h: number, wd: number, k: FloatTensor, b: FloatTensor): Float64Array {
  const cout = k.dims[0] ?? 0;
  const y = new Float64Array(n * cout * h * wd);
  for (let s = 0; s < n; s++)
    for (let co = 0; co < cout; co++)
      for (let i = 0; i < h; i++)
        for (let j = 0; j < wd; j++) {
          let acc = b.data[co] ?? 0;
          for (let ci = 0; ci < cin; ci++)
            for (let ki = 0; ki < 3; ki++)
              for (let kj = 0; kj < 3; kj++) {
                const ii = i + ki - 1;
                const jj = j + kj - 1;
                if (ii < 0 || ii >= h || jj < 0 || jj >= wd) continue;
                acc += (x[((s * cin + ci) * h + ii) * wd + jj] ?? 0) * (k.data[((co * cin + ci) * 3 + ki) * 3 + kj] ?? 0);
              }
          y[((s * cout + co) * h + i) * wd + j] = acc;
        }
  return y;
}

/** 2x2 max pool, stride 2, over [n*c, h, w]. */
function maxPool2(x: Float64Array, planes: number, h: number, wd: number): Float64Array {
  const oh = h / 2;
  const ow = wd / 2;
  const y = new Float64Array(planes * oh * ow);
  for (let p = 0; p < planes; p++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++) {
        let m = -Infinity;
        for (let di = 0; di < 2; di++)
          for (let dj = 0; dj < 2; dj++) m = Math.max(m, x[(p * h + 2 * i + di) * wd + 2 * j + dj] ?? -Infinity);
        y[(p * oh + i) * ow + j] = m;
      }
  return y;
}

function cnnReference(bytes: Uint8Array, image: Float32Array, n: number): Float64Array {
  const w = readFloatInitializers(bytes);
  let x: Float64Array = Float64Array.from(image);
  x = maxPool2(relu(conv3x3(x, n, 1, 28, 28, weight(w, 'conv1.weight'), weight(w, 'conv1.bias'))), n * 8, 28, 28);
  x = maxPool2(relu(conv3x3(x, n, 8, 14, 14, weight(w, 'conv2.weight'), weight(w, 'conv2.bias'))), n * 16, 14, 14);
  // Flatten of NCHW [n,16,7,7] is already the row-major layout.
  return gemm(x, n, weight(w, 'fc.weight'), weight(w, 'fc.bias'));
}

// ---------------------------------------------------------------------------

describe('test model registry and files', () => {
  it('lists the expected models', () => {
    expect([...TEST_MODELS].sort()).toEqual(
      [
        'add_sub',
        'bf16_identity',
        'fixed_fp32',
        'identity_bool',
        'identity_fp16',
        'identity_fp32',
        'identity_fp64',
        'identity_int16',
        'identity_int32',
        'identity_int64',
        'identity_int8',
        'identity_string',
        'identity_uint16',
        'identity_uint32',
        'identity_uint64',
        'identity_uint8',
        'mlp',
        'mlp_large',
        'mlp_small',
        'multi_dtype',
        'per_item_scalar',
        'scalar_add',
        'resnet18',
        'resnet_small',
        'ragged_sum',
        'row_sum',
        'ragged_mlp',
        'ragged_running_sum',
        'row_mlp',
        'running_sum',
        'running_sum_unbatched',
        'simple_cnn',
        'slow_chain',
        'string_identity',
      ].sort(),
    );
  });

  it('writes <name>/1/model.onnx only, and skips unchanged files on re-runs', async () => {
    expect((await readdir(repo)).sort()).toEqual([...TEST_MODELS].sort());
    expect(await readdir(join(repo, 'add_sub'))).toEqual(['1']);
    expect(await readdir(join(repo, 'add_sub', '1'))).toEqual(['model.onnx']);

    const names = ['mlp_small', 'add_sub'] as const;
    const before = await Promise.all(names.map(async (n) => (await stat(modelPath(repo, n))).mtimeMs));
    await new Promise((r) => setTimeout(r, 20));
    const paths = await buildModels(repo, names);
    expect(paths).toEqual(names.map((n) => modelPath(repo, n)));
    const after = await Promise.all(names.map(async (n) => (await stat(modelPath(repo, n))).mtimeMs));
    expect(after).toEqual(before);
  });

  it('rejects unknown model names', async () => {
    expect(() => buildModel('nope')).toThrow(/unknown test model "nope"/);
    await expect(buildModels(repo, ['add_sub', 'nope'])).rejects.toThrow(/unknown test model/);
  });

  it('builds byte-identical models every time', async () => {
    for (const name of TEST_MODELS) {
      const a = buildModel(name);
      const b = buildModel(name);
      expect(Buffer.from(a).equals(Buffer.from(b)), name).toBe(true);
      expect((await readFile(modelPath(repo, name))).equals(a), name).toBe(true);
    }
  });

  it('keeps the committed example repository in sync with the builders', async () => {
    let total = 0;
    for (const name of EXAMPLE_MODELS) {
      const onDisk = await readFile(modelPath(EXAMPLES_DIR, name));
      expect(onDisk.equals(buildModel(name)), `${name} out of date: run build-test-models --examples`).toBe(true);
      total += onDisk.byteLength;
    }
    for (const [name, config] of Object.entries(EXAMPLE_CONFIGS)) {
      expect(await readFile(join(EXAMPLES_DIR, name, 'config.pbtxt'), 'utf8')).toBe(config);
    }
    expect(total).toBeLessThan(2 * 1024 * 1024);
  });
});

describe('models run in onnxruntime-node (CPU)', () => {
  // [suffix, ORT type, sample data for a [2,3] tensor]
  const identityCases: readonly [string, ort.Tensor.Type, ort.Tensor.DataType | readonly string[]][] = [
    ['bool', 'bool', new Uint8Array([1, 0, 1, 1, 0, 0])],
    ['uint8', 'uint8', new Uint8Array([0, 1, 2, 127, 128, 255])],
    ['uint16', 'uint16', new Uint16Array([0, 1, 2, 32767, 32768, 65535])],
    ['uint32', 'uint32', new Uint32Array([0, 1, 2, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1])],
    ['uint64', 'uint64', new BigUint64Array([0n, 1n, 2n, 2n ** 63n, 2n ** 64n - 2n, 2n ** 64n - 1n])],
    ['int8', 'int8', new Int8Array([-128, -1, 0, 1, 2, 127])],
    ['int16', 'int16', new Int16Array([-32768, -1, 0, 1, 2, 32767])],
    ['int32', 'int32', new Int32Array([-(2 ** 31), -1, 0, 1, 2, 2 ** 31 - 1])],
    ['int64', 'int64', new BigInt64Array([-(2n ** 63n), -1n, 0n, 1n, 2n, 2n ** 63n - 1n])],
    // fp16 travels as raw bit patterns: 0, 1.0, -2.0, 65504, +inf, 0.5
    ['fp16', 'float16', new Uint16Array([0x0000, 0x3c00, 0xc000, 0x7bff, 0x7c00, 0x3800])],
    ['fp64', 'float64', new Float64Array([-1.5, 0, 1e-300, Math.PI, 1e300, -0])],
    ['string', 'string', ['', 'a', 'héllo', 'x'.repeat(100), 'tab\there', '🙂']],
  ];

  for (const [suffix, type, data] of identityCases) {
    it(`identity_${suffix}: OUTPUT0 equals INPUT0 for [batch, n] inputs`, async () => {
      const name = `identity_${suffix}` as TestModelName;
      await withSession(name, async (s) => {
        expect(s.inputMetadata[0]).toMatchObject({ name: 'INPUT0', type, shape: ['batch', 'n'] });
        const input = packageTensor(type, data as ort.Tensor.DataType, [2, 3]);
        const out = output(await s.run({ INPUT0: input }), 'OUTPUT0');
        expect(out.type).toBe(type);
        expect(out.dims).toEqual([2, 3]);
        // FP16 as raw bits: a Node with Float16Array gives the output as one.
        const got = type === 'float16' && ArrayBuffer.isView(out.data) ? new Uint16Array(out.data.buffer, out.data.byteOffset, out.data.byteLength / 2) : out.data;
        expect(Array.from(got as ArrayLike<unknown>)).toEqual(Array.from(data as ArrayLike<unknown>));
      });
    });
  }

  it('identity_fp32 and string_identity', async () => {
    await withSession('identity_fp32', async (s) => {
      expect(s.inputMetadata[0]).toMatchObject({ name: 'INPUT0', type: 'float32', shape: ['batch', 16] });
      const x = uniformFloat32('in/identity_fp32', 3 * 16, 10);
      const out = output(await s.run({ INPUT0: new ort.Tensor('float32', x, [3, 16]) }), 'OUTPUT0');
      expect(out.dims).toEqual([3, 16]);
      expect(floats(out)).toEqual(x);
    });
    await withSession('string_identity', async (s) => {
      const x = ['one', 'two', '', 'four'];
      const out = output(await s.run({ INPUT0: new ort.Tensor('string', x, [1, 4]) }), 'OUTPUT0');
      expect(out.data).toEqual(x);
    });
  });

  it('identity_string: onnxruntime-node cuts strings at the first NUL (known binding limit)', async () => {
    // The binding passes strings as C strings, so BYTES elements holding
    // arbitrary binary data cannot round-trip through it. If this starts
    // failing, ORT fixed it and the server may drop its workaround.
    await withSession('identity_string', async (s) => {
      const out = output(await s.run({ INPUT0: new ort.Tensor('string', ['a\u0000b', 'ok'], [1, 2]) }), 'OUTPUT0');
      expect(out.data).toEqual(['a', 'ok']);
    });
  });

  it('add_sub: OUTPUT0 = a + b, OUTPUT1 = a - b', async () => {
    await withSession('add_sub', async (s) => {
      expect(s.inputNames).toEqual(['INPUT0', 'INPUT1']);
      expect(s.outputNames).toEqual(['OUTPUT0', 'OUTPUT1']);
      const a = uniformFloat32('in/add_sub/a', 4 * 16, 100);
      const b = uniformFloat32('in/add_sub/b', 4 * 16, 100);
      const out = await s.run({ INPUT0: new ort.Tensor('float32', a, [4, 16]), INPUT1: new ort.Tensor('float32', b, [4, 16]) });
      // Float32 add/sub is exact in both JS (via fround) and ORT.
      expect(floats(output(out, 'OUTPUT0'))).toEqual(a.map((v, i) => v + (b[i] ?? NaN)));
      expect(floats(output(out, 'OUTPUT1'))).toEqual(a.map((v, i) => v - (b[i] ?? NaN)));
      expect(output(out, 'OUTPUT0').dims).toEqual([4, 16]);
    });
  });

  it('multi_dtype: Cast, double add, Not', async () => {
    await withSession('multi_dtype', async (s) => {
      expect(s.inputMetadata.map((m) => (m.isTensor ? [m.name, m.type] : [m.name]))).toEqual([
        ['A', 'int32'],
        ['B', 'float64'],
        ['C', 'bool'],
      ]);
      const out = await s.run({
        A: new ort.Tensor('int32', new Int32Array([1, -2, 3, 16777217, 0, 7, -8, 9]), [2, 4]),
        B: new ort.Tensor('float64', new Float64Array([0.1, -0.25, 1e10, 3, 0, -0, 2.5, 1e-10]), [2, 4]),
        C: new ort.Tensor('bool', new Uint8Array([1, 0, 0, 1, 1, 1, 0, 0]), [2, 4]),
      });
      const aFloat = output(out, 'A_FLOAT');
      expect(aFloat.type).toBe('float32');
      // 16777217 is not representable in float32 and rounds to 16777216.
      expect(Array.from(floats(aFloat))).toEqual([1, -2, 3, 16777216, 0, 7, -8, 9]);
      const bDoubled = output(out, 'B_DOUBLED');
      expect(bDoubled.type).toBe('float64');
      expect(Array.from(bDoubled.data as Float64Array)).toEqual([0.2, -0.5, 2e10, 6, 0, -0, 5, 2e-10]);
      const cNot = output(out, 'C_NOT');
      expect(cNot.type).toBe('bool');
      expect(Array.from(cNot.data as Uint8Array, Boolean)).toEqual([false, true, true, false, false, false, true, true]);
    });
  });

  it('fixed_fp32: fixed [2,3] shape, Y = Relu(X)', async () => {
    await withSession('fixed_fp32', async (s) => {
      expect(s.inputMetadata[0]).toMatchObject({ name: 'X', type: 'float32', shape: [2, 3] });
      const x = new Float32Array([-1, 0, 1, -2.5, 2.5, 1e-7]);
      const out = output(await s.run({ X: new ort.Tensor('float32', x, [2, 3]) }), 'Y');
      expect(Array.from(floats(out))).toEqual([0, 0, 1, 0, 2.5, Math.fround(1e-7)]);
    });
  });

  for (const [name, hidden] of [
    ['mlp_small', [128]],
    ['mlp', [1024, 1024, 1024]],
    ['mlp_large', [2048, 2048, 2048, 2048]],
  ] as const) {
    it(`${name}: 784→${hidden.join('→')}→10 matches a plain-JS reference`, async () => {
      const bytes = await readFile(modelPath(repo, name));
      const weights = readFloatInitializers(bytes);
      expect(weights.get('fc1.weight')?.dims).toEqual([hidden[0], 784]);
      expect(weights.get(`fc${hidden.length + 1}.weight`)?.dims).toEqual([10, hidden.at(-1)]);

      const rows = 3;
      const next = mulberry32(42);
      const input = Float32Array.from({ length: rows * 784 }, () => next());
      const expected = mlpReference(bytes, input, rows);
      await withSession(name, async (s) => {
        expect(s.inputMetadata[0]).toMatchObject({ name: 'input', type: 'float32', shape: ['batch', 784] });
        const out = output(await s.run({ input: new ort.Tensor('float32', input, [rows, 784]) }), 'logits');
        expect(out.dims).toEqual([rows, 10]);
        expectClose(floats(out), expected);
      });
      // Activations stay sane: logits neither vanish nor explode.
      const rms = Math.sqrt(expected.reduce((a, v) => a + v * v, 0) / expected.length);
      expect(rms).toBeGreaterThan(0.05);
      expect(rms).toBeLessThan(100);
    });
  }

  it('simple_cnn: conv/pool/gemm matches a plain-JS reference', async () => {
    const bytes = await readFile(modelPath(repo, 'simple_cnn'));
    const n = 2;
    const next = mulberry32(7);
    const image = Float32Array.from({ length: n * 28 * 28 }, () => next());
    const expected = cnnReference(bytes, image, n);
    await withSession('simple_cnn', async (s) => {
      expect(s.inputMetadata[0]).toMatchObject({ name: 'image', type: 'float32', shape: ['batch', 1, 28, 28] });
      const out = output(await s.run({ image: new ort.Tensor('float32', image, [n, 1, 28, 28]) }), 'logits');
      expect(out.dims).toEqual([n, 10]);
      expectClose(floats(out), expected);
    });
  });

  it('bf16_identity: onnxruntime-node refuses to load it', async () => {
    // The native session is created, but onnxruntime-node has no bfloat16
    // tensor type and throws while converting the input metadata.
    await expect(ort.InferenceSession.create(modelPath(repo, 'bf16_identity'))).rejects.toThrow(/Unsupported data type: 16/);
  });
});
