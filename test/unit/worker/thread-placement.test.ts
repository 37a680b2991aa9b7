import { describe, expect, it } from 'vitest';
import { defaultThreadCount, MAX_ORT_THREADS, placeInstances } from '../../../worker/thread-placement.js';

describe('ORT thread pool decisions', () => {
  it('sizes the pool to the device: the cores on CPU, a few on a GPU', () => {
    expect(defaultThreadCount({ kind: 'cpu' }, 2)).toBe(2);
    expect(defaultThreadCount({ kind: 'cpu' }, 16)).toBe(16);
    expect(defaultThreadCount({ kind: 'cpu' }, 0)).toBe(1);
    expect(defaultThreadCount({ kind: 'cpu' }, 500)).toBe(MAX_ORT_THREADS);
    expect(defaultThreadCount({ kind: 'gpu', deviceId: 0 }, 16)).toBe(4);
    expect(defaultThreadCount({ kind: 'gpu', deviceId: 1 }, 2)).toBe(2);
  });

  it("puts a model's instances on distinct threads, least loaded first, the lower index on a tie", () => {
    expect(placeInstances([0, 0, 0, 0], 2)).toEqual([0, 1]);
    expect(placeInstances([3, 1, 2, 1], 2)).toEqual([1, 3]);
    expect(placeInstances([3, 1, 2, 1], 4)).toEqual([1, 3, 2, 0]);
    expect(placeInstances([5, 0], 1)).toEqual([1]);
  });

  it('goes round again, least loaded first, only when there are more instances than threads', () => {
    expect(placeInstances([2, 0, 1], 5)).toEqual([1, 2, 0, 1, 2]);
    expect(() => placeInstances([], 1)).toThrow(/no threads/);
  });
});
