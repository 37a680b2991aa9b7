import { describe, expect, it } from 'vitest';
import { type Tensor } from '../../../core/tensor.js';
import { cachedSize, decodeCachedResponse, encodeCachedResponse } from '../../../gateway/cache/cached-response.js';
import { LocalLru } from '../../../gateway/cache/local-lru.js';

const out = (bytes: number, fill = 1, name = 'OUTPUT0'): Tensor => ({ name, datatype: 'UINT8', shape: [1, bytes], data: new Uint8Array(bytes).fill(fill) });
const size = (key: string, bytes: number): number => cachedSize(key, [out(bytes)]);

describe('LocalLru', () => {
  it('returns exactly the bytes it was given, from a buffer of its own', () => {
    const batch = new Uint8Array(64).fill(7);
    batch.set([1, 2, 3, 4], 16);
    const view: Tensor = { name: 'Y', datatype: 'UINT8', shape: [4], data: batch.subarray(16, 20) };
    const lru = new LocalLru(10_000);
    expect(lru.put('k', [view])).toBe(true);
    const got = lru.get('k');
    expect(got?.map((t) => [t.name, t.datatype, t.shape, [...t.data]])).toEqual([['Y', 'UINT8', [4], [1, 2, 3, 4]]]);
    // Not a view into the batch: the batch buffer is not pinned, and later writes to it do not show.
    expect(got?.[0]?.data.buffer).not.toBe(batch.buffer);
    expect(got?.[0]?.data.byteLength).toBe(got?.[0]?.data.buffer.byteLength);
    batch.fill(0);
    expect([...(got?.[0]?.data ?? [])]).toEqual([1, 2, 3, 4]);
  });

  it('counts bytes and never holds more than its size', () => {
    const one = size('a', 1000);
    const lru = new LocalLru(3 * one);
    for (const k of ['a', 'b', 'c']) lru.put(k, [out(1000)]);
    expect(lru.bytes).toBe(3 * one);
    expect(lru.entries).toBe(3);
    lru.put('d', [out(1000)]);
    expect(lru.bytes).toBeLessThanOrEqual(3 * one);
    expect(lru.entries).toBe(3);
    expect(lru.evictions).toBe(1);
    expect(lru.get('a')).toBeUndefined();
  });

  it('evicts the least recently used entry: a hit renews an entry', () => {
    const one = size('a', 1000);
    const lru = new LocalLru(3 * one);
    for (const k of ['a', 'b', 'c']) lru.put(k, [out(1000)]);
    expect(lru.get('a')).toBeDefined();
    lru.put('d', [out(1000)]);
    expect(lru.get('b')).toBeUndefined();
    expect(lru.get('a')).toBeDefined();
    expect(lru.get('c')).toBeDefined();
    expect(lru.get('d')).toBeDefined();
  });

  it('evicts as many entries as a large one needs', () => {
    const small = size('k0', 100);
    const lru = new LocalLru(10 * small);
    for (let i = 0; i < 10; i++) lru.put(`k${i}`, [out(100)]);
    expect(lru.entries).toBe(10);
    lru.put('big', [out(5 * small)]);
    expect(lru.get('big')).toBeDefined();
    expect(lru.bytes).toBeLessThanOrEqual(10 * small);
    expect(lru.get('k0')).toBeUndefined();
    expect(lru.get('k9')).toBeDefined();
  });

  it('refuses an answer above max_entry_bytes or above its whole size, and keeps what it had', () => {
    const lru = new LocalLru(10_000, 2_000);
    lru.put('a', [out(100)]);
    expect(lru.put('b', [out(5_000)])).toBe(false);
    expect(new LocalLru(1_000).put('c', [out(2_000)])).toBe(false);
    expect(lru.get('a')).toBeDefined();
    expect(lru.get('b')).toBeUndefined();
    expect(lru.entries).toBe(1);
  });

  it('keeps the first answer when two identical misses insert', () => {
    const lru = new LocalLru(10_000);
    lru.put('k', [out(10, 1)]);
    lru.put('k', [out(10, 2)]);
    expect(lru.entries).toBe(1);
    expect(lru.bytes).toBe(size('k', 10));
    expect(lru.get('k')?.[0]?.data[0]).toBe(1);
  });
});

describe('Redis entry encoding', () => {
  it('round-trips every output with its name, datatype, shape and bytes', () => {
    const outputs: Tensor[] = [
      out(3, 9, 'A'),
      { name: 'B', datatype: 'BYTES', shape: [2], data: Uint8Array.from([1, 0, 0, 0, 120, 0, 0, 0, 0]) },
      { name: 'Ω', datatype: 'FP32', shape: [], data: new Uint8Array(new Float32Array([1.5]).buffer) },
    ];
    const decoded = decodeCachedResponse(encodeCachedResponse(outputs));
    expect(decoded.map((t) => [t.name, t.datatype, t.shape, [...t.data]])).toEqual(outputs.map((t) => [t.name, t.datatype, t.shape, [...t.data]]));
  });

  it('refuses a value it did not write', () => {
    expect(() => decodeCachedResponse(Buffer.from([1, 2]))).toThrow(/shorter than its header/);
    expect(() => decodeCachedResponse(Buffer.from([200, 0, 0, 0, 1]))).toThrow(/runs past/);
    const good = encodeCachedResponse([out(4)]);
    expect(() => decodeCachedResponse(good.subarray(0, good.length - 1))).toThrow(/runs past the value/);
    expect(() => decodeCachedResponse(Buffer.concat([good, Buffer.from([0])]))).toThrow(/1 bytes left/);
  });
});
