import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type ServingError } from '../../../core/errors.js';
import { type BudgetHolders, HostBudget } from '../../../gateway/cluster/host-budget.js';
import { type MemoryBudget } from '../../../gateway/repository/memory-budget.js';
import { type LoadRequest, type ResidentReport } from '../../../gateway/repository/on-demand-loader.js';

// The host's on-demand budget (several gateway processes) against fake
// processes: what each holds is a table the test sets, evictions are
// recorded, and a process may refuse one (busy meanwhile).

const need = (key: string): LoadRequest => ({ key, workers: ['w0'], cost: 1, bytes: 100 });
const held = (key: string, lastUsed: number, extra: Partial<ResidentReport> = {}): ResidentReport => ({ ...need(key), lastUsed, busy: false, pinned: false, ...extra });

class FakeHolders implements BudgetHolders {
  readonly held = new Map<number, ResidentReport[]>();
  readonly evictions: string[] = [];
  /** `holder:key` pairs refused once (busy there when asked). */
  readonly refuseOnce = new Set<string>();
  silent = false;
  asks = 0;

  async residents(): Promise<ReadonlyMap<number, readonly ResidentReport[]>> {
    this.asks++;
    if (this.silent) throw new Error('gateway process 1 did not say what it holds');
    return new Map([...this.held].map(([h, list]) => [h, [...list]]));
  }

  async evict(holder: number, key: string): Promise<boolean> {
    if (this.refuseOnce.delete(`${holder}:${key}`)) {
      // Busy there now: it reports so from here on.
      this.held.set(holder, (this.held.get(holder) ?? []).map((r) => (r.key === key ? { ...r, busy: true } : r)));
      return false;
    }
    this.evictions.push(`${holder}:${key}`);
    this.held.set(holder, (this.held.get(holder) ?? []).filter((r) => r.key !== key));
    return true;
  }
}

function setup(budget: MemoryBudget = { unit: 'models', limit: 2 }) {
  const holders = new FakeHolders();
  const host = new HostBudget({ budget, holders, log: pino({ level: 'silent' }), now: () => 5_000 });
  return { holders, host };
}

async function outcome(p: Promise<void>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (error) {
    return `${status[(error as ServingError).code] ?? 'Error'}: ${(error as Error).message}`;
  }
}

describe('HostBudget', () => {
  it('evicts the least recently used idle model of the host, from every process that holds it', async () => {
    const { holders, host } = setup();
    // a: used last at 10 in process 1 but at 40 in process 2, so b (20) is the least recently used.
    holders.held.set(1, [held('a/1', 10), held('b/1', 20)]);
    holders.held.set(2, [held('a/1', 40), held('b/1', 15)]);
    expect(await outcome(host.reserve(1, need('c/1')))).toBe('OK');
    expect(holders.evictions.sort()).toEqual(['1:b/1', '2:b/1']);
  });

  it('never evicts a model busy or pinned in any process', async () => {
    const { holders, host } = setup();
    holders.held.set(1, [held('a/1', 10), held('b/1', 20)]);
    holders.held.set(2, [held('a/1', 11, { busy: true }), held('b/1', 21, { pinned: true })]);
    const refused = await outcome(host.reserve(1, need('c/1')));
    expect(refused).toMatch(/^RESOURCE_EXHAUSTED: cannot load model 'c\/1' on demand: the model memory budget of 2 models per worker is full on worker w0 \(2 models held by 2 models: 1 busy with requests or loading, 1 pinned by the repository API\)/);
    expect(holders.evictions).toEqual([]);
  });

  it('grants a model another process holds without evicting anything (the worker shares its session)', async () => {
    const { holders, host } = setup();
    holders.held.set(2, [held('a/1', 10), held('b/1', 20)]);
    expect(await outcome(host.reserve(1, need('a/1')))).toBe('OK');
    expect(holders.evictions).toEqual([]);
  });

  it('plans again when a process refuses an eviction (busy meanwhile), and takes the next idle model', async () => {
    const { holders, host } = setup({ unit: 'models', limit: 3 });
    holders.held.set(1, [held('a/1', 10), held('b/1', 20), held('c/1', 30)]);
    holders.refuseOnce.add('1:a/1');
    expect(await outcome(host.reserve(2, need('d/1')))).toBe('OK');
    expect(holders.evictions).toEqual(['1:b/1']);
    expect(holders.asks).toBe(2);
  });

  it('counts a granted load as busy until its process settles it, and forgets it when the process is gone', async () => {
    const { holders, host } = setup();
    expect(await outcome(host.reserve(1, need('a/1')))).toBe('OK');
    expect(await outcome(host.reserve(2, need('b/1')))).toBe('OK');
    // Neither process reports them yet (their answers are on the way): both still count, and busy.
    expect(await outcome(host.reserve(2, need('c/1')))).toMatch(/^RESOURCE_EXHAUSTED: .*2 busy with requests or loading/);
    // Process 1 loaded a and reports it; then its load settles.
    holders.held.set(1, [held('a/1', 10)]);
    host.settled(1, 'a/1');
    expect(await outcome(host.reserve(2, need('c/1')))).toBe('OK');
    expect(holders.evictions).toEqual(['1:a/1']);
    // b was granted to 2 and c too; 2 exits before reporting them: its grants go.
    host.gone(2);
    expect(await outcome(host.reserve(1, need('d/1')))).toBe('OK');
  });

  it('plans one load at a time: a second sees the room the first took', async () => {
    const { holders, host } = setup();
    holders.held.set(1, [held('a/1', 10)]);
    const [first, second] = await Promise.all([outcome(host.reserve(1, need('b/1'))), outcome(host.reserve(2, need('c/1')))]);
    expect(first).toBe('OK');
    expect(second).toBe('OK');
    // b fitted beside a; c needed a's room (b, granted, is busy).
    expect(holders.evictions).toEqual(['1:a/1']);
  });

  it('fails the reserve when a process does not say what it holds (the primary words it UNAVAILABLE), and plans again at the next', async () => {
    const { holders, host } = setup();
    holders.silent = true;
    expect(await outcome(host.reserve(1, need('a/1')))).toMatch(/did not say what it holds/);
    holders.silent = false;
    expect(await outcome(host.reserve(1, need('a/1')))).toBe('OK');
  });

  it('reports what the host holds per worker, counting a model several processes hold once, and its peak', async () => {
    const { holders, host } = setup({ unit: 'bytes', limit: 1000 });
    holders.held.set(1, [held('a/1', 10), held('b/1', 20)]);
    holders.held.set(2, [held('a/1', 12)]);
    expect(await host.usage()).toEqual([{ worker: 'w0', bytes: 200, models: 2, peakModels: 2, peakBytes: 200 }]);
    holders.held.set(1, [held('a/1', 10)]);
    expect(await host.usage()).toEqual([{ worker: 'w0', bytes: 100, models: 1, peakModels: 2, peakBytes: 200 }]);
  });
});
