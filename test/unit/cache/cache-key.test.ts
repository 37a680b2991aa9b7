import { describe, expect, it } from 'vitest';
import { type Tensor } from '../../../core/tensor.js';
import { type CacheKeyParts, responseCacheKey } from '../../../gateway/cache/cache-key.js';

const f32 = (name: string, values: number[], shape: number[] = [1, values.length]): Tensor => ({
  name,
  datatype: 'FP32',
  shape,
  data: new Uint8Array(Float32Array.from(values).buffer),
});

const base: CacheKeyParts = {
  model: 'mlp',
  version: 1,
  config: 'digest-a',
  tenant: 'alice',
  inputs: [f32('INPUT0', [1, 2, 3, 4]), f32('INPUT1', [5, 6])],
  outputs: ['OUTPUT0'],
};

describe('responseCacheKey', () => {
  it('is the same for the same request, whatever buffers hold the bytes', () => {
    const copy: CacheKeyParts = {
      ...base,
      // The same bytes as a view into a larger buffer, as decoded requests hold them.
      inputs: base.inputs.map((t) => {
        const big = new Uint8Array(t.data.byteLength + 16);
        big.set(t.data, 8);
        return { ...t, shape: [...t.shape], data: big.subarray(8, 8 + t.data.byteLength) };
      }),
    };
    expect(responseCacheKey(copy)).toBe(responseCacheKey(base));
    expect(responseCacheKey(base)).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  });

  const changes: [string, CacheKeyParts][] = [
    ['model', { ...base, model: 'mlp2' }],
    ['version', { ...base, version: 2 }],
    ['the served config', { ...base, config: 'digest-b' }],
    ['tenant', { ...base, tenant: 'bob' }],
    ['tenant left out (shared)', { ...base, tenant: undefined }],
    ['an input name', { ...base, inputs: [f32('INPUTX', [1, 2, 3, 4]), f32('INPUT1', [5, 6])] }],
    ['an input datatype', { ...base, inputs: [{ ...f32('INPUT0', [1, 2, 3, 4]), datatype: 'INT32' }, f32('INPUT1', [5, 6])] }],
    ['an input shape, same bytes', { ...base, inputs: [f32('INPUT0', [1, 2, 3, 4], [2, 2]), f32('INPUT1', [5, 6])] }],
    ['an input byte', { ...base, inputs: [f32('INPUT0', [1, 2, 3, 4.0001]), f32('INPUT1', [5, 6])] }],
    ['the second input', { ...base, inputs: [f32('INPUT0', [1, 2, 3, 4]), f32('INPUT1', [5, 7])] }],
    ['a missing input', { ...base, inputs: [f32('INPUT0', [1, 2, 3, 4])] }],
    ['the input order', { ...base, inputs: [f32('INPUT1', [5, 6]), f32('INPUT0', [1, 2, 3, 4])] }],
    ['the requested outputs', { ...base, outputs: ['OUTPUT1'] }],
    ['all outputs instead of one', { ...base, outputs: [] }],
    ['the order of the requested outputs', { ...base, outputs: ['OUTPUT1', 'OUTPUT0'] }],
    ['another output list of the same bytes', { ...base, outputs: ['OUTPUT', '0'] }],
    // Framing: moving bytes from one tensor to the next must not give the same stream.
    ['bytes moved between inputs', { ...base, inputs: [f32('INPUT0', [1, 2, 3]), f32('INPUT1', [4, 5, 6], [1, 3])] }],
    ['a name moved into the tenant', { ...base, model: 'mlpa', tenant: 'lice' }],
  ];
  it.each(changes)('changes with %s', (_what, changed) => {
    expect(responseCacheKey(changed)).not.toBe(responseCacheKey(base));
  });

  it('tells every variation apart from every other', () => {
    const keys = new Set([base, ...changes.map(([, c]) => c)].map(responseCacheKey));
    expect(keys.size).toBe(changes.length + 1);
  });
});
