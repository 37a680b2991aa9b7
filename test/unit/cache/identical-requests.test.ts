import { describe, expect, it } from 'vitest';
import { type Tensor } from '../../../core/tensor.js';
import { LocalLru } from '../../../gateway/cache/local-lru.js';
import { ResponseCache } from '../../../gateway/cache/response-cache.js';
import { ModelConfig } from '../../../proto/gen/model_config.js';

// Identical requests that miss the response cache together: the first
// computes the answer, the others wait for it instead of computing it again.

const config = ModelConfig.fromPartial({ name: 'm', responseCache: { enable: true } });
const x: Tensor = { name: 'X', datatype: 'FP32', shape: [1, 2], data: new Uint8Array(new Float32Array([1, 2]).buffer) };
const y: Tensor = { name: 'Y', datatype: 'FP32', shape: [1, 2], data: new Uint8Array(new Float32Array([3, 4]).buffer) };
const stats = { cacheMiss: () => undefined };

function lookups(n: number, inputs: readonly Tensor[] = [x]) {
  const cache = new ResponseCache(new LocalLru(1 << 20, 1 << 20));
  return { cache, all: Array.from({ length: n }, () => cache.lookupFor('m', 1, config, { inputs, outputs: [] }, 'default')!) };
}

describe('identical requests that miss together', () => {
  it('the first computes; the others get its answer when it puts it', async () => {
    const { all } = lookups(3);
    const [lead, a, b] = all;
    expect(lead?.joinOrLead()).toBeUndefined();
    const waiting = [a?.joinOrLead(), b?.joinOrLead()];
    expect(waiting.every((w) => w instanceof Promise)).toBe(true);
    lead?.put([y], stats);
    expect(await Promise.all(waiting)).toEqual([[y], [y]]);
  });

  it('when the first fails, the others learn it (undefined) and compute their own; the next one leads afresh', async () => {
    const { cache, all } = lookups(2);
    const [lead, a] = all;
    lead?.joinOrLead();
    const waiting = a?.joinOrLead();
    lead?.abandon();
    expect(await waiting).toBeUndefined();
    const next = cache.lookupFor('m', 1, config, { inputs: [x], outputs: [] }, 'default');
    expect(next?.joinOrLead()).toBeUndefined();
  });

  it('another input, or another tenant, is not the same request', () => {
    const { cache, all } = lookups(1);
    all[0]?.joinOrLead();
    expect(cache.lookupFor('m', 1, config, { inputs: [y], outputs: [] }, 'default')?.joinOrLead()).toBeUndefined();
    expect(cache.lookupFor('m', 1, config, { inputs: [x], outputs: [] }, 'other')?.joinOrLead()).toBeUndefined();
  });

  it('answer(): kept, or computed meanwhile, or this one computes; its own abort ends the wait', async () => {
    const { all } = lookups(4);
    const [lead, waiter, leaver, later] = all;
    expect(await lead?.answer(new AbortController().signal, () => new Error('ended'))).toBeUndefined();
    const waiting = waiter?.answer(new AbortController().signal, () => new Error('ended'));
    const abort = new AbortController();
    const leaving = leaver?.answer(abort.signal, () => new Error('the caller left'));
    await new Promise((r) => setImmediate(r));
    abort.abort();
    await expect(leaving).rejects.toThrow('the caller left');
    lead?.put([y], stats);
    expect(await waiting).toEqual({ outputs: [y], coalesced: true });
    // The store has it now: the next identical request is a plain hit.
    expect(await later?.answer(new AbortController().signal, () => new Error('ended'))).toEqual({ outputs: [y], coalesced: false });
  });

  it('a put or abandon by a request that did not lead changes nothing', async () => {
    const { all } = lookups(3);
    const [lead, a, b] = all;
    lead?.joinOrLead();
    const waiting = a?.joinOrLead();
    b?.abandon();
    b?.put([x], stats);
    let settled = false;
    void waiting?.then(() => (settled = true));
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    lead?.put([y], stats);
    expect(await waiting).toEqual([y]);
  });
});
