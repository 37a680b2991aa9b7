import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Datatype } from '../../core/datatypes.js';
import { type ModelSignature } from '../../core/signature.js';
import { type Tensor } from '../../core/tensor.js';
import { checkClassifiable, classCountOf, classify, NO_LABELS, readLabels } from '../../gateway/inference/classification.js';
import { ModelConfig } from '../../proto/gen/model_config.js';

/** KServe raw BYTES → strings. */
function strings(t: Tensor): string[] {
  const out: string[] = [];
  const b = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  for (let at = 0; at < b.byteLength; ) {
    const n = b.readUInt32LE(at);
    out.push(b.toString('utf8', at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

const fp32 = (shape: number[], values: number[]): Tensor => ({ name: 'OUT', datatype: 'FP32', shape, data: new Uint8Array(Float32Array.from(values).buffer) });

function one(t: Tensor, k: number, labels: readonly string[] | undefined, batching: boolean): Tensor {
  const [out] = classify([t], new Map([[t.name, k]]), labels === undefined ? NO_LABELS : new Map([[t.name, labels]]), batching);
  return out as Tensor;
}

describe('classify', () => {
  it('answers the K largest of each batch item, largest first, with labels', () => {
    const t = fp32([2, 4], [0.1, 0.7, 0.2, 0.5, 3, -1, 2, 1]);
    const out = one(t, 2, ['cat', 'dog', 'fish', 'bird'], true);
    expect(out.datatype).toBe('BYTES');
    expect(out.shape).toEqual([2, 2]);
    expect(strings(out)).toEqual(['0.700000:1:dog', '0.500000:3:bird', '3.000000:0:cat', '2.000000:2:fish']);
  });

  it('without labels, or past the labels, or on an empty label line, answers value:index', () => {
    const t = fp32([1, 3], [1, 3, 2]);
    expect(strings(one(t, 3, undefined, true))).toEqual(['3.000000:1', '2.000000:2', '1.000000:0']);
    expect(strings(one(t, 3, ['a', ''], true))).toEqual(['3.000000:1', '2.000000:2', '1.000000:0:a']);
  });

  it('takes the whole tensor as one item when the model does not batch', () => {
    const out = one(fp32([2, 3], [1, 6, 2, 5, 3, 4]), 2, undefined, false);
    expect(out.shape).toEqual([2]);
    expect(strings(out)).toEqual(['6.000000:1', '5.000000:3']);
  });

  it('answers every element when K is larger, and the raw tensor when K is 0', () => {
    const t = fp32([1, 2], [1, 2]);
    const all = one(t, 10, undefined, true);
    expect(all.shape).toEqual([1, 2]);
    expect(strings(all)).toEqual(['2.000000:1', '1.000000:0']);
    expect(one(t, 0, undefined, true)).toBe(t);
  });

  it('keeps ties in index order and puts NaN last', () => {
    expect(strings(one(fp32([1, 5], [NaN, 1, 2, 1, 2]), 5, undefined, true))).toEqual(['2.000000:2', '2.000000:4', '1.000000:1', '1.000000:3', 'nan:0']);
  });

  it('writes values as Triton does: integers whole, floats with six decimals, inf and -inf', () => {
    expect(strings(one(fp32([1, 4], [Infinity, -Infinity, -0, 1e30]), 4, undefined, true))).toEqual([
      'inf:0',
      '1000000015047466219876688855040.000000:3',
      '-0.000000:2',
      '-inf:1',
    ]);
    const i64: Tensor = { name: 'OUT', datatype: 'INT64', shape: [3], data: new Uint8Array(BigInt64Array.from([5n, -7n, 9007199254740993n]).buffer) };
    expect(strings(one(i64, 2, undefined, false))).toEqual(['9007199254740993:2', '5:0']);
    const u8: Tensor = { name: 'OUT', datatype: 'UINT8', shape: [1, 3], data: Uint8Array.from([200, 3, 255]) };
    expect(strings(one(u8, 1, undefined, true))).toEqual(['255:2']);
  });

  it('rounds an exact tie at the sixth decimal to even, as glibc\'s "%f" (toFixed rounds it up)', () => {
    // Values and their text from Python's '%f', which rounds as glibc does.
    const cases: [number, string][] = [
      [0.0078125, '0.007812'],
      [0.0234375, '0.023438'],
      [-0.0078125, '-0.007812'],
      [1.0000005, '1.000001'],
      [0.01171875, '0.011719'],
      [2.5e-7, '0.000000'],
      [12.0000625, '12.000063'],
    ];
    const t: Tensor = { name: 'OUT', datatype: 'FP64', shape: [cases.length], data: new Uint8Array(Float64Array.from(cases.map(([v]) => v)).buffer) };
    const byIndex = new Map(strings(one(t, cases.length, undefined, false)).map((text) => [Number(text.split(':')[1]), text.split(':')[0]]));
    expect(cases.map((_, i) => byIndex.get(i))).toEqual(cases.map(([, text]) => text));
  });

  it('reads FP16 and BF16 elements', () => {
    // FP16: 1.5 = 0x3e00, -2 = 0xc000, 65504 = 0x7bff; BF16: 1.5 = 0x3fc0, 3 = 0x4040.
    const half: Tensor = { name: 'OUT', datatype: 'FP16', shape: [1, 3], data: new Uint8Array(Uint16Array.from([0x3e00, 0xc000, 0x7bff]).buffer) };
    expect(strings(one(half, 3, undefined, true))).toEqual(['65504.000000:2', '1.500000:0', '-2.000000:1']);
    const bf16: Tensor = { name: 'OUT', datatype: 'BF16', shape: [1, 2], data: new Uint8Array(Uint16Array.from([0x3fc0, 0x4040]).buffer) };
    expect(strings(one(bf16, 1, undefined, true))).toEqual(['3.000000:1']);
  });

  it('reads an output that is a view at an odd offset of a larger buffer', () => {
    const backing = new Uint8Array(1 + 8);
    new DataView(backing.buffer).setFloat32(1, 0.25, true);
    new DataView(backing.buffer).setFloat32(5, 0.75, true);
    const t: Tensor = { name: 'OUT', datatype: 'FP32', shape: [1, 2], data: backing.subarray(1) };
    expect(strings(one(t, 1, undefined, true))).toEqual(['0.750000:1']);
  });

  it('leaves the outputs not asked for as they are', () => {
    const a = fp32([1, 2], [1, 2]);
    const b = { ...fp32([1, 2], [3, 4]), name: 'OTHER' };
    const [x, y] = classify([a, b], new Map([['OTHER', 1]]), NO_LABELS, true);
    expect(x).toBe(a);
    expect(strings(y as Tensor)).toEqual(['4.000000:1']);
  });
});

describe('classCountOf', () => {
  it('takes a whole number, from JSON or an int64_param', () => {
    expect(classCountOf(3, 'o')).toBe(3);
    expect(classCountOf(3n, 'o')).toBe(3);
    expect(classCountOf(0, 'o')).toBe(0);
  });

  it.each([[-1], [1.5], ['three'], [true], [null]])('refuses %s, saying what it needs', (value) => {
    expect(() => classCountOf(value, "model 'm': output 'o'")).toThrow(/model 'm': output 'o': parameter 'classification' must be a non-negative integer/);
  });
});

describe('checkClassifiable', () => {
  const signature = (datatype: Datatype): ModelSignature => ({
    name: 'm',
    version: '1',
    maxBatchSize: 8,
    inputs: [],
    outputs: [{ name: 'OUT', datatype, dims: [4], dimNames: [''], optional: false }],
  });

  it.each<Datatype>(['BYTES', 'BOOL'])("refuses %s in Triton's words, as INVALID_ARGUMENT", (datatype) => {
    expect(() => checkClassifiable(signature(datatype), new Map([['OUT', 2]]), 'm/1')).toThrow(
      expect.objectContaining({ code: 3, message: expect.stringContaining(`class result not available for output due to unsupported type '${datatype}'`) }),
    );
  });

  it('takes numeric outputs', () => {
    for (const d of ['FP32', 'FP16', 'BF16', 'INT64', 'UINT8'] as const) checkClassifiable(signature(d), new Map([['OUT', 2]]), 'm/1');
  });
});

describe('readLabels', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fabriek-labels-'));
    await writeFile(join(dir, 'labels.txt'), 'tench\r\ngoldfish\n\nshark\n');
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const config = (labelFilename: string): ModelConfig => ModelConfig.fromPartial({ name: 'm', output: [{ name: 'OUT', labelFilename }, { name: 'RAW' }] });

  it("reads each output's label file from the model's directory, one label a line", async () => {
    const labels = await readLabels(config('labels.txt'), dir, 'config.pbtxt');
    expect([...labels.keys()]).toEqual(['OUT']);
    expect(labels.get('OUT')).toEqual(['tench', 'goldfish', '', 'shark']);
  });

  it('fails the load for a file that cannot be read, naming the field and the file', async () => {
    await expect(readLabels(config('missing.txt'), dir, 'config.pbtxt')).rejects.toThrow(/config\.pbtxt: output\[0\]\.label_filename: failed to read the label file .*missing\.txt/);
  });

  it('refuses a path outside the model directory', async () => {
    await expect(readLabels(config('../labels.txt'), dir, 'config.pbtxt')).rejects.toThrow(/label_filename: expected a file name in the model's directory, got '\.\.\/labels\.txt'/);
  });
});
