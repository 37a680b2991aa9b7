import { describe, expect, it } from 'vitest';
import { planEviction, type Resident, retryDelayMs } from '../../../gateway/repository/eviction-plan.js';
import { type MemoryBudget } from '../../../gateway/repository/memory-budget.js';

const MODELS = (limit: number): MemoryBudget => ({ unit: 'models', limit });
const MIB = 2 ** 20;

function resident(key: string, lastUse: number, extra: Partial<Resident> = {}): Resident {
  return { key, workers: ['w0'], cost: 1, lastUse, busy: false, pinned: false, ...extra };
}

describe('planEviction', () => {
  it('evicts nothing while the model fits', () => {
    expect(planEviction(MODELS(3), [resident('a', 1), resident('b', 2)], { key: 'c', workers: ['w0'], cost: 1 })).toEqual({ fits: true, evict: [] });
  });

  it('evicts the least recently used idle model first', () => {
    const plan = planEviction(MODELS(3), [resident('a', 5), resident('b', 2), resident('c', 9)], { key: 'd', workers: ['w0'], cost: 1 });
    expect(plan).toEqual({ fits: true, evict: ['b'] });
  });

  it('never evicts a busy or pinned model, even when it is the least recently used', () => {
    const residents = [resident('a', 1, { busy: true }), resident('b', 2, { pinned: true }), resident('c', 3)];
    expect(planEviction(MODELS(3), residents, { key: 'd', workers: ['w0'], cost: 1 })).toEqual({ fits: true, evict: ['c'] });
  });

  it('evicts as many as the bytes need, oldest first', () => {
    const budget: MemoryBudget = { unit: 'bytes', limit: 10 * MIB };
    const residents = [resident('a', 1, { cost: 2 * MIB }), resident('b', 2, { cost: 3 * MIB }), resident('c', 3, { cost: 4 * MIB })];
    expect(planEviction(budget, residents, { key: 'd', workers: ['w0'], cost: 5 * MIB })).toEqual({ fits: true, evict: ['a', 'b'] });
  });

  it('counts the budget per worker and evicts only where the load goes', () => {
    const residents = [resident('a', 1, { workers: ['w1'] }), resident('b', 2, { workers: ['w0'] }), resident('c', 3, { workers: ['w0'] })];
    expect(planEviction(MODELS(2), residents, { key: 'd', workers: ['w0'], cost: 1 })).toEqual({ fits: true, evict: ['b'] });
    expect(planEviction(MODELS(2), residents, { key: 'd', workers: ['w1'], cost: 1 })).toEqual({ fits: true, evict: [] });
  });

  it('refuses, saying why, when everything left is busy or pinned', () => {
    const residents = [resident('a', 1, { busy: true }), resident('b', 2, { pinned: true })];
    const plan = planEviction(MODELS(2), residents, { key: 'c', workers: ['w0'], cost: 1 });
    expect(plan).toEqual({
      fits: false,
      reason:
        "the model memory budget of 2 models per worker is full on worker w0 (2 models held by 2 models: 1 busy with requests or loading, 1 pinned by the repository API) and 'c' needs 1 model; nothing idle can be evicted",
    });
  });

  it('refuses a model larger than the whole budget without evicting anything', () => {
    const plan = planEviction({ unit: 'bytes', limit: MIB }, [resident('a', 1, { cost: 1000 })], { key: 'big', workers: ['w0'], cost: 2 * MIB });
    expect(plan).toEqual({ fits: false, reason: "'big' needs 2 MiB, more than the whole budget of 1 MiB per worker" });
  });
});

describe('retryDelayMs', () => {
  it('starts at 1 s and doubles to at most 30 s', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 50].map(retryDelayMs)).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  });
});
