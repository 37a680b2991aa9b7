import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelSignature } from '../../../core/signature.js';
import { warmupSamples } from '../../../gateway/repository/warmup.js';
import { parseModelConfig } from '../../../models/config/model-config.js';

const FILE = 'm/config.pbtxt';
const BATCHING: ModelSignature = {
  name: 'm',
  version: '1',
  maxBatchSize: 8,
  inputs: [
    { name: 'x', datatype: 'FP32', dims: [4], dimNames: [''], optional: false },
    { name: 's', datatype: 'BYTES', dims: [2], dimNames: [''], optional: false },
  ],
  outputs: [{ name: 'y', datatype: 'FP32', dims: [4], dimNames: [''], optional: false }],
};

const config = (text: string) => parseModelConfig(text, FILE).config;
const warmup = (body: string, max = 8) => config(`max_batch_size: ${max}\nmodel_warmup [ { ${body} } ]`);
const BOTH = (x: string, s = 'zero_data: true') =>
  `inputs { key: "x" value { data_type: TYPE_FP32 dims: [ 4 ] ${x} } } inputs { key: "s" value { data_type: TYPE_STRING dims: [ 2 ] ${s} } }`;

describe('model_warmup samples', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fabriek-warmup-'));
    await mkdir(join(dir, 'warmup'));
    await writeFile(join(dir, 'warmup', 'x.bin'), Buffer.from(new Float32Array([1, 2, 3, 4]).buffer));
    await writeFile(join(dir, 'warmup', 'short.bin'), Buffer.alloc(12));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('builds zero, random and file data, duplicated to the batch size, and counts rounds', async () => {
    const [zero] = await warmupSamples(warmup(`name: "z" batch_size: 3 count: 2 ${BOTH('zero_data: true')}`), BATCHING, dir, FILE);
    expect(zero?.name).toBe('z');
    expect(zero?.rounds).toBe(2);
    expect(zero?.inputs.map((t) => [t.name, t.shape, t.data.byteLength])).toEqual([
      ['x', [3, 4], 48],
      ['s', [3, 2], 24],
    ]);
    expect(zero?.inputs[0]?.data.every((b) => b === 0)).toBe(true);

    const [random] = await warmupSamples(warmup(BOTH('random_data: true', 'random_data: true')), BATCHING, dir, FILE);
    const values = new Float32Array(random?.inputs[0]?.data.slice().buffer ?? new ArrayBuffer(0));
    expect(values.every((v) => v >= 0 && v < 1)).toBe(true);
    expect(random?.rounds).toBe(1);
    // Random BYTES fall back to empty strings, as in Triton.
    expect(random?.inputs[1]?.data.every((b) => b === 0)).toBe(true);

    const [fromFile] = await warmupSamples(warmup(`batch_size: 2 ${BOTH('input_data_file: "x.bin"')}`), BATCHING, dir, FILE);
    expect([...new Float32Array(fromFile?.inputs[0]?.data.slice().buffer ?? new ArrayBuffer(0))]).toEqual([1, 2, 3, 4, 1, 2, 3, 4]);
  });

  it('fails the load, naming file and field, for a sample that does not fit', async () => {
    const reason = async (c: ReturnType<typeof config>): Promise<string> =>
      warmupSamples(c, BATCHING, dir, FILE).then(
        () => 'loaded',
        (e: unknown) => (e as Error).message,
      );
    expect(await reason(warmup(`batch_size: 9 ${BOTH('zero_data: true')}`))).toBe(`${FILE}: model_warmup[0].batch_size: expected at most max_batch_size 8, got 9`);
    expect(await reason(warmup(BOTH('input_data_file: "short.bin"')))).toMatch(
      /^m\/config.pbtxt: model_warmup\[0\]\.inputs\["x"\]\.input_data_file: .*short\.bin: expected 16 bytes \(4 FP32 elements of one batch item\), got 12$/,
    );
    expect(await reason(warmup(BOTH('input_data_file: "none.bin"')))).toMatch(/model_warmup\[0\]\.inputs\["x"\]\.input_data_file: cannot read .*none\.bin/);
    expect(await reason(warmup('inputs { key: "x" value { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } }'))).toBe(
      `${FILE}: model_warmup[0].inputs: model 'm': missing required input 's' (inputs: x, s)`,
    );
    expect(await reason(warmup(BOTH('zero_data: true').replace('dims: [ 4 ]', 'dims: [ 5 ]')))).toMatch(/model_warmup\[0\]\.inputs: model 'm': input 'x': expected shape \[-1,4\], got \[1,5\]/);
    expect(await reason(warmup(BOTH('zero_data: true').replace('dims: [ 4 ]', 'dims: [ -1 ]')))).toMatch(/\.inputs\["x"\]\.dims: expected fixed sizes/);
    expect(await reason(warmup(BOTH('')))).toBe(`${FILE}: model_warmup[0].inputs["x"]: expected one of zero_data, random_data or input_data_file`);
    const nonBatching = { ...BATCHING, maxBatchSize: 0 };
    expect(await warmupSamples(config(`model_warmup [ { batch_size: 2 ${BOTH('zero_data: true')} } ]`), nonBatching, dir, FILE).catch((e: Error) => e.message)).toBe(
      `${FILE}: model_warmup[0].batch_size: expected 1 (the model does not batch: max_batch_size 0), got 2`,
    );
  });

  it('refuses a data file outside warmup/ while reading the config', () => {
    expect(() => warmup(BOTH('input_data_file: "../config.pbtxt"'))).toThrow(/input_data_file: expected a file name inside the model's warmup\/ directory/);
  });

  it('has no samples when the config has none', async () => {
    expect(await warmupSamples(config('max_batch_size: 8'), BATCHING, dir, FILE)).toEqual([]);
  });
});
