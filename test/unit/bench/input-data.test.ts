import { describe, expect, it } from 'vitest';
import { type ModelMetadata } from '../../../client/inference-client.js';
import { HOT_SETS, InputDataError, planInputs, resolveShapes, setsFromFile } from '../../../bench/load/input-data.js';

const md = (inputs: ModelMetadata['inputs']): ModelMetadata => ({ name: 'm', versions: ['1'], platform: 'onnxruntime_onnx', inputs, outputs: [] });
const addSub = md([
  { name: 'INPUT0', datatype: 'FP32', shape: [-1, 16] },
  { name: 'INPUT1', datatype: 'FP32', shape: [-1, 16] },
]);
const variable = md([
  { name: 'TEXT', datatype: 'BYTES', shape: [-1, -1] },
  { name: 'IDS', datatype: 'INT64', shape: [-1, 4] },
]);

describe('request shapes', () => {
  it('puts -b in front of the model dims for batching models', () => {
    expect(resolveShapes(addSub, 8, { batchSize: 4 })).toEqual({ INPUT0: [4, 16], INPUT1: [4, 16] });
    expect(resolveShapes(variable, 8, { batchSize: 2, shapes: new Map([['TEXT', [3]]]) })).toEqual({ TEXT: [2, 3], IDS: [2, 4] });
  });

  it('takes full shapes for models that do not batch', () => {
    const fixed = md([{ name: 'X', datatype: 'FP32', shape: [2, -1] }]);
    expect(resolveShapes(fixed, 0, { batchSize: 1, shapes: new Map([['X', [2, 5]]]) })).toEqual({ X: [2, 5] });
    expect(() => resolveShapes(fixed, 0, { batchSize: 2, shapes: new Map([['X', [2, 5]]]) })).toThrow(/does not batch \(max_batch_size 0\): -b must be 1/);
  });

  it('says which flag is missing or wrong', () => {
    expect(() => resolveShapes(variable, 8, { batchSize: 1 })).toThrow(/input 'TEXT' has variable dims \[-1\]: give them with --shape TEXT:/);
    expect(() => resolveShapes(addSub, 8, { batchSize: 16 })).toThrow(/over model 'm''s max_batch_size 8/);
    expect(() => resolveShapes(addSub, 8, { batchSize: 1, shapes: new Map([['INPUT0', [8]]]) })).toThrow(/dim 0 is fixed at 16 by the model, got 8/);
    expect(() => resolveShapes(addSub, 8, { batchSize: 1, shapes: new Map([['NOPE', [8]]]) })).toThrow(/has no such input; it has INPUT0, INPUT1/);
    expect(() => resolveShapes(addSub, 8, { batchSize: 1, shapes: new Map([['INPUT0', [8, 2]]]) })).toThrow(/expected 1 dims/);
  });
});

describe('request data', () => {
  it('is seeded random: the same seed gives the same sets, another seed others', () => {
    const a = planInputs(variable, 8, { batchSize: 2, shapes: new Map([['TEXT', [3]]]), data: { kind: 'random', seed: 5 }, poolSize: 4, stringLength: 6 });
    const b = planInputs(variable, 8, { batchSize: 2, shapes: new Map([['TEXT', [3]]]), data: { kind: 'random', seed: 5 }, poolSize: 4, stringLength: 6 });
    const c = planInputs(variable, 8, { batchSize: 2, shapes: new Map([['TEXT', [3]]]), data: { kind: 'random', seed: 6 }, poolSize: 4, stringLength: 6 });
    expect(a.sets).toHaveLength(4);
    expect(a.sets).toEqual(b.sets);
    expect(a.sets).not.toEqual(c.sets);
    const text = a.sets[0]?.[0];
    expect(text?.shape).toEqual([2, 3]);
    expect((text?.data as string[]).every((s) => /^[a-z]{6}$/.test(s))).toBe(true);
    expect(a.sets[0]?.[1]?.data).toBeInstanceOf(BigInt64Array);
  });

  it('is one all-zero set with --input-data zero', () => {
    const p = planInputs(addSub, 8, { batchSize: 2, data: { kind: 'zero' } });
    expect(p.sets).toHaveLength(1);
    expect([...(p.sets[0]?.[0]?.data as Float32Array)]).toEqual(new Array(32).fill(0));
  });

  it("reads perf_analyzer's JSON: flat, nested, content+shape and b64; b consecutive steps make a batch", () => {
    const file = JSON.stringify({
      data: [
        { TEXT: ['a', 'b'], IDS: [1, 2, 3, 4] },
        { TEXT: { content: ['c', 'd'], shape: [2] }, IDS: [[5, 6, 7, 8]] },
        { TEXT: ['e', 'f'], IDS: { b64: Buffer.from(BigInt64Array.from([9n, 10n, 11n, 12n]).buffer).toString('base64') } },
      ],
    });
    const shapes = { TEXT: [2, 2], IDS: [2, 4] };
    const sets = setsFromFile(file, variable, 8, shapes, 2);
    // 3 steps, 2 per request: one request.
    expect(sets).toHaveLength(1);
    expect(sets[0]?.[0]).toMatchObject({ name: 'TEXT', shape: [2, 2], data: ['a', 'b', 'c', 'd'] });
    expect(sets[0]?.[1]?.data).toEqual(BigInt64Array.from([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]));
    const single = setsFromFile(file, variable, 8, { TEXT: [1, 2], IDS: [1, 4] }, 1);
    expect(single).toHaveLength(3);
    expect(single[2]?.[1]?.data).toEqual(BigInt64Array.from([9n, 10n, 11n, 12n]));
  });

  it('says where a JSON file is wrong', () => {
    const shapes = { INPUT0: [1, 16], INPUT1: [1, 16] };
    expect(() => setsFromFile('{', addSub, 8, shapes, 1, 'f.json')).toThrow(/f.json: not valid JSON/);
    expect(() => setsFromFile('{"data": []}', addSub, 8, shapes, 1, 'f.json')).toThrow(/at least one step/);
    expect(() => setsFromFile(JSON.stringify({ data: [{ INPUT0: new Array(16).fill(1) }] }), addSub, 8, shapes, 1, 'f.json')).toThrow(/f.json: data\[0\].INPUT1: missing/);
    expect(() => setsFromFile(JSON.stringify({ data: [{ INPUT0: [1], INPUT1: [] }] }), addSub, 8, shapes, 1, 'f.json')).toThrow(/data\[0\].INPUT0: expected 16 values, got 1/);
    expect(() => setsFromFile(JSON.stringify({ data: [{ INPUT0: new Array(16).fill('x'), INPUT1: [] }] }), addSub, 8, shapes, 1)).toThrow(InputDataError);
  });
});

describe('--cache-hit-ratio input mix', () => {
  const keyOf = (inputs: readonly { data: unknown }[]): string => inputs.map((t) => JSON.stringify(Array.from(t.data as ArrayLike<unknown>, String))).join('|');
  const mix = (ratio: number, n: number, data: 'random' | 'zero' = 'random') => {
    const plan = planInputs(addSub, 8, { batchSize: 1, data: data === 'random' ? { kind: 'random', seed: 3 } : { kind: 'zero' }, cacheHitRatio: ratio });
    const inputsFor = plan.inputsFor;
    if (!inputsFor) throw new Error('no inputsFor with a hit ratio');
    return Array.from({ length: n }, (_, seq) => keyOf(inputsFor(seq)));
  };
  /** Requests whose inputs were sent before: what a large enough cache answers. */
  const repeats = (keys: string[]): number => keys.length - new Set(keys).size;

  it('repeats about the share asked for, from HOT_SETS inputs; every other request is new', () => {
    const n = 4000;
    const keys = mix(0.5, n);
    const share = repeats(keys) / n;
    expect(share).toBeGreaterThan(0.47);
    expect(share).toBeLessThan(0.53);
    const counts = new Map<string, number>();
    for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
    expect([...counts.values()].filter((c) => c > 1).length).toBe(HOT_SETS);
  });

  it('never repeats a fresh input when seq starts again (the next load level)', () => {
    const plan = planInputs(addSub, 8, { batchSize: 1, data: { kind: 'zero' }, cacheHitRatio: 0 });
    const keys = [0, 1, 2, 0, 1, 2].map((seq) => keyOf(plan.inputsFor?.(seq) ?? []));
    expect(new Set(keys).size).toBe(6);
  });

  it('is the same sequence every time, and works from zero data too', () => {
    expect(mix(0.3, 200)).toEqual(mix(0.3, 200));
    expect(repeats(mix(0, 1000, 'zero'))).toBe(0);
    expect(repeats(mix(1, 1000, 'zero'))).toBe(1000 - HOT_SETS);
  });

  it('keeps the shapes and datatypes, changing only the first input', () => {
    const plan = planInputs(addSub, 8, { batchSize: 2, data: { kind: 'random', seed: 1 }, cacheHitRatio: 0.5 });
    const a = plan.inputsFor?.(7) ?? [];
    expect(a.map((t) => [t.name, t.datatype, t.shape])).toEqual([['INPUT0', 'FP32', [2, 16]], ['INPUT1', 'FP32', [2, 16]]]);
    expect(a[1]).toBe(plan.sets[0]?.[1]);
    expect(() => planInputs(addSub, 8, { batchSize: 1, data: { kind: 'zero' }, cacheHitRatio: 1.5 })).toThrow(InputDataError);
  });
});
