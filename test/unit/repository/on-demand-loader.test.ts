import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { resourceExhausted, type ServingError } from '../../../core/errors.js';
import { type ModelVersion } from '../../../gateway/repository/model-version.js';
import { type MemoryBudget } from '../../../gateway/repository/memory-budget.js';
import { OnDemandLoader, type Release } from '../../../gateway/repository/on-demand-loader.js';

// The loader's state machine against a fake manager: loads finish when the
// test says, so coalescing, waits that end early, eviction order and the
// back-off are checked without a worker.

function version(name: string): ModelVersion {
  return { name, version: 1, key: `${name}/1`, modelPath: `/nonexistent/${name}.onnx`, state: 'UNAVAILABLE', reason: 'not loaded', serving: undefined };
}

class FakeHost {
  readonly loads: string[] = [];
  readonly evictions: string[] = [];
  readonly failing = new Set<string>();
  #gates = new Map<string, () => void>();
  readonly #finished = new Set<string>();
  /** When true, each load waits for `finish(name)`. */
  manual = false;

  placement(): readonly string[] {
    return ['w0'];
  }

  async load(v: ModelVersion): Promise<void> {
    this.loads.push(v.name);
    v.state = 'LOADING';
    if (this.manual && !this.#finished.delete(v.name)) await new Promise<void>((resolve) => this.#gates.set(v.name, resolve));
    if (this.failing.has(v.name)) {
      v.state = 'UNAVAILABLE';
      v.reason = 'boom';
    } else {
      v.state = 'READY';
      v.reason = '';
    }
  }

  /** Ends `name`'s load; one not started yet (the loader may get to it a few turns later) ends as it starts. */
  finish(name: string): void {
    const gate = this.#gates.get(name);
    this.#gates.delete(name);
    if (gate) gate();
    else this.#finished.add(name);
  }

  async evict(v: ModelVersion): Promise<void> {
    this.evictions.push(v.name);
    v.state = 'UNAVAILABLE';
    v.reason = 'not loaded';
  }
}

function setup(budget: MemoryBudget = { unit: 'models', limit: 2 }) {
  const host = new FakeHost();
  let now = 1_000_000;
  const loader = new OnDemandLoader({ budget, host, log: pino({ level: 'silent' }), now: () => now });
  return { host, loader, advance: (ms: number) => (now += ms) };
}

const never = new AbortController().signal;

async function code(p: Release | Promise<Release>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (error) {
    return `${status[(error as ServingError).code]}: ${(error as Error).message}`;
  }
}

const flush = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

describe('OnDemandLoader', () => {
  it('loads once for concurrent first requests, then serves without waiting', async () => {
    const { host, loader } = setup();
    host.manual = true;
    const a = version('a');
    const waits = [1, 2, 3].map(() => loader.acquire(a, never, Infinity));
    await flush();
    host.finish('a');
    const releases = await Promise.all(waits);
    expect(host.loads).toEqual(['a']);
    releases.forEach((r) => r());
    // Loaded: held at once, no promise.
    expect(typeof loader.acquire(a, never, Infinity)).toBe('function');
  });

  it('lets a request whose deadline or cancel fires leave the wait; the load goes on for the others', async () => {
    const { host, loader } = setup();
    host.manual = true;
    const a = version('a');
    const cancel = new AbortController();
    const cancelled = code(loader.acquire(a, cancel.signal, Infinity));
    const expired = new AbortController();
    const late = code(loader.acquire(a, expired.signal, Date.now() - 1));
    const patient = loader.acquire(a, never, Infinity);
    await flush();
    cancel.abort();
    expired.abort();
    expect(await cancelled).toBe("CANCELLED: model 'a/1': request cancelled by the client while the model loaded on demand");
    expect(await late).toBe("DEADLINE_EXCEEDED: model 'a/1': deadline exceeded while the model loaded on demand");
    host.finish('a');
    expect(await code(patient)).toBe('OK');
    expect(host.loads).toEqual(['a']);
    expect(a.state).toBe('READY');
  });

  it('evicts the least recently used idle model when the budget is full', async () => {
    const { host, loader } = setup({ unit: 'models', limit: 2 });
    const [a, b, c] = [version('a'), version('b'), version('c')];
    (await loader.acquire(a, never, Infinity))();
    (await loader.acquire(b, never, Infinity))();
    (await loader.acquire(a, never, Infinity))(); // a is now the more recent
    (await loader.acquire(c, never, Infinity))();
    expect(host.evictions).toEqual(['b']);
    expect(loader.usage()).toEqual([{ worker: 'w0', bytes: 2 * 256 * 1024, models: 2, peakModels: 2, peakBytes: 2 * 256 * 1024 }]);
  });

  it('never evicts a model held by a request, and answers RESOURCE_EXHAUSTED when nothing is idle', async () => {
    const { host, loader } = setup({ unit: 'models', limit: 2 });
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(version) as [ModelVersion, ModelVersion, ModelVersion, ModelVersion];
    const holdA = await loader.acquire(a, never, Infinity);
    (await loader.acquire(b, never, Infinity))();
    const holdC = await loader.acquire(c, never, Infinity);
    expect(host.evictions).toEqual(['b']);
    expect(await code(loader.acquire(d, never, Infinity))).toBe(
      "RESOURCE_EXHAUSTED: cannot load model 'd/1' on demand: the model memory budget of 2 models per worker is full on worker w0 " +
        "(2 models held by 2 models: 2 busy with requests or loading, 0 pinned by the repository API) and 'd/1' needs 1 model; nothing idle can be evicted",
    );
    holdA();
    expect(await code(loader.acquire(d, never, Infinity))).toBe('OK');
    expect(host.evictions).toEqual(['b', 'a']);
    holdC();
  });

  it('answers a failed load with its reason and retries only after the back-off', async () => {
    const { host, loader, advance } = setup();
    host.failing.add('bad');
    const bad = version('bad');
    expect(await code(loader.acquire(bad, never, Infinity))).toBe("UNAVAILABLE: cannot load model 'bad/1' on demand: boom (next attempt in 1 s at the earliest)");
    expect(await code(loader.acquire(bad, never, Infinity))).toBe("UNAVAILABLE: cannot load model 'bad/1' on demand: boom (next attempt in 1 s)");
    expect(host.loads).toEqual(['bad']);
    advance(1_001);
    expect(await code(loader.acquire(bad, never, Infinity))).toMatch(/next attempt in 2 s at the earliest/);
    expect(host.loads).toEqual(['bad', 'bad']);
    host.failing.delete('bad');
    advance(2_001);
    expect(await code(loader.acquire(bad, never, Infinity))).toBe('OK');
  });

  it('loads again a model that went away without the loader (e.g. its load was lost with a worker)', async () => {
    const { host, loader } = setup();
    const a = version('a');
    (await loader.acquire(a, never, Infinity))();
    a.state = 'UNAVAILABLE';
    expect(await code(loader.acquire(a, never, Infinity))).toBe('OK');
    expect(host.loads).toEqual(['a', 'a']);
  });

  it('keeps what the repository API loaded (pinned) and counts it in the budget', async () => {
    const { host, loader } = setup({ unit: 'models', limit: 2 });
    const p = version('p');
    p.state = 'READY';
    await loader.pin('p', [p]);
    const [a, b] = [version('a'), version('b')];
    (await loader.acquire(a, never, Infinity))();
    (await loader.acquire(b, never, Infinity))();
    expect(host.evictions).toEqual(['a']);
    loader.forget('p');
    expect(loader.usage()[0]?.models).toBe(1);
  });
});

describe('OnDemandLoader with a coordinator (several gateway processes: the primary plans the budget)', () => {
  class FakeCoordinator {
    readonly asked: string[] = [];
    readonly settled: string[] = [];
    readonly #waiting = new Map<string, { granted: () => void; resolve: () => void; reject: (e: Error) => void }>();

    readonly #askWaits: { n: number; resolve: () => void }[] = [];

    reserve(need: { key: string }, granted: () => void): Promise<void> {
      this.asked.push(need.key);
      for (const w of this.#askWaits) if (this.asked.length >= w.n) w.resolve();
      return new Promise((resolve, reject) => this.#waiting.set(need.key, { granted, resolve, reject }));
    }

    /**
     * Until `n` asks have come. A load stats its file first, on libuv's
     * thread pool: on a busy machine that took longer than 200 event-loop
     * turns, the test granted or refused an ask not made yet, and its
     * requests then waited forever.
     */
    async asks(n: number): Promise<void> {
      if (this.asked.length >= n) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#askWaits.push({ n, resolve })),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${this.asked.length} of ${n} asks came within 10 s`)), 10_000);
        }),
      ]).finally(() => clearTimeout(timer));
    }

    grant(key: string): void {
      const w = this.#waiting.get(key);
      this.#waiting.delete(key);
      w?.granted();
      w?.resolve();
    }

    refuse(key: string, error: Error): void {
      const w = this.#waiting.get(key);
      this.#waiting.delete(key);
      w?.reject(error);
    }

    settle(key: string): void {
      this.settled.push(key);
    }
  }

  function coordinated() {
    const host = new FakeHost();
    const coordinator = new FakeCoordinator();
    const loader = new OnDemandLoader({
      budget: { unit: 'models', limit: 1 },
      host,
      log: pino({ level: 'silent' }),
      coordinator: { reserve: (need, granted) => coordinator.reserve(need, granted), settled: (key) => coordinator.settle(key) },
    });
    return { host, coordinator, loader };
  }

  it('asks once for concurrent first requests, reports the model only once granted, and settles after the load', async () => {
    const { host, coordinator, loader } = coordinated();
    const a = version('a');
    const waits = [loader.acquire(a, never, Infinity), loader.acquire(a, never, Infinity)];
    await coordinator.asks(1);
    await flush();
    expect(coordinator.asked).toEqual(['a/1']);
    // Waiting for room, it holds nothing on a worker: not reported.
    expect(loader.report()).toEqual([]);
    coordinator.grant('a/1');
    // Granted: reported at once (busy while it loads), before any promise callback runs.
    expect(loader.report()).toMatchObject([{ key: 'a/1', busy: true }]);
    for (const r of await Promise.all(waits)) r();
    expect(host.loads).toEqual(['a']);
    expect(coordinator.settled).toEqual(['a/1']);
    expect(loader.report()).toMatchObject([{ key: 'a/1', busy: false, pinned: false }]);
  });

  it('never evicts on its own (the primary does), even past its budget', async () => {
    const { host, coordinator, loader } = coordinated();
    for (const name of ['a', 'b']) {
      const held = loader.acquire(version(name), never, Infinity);
      await coordinator.asks(name === 'a' ? 1 : 2);
      coordinator.grant(`${name}/1`);
      (await held)();
    }
    expect(host.evictions).toEqual([]);
    expect(loader.report().map((r) => r.key)).toEqual(['a/1', 'b/1']);
  });

  it('passes a refusal to every waiting request and forgets the model', async () => {
    const { host, coordinator, loader } = coordinated();
    const a = version('a');
    const waits = [code(loader.acquire(a, never, Infinity))];
    await coordinator.asks(1);
    // The second request joins the wait once its file's size is known (cached now, a few microtasks): refused
    // before it joined, it would ask again, as the last lines check.
    waits.push(code(loader.acquire(a, never, Infinity)));
    await flush();
    coordinator.refuse('a/1', resourceExhausted("cannot load model 'a/1' on demand: full"));
    expect(await Promise.all(waits)).toEqual(Array(2).fill("RESOURCE_EXHAUSTED: cannot load model 'a/1' on demand: full"));
    expect(host.loads).toEqual([]);
    expect(loader.report()).toEqual([]);
    // No back-off for a refusal: the next request asks again.
    void loader.acquire(a, never, Infinity);
    await coordinator.asks(2);
    expect(coordinator.asked).toEqual(['a/1', 'a/1']);
  });

  it('evicts when the primary asks, only what is idle here', async () => {
    const { host, coordinator, loader } = coordinated();
    const held = loader.acquire(version('a'), never, Infinity);
    await coordinator.asks(1);
    coordinator.grant('a/1');
    const release = await held;
    expect(await loader.evictIfIdle('a/1')).toBe(false);
    release();
    expect(await loader.evictIfIdle('a/1')).toBe(true);
    expect(host.evictions).toEqual(['a']);
    expect(loader.report()).toEqual([]);
    expect(await loader.evictIfIdle('never-loaded/1')).toBe(true);
  });
});
