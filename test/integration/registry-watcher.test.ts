import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type WorkerRecord } from '../../core/worker-record.js';
import { type RegistryListener, RegistryWatcher } from '../../gateway/registry/registry-watcher.js';
import { advertisedAddress } from '../../worker/main.js';
import { RegistryLease } from '../../worker/registry-lease.js';
import { waitFor } from '../helpers/processes.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';

// The lease (worker side) and the watcher (gateway side) against a real
// redis-server, in one process: what each event looks like, and that nothing
// is dropped while Redis is away.

const log = pino({ level: 'silent' });

function record(id: string, over: Partial<WorkerRecord> = {}): WorkerRecord {
  return {
    id,
    address: `127.0.0.1:${9000 + id.length}`,
    deviceKind: 'cpu',
    deviceId: 0,
    host: 'test',
    pid: 1,
    startedAt: 1,
    ttlMs: 600,
    draining: false,
    fabriekVersion: '0.0.0',
    models: [{ key: 'm/1', name: 'm', version: 1, instances: 2, executionProvider: 'cpu', inputs: [], outputs: [] }],
    ...over,
  };
}

class Events implements RegistryListener {
  readonly log: string[] = [];
  join(r: WorkerRecord): void {
    this.log.push(`join ${r.id}`);
  }
  update(r: WorkerRecord): void {
    this.log.push(`update ${r.id}${r.draining ? ' draining' : ''}`);
  }
  leave(id: string, reason: string): void {
    this.log.push(`leave ${id} (${reason})`);
  }
}

describe('registry lease and watcher', () => {
  let redis: RedisServer;
  const cleanup: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    while (cleanup.length > 0) await cleanup.pop()?.();
    await redis.client().flushall();
  });
  afterAll(async () => {
    await redis.close();
  });

  const watch = async (pollMs = 100, fullSyncMs?: number): Promise<{ events: Events; watcher: RegistryWatcher }> => {
    const events = new Events();
    const watcher = new RegistryWatcher({ url: redis.url, log, listener: events, pollMs, ...(fullSyncMs === undefined ? {} : { fullSyncMs }) });
    await watcher.start();
    cleanup.push(() => watcher.stop());
    return { events, watcher };
  };
  const lease = async (r: WorkerRecord): Promise<RegistryLease> => {
    const l = new RegistryLease(r, { url: redis.url, logger: log });
    await l.start();
    return l;
  };

  it('sees workers that registered before it started, and announces joins, drains and clean leaves', async () => {
    const a = await lease(record('a'));
    const { events, watcher } = await watch(5_000); // a long poll: only events can be this quick
    expect(events.log).toEqual(['join a']);
    const b = await lease(record('bb'));
    await waitFor(() => events.log.includes('join bb'), 2_000, 'join event');
    await b.drain();
    await waitFor(() => events.log.includes('update bb draining'), 2_000, 'drain event');
    await b.stop();
    await waitFor(() => events.log.includes('leave bb (deregistered)'), 2_000, 'leave event');
    expect(watcher.workers().map((w) => w.id)).toEqual(['a']);
    await a.stop();
  });

  it('drops a worker whose lease expired (it died without deregistering)', async () => {
    const client = redis.client();
    await client.set('fabriek:worker:dead', JSON.stringify(record('dead')), 'PX', 300);
    const { events } = await watch(100);
    expect(events.log).toEqual(['join dead']);
    await waitFor(() => events.log.includes('leave dead (lease expired)'), 3_000, 'expiry');
  });

  it('keeps known workers while Redis is down and after it restarts empty, until they re-register', async () => {
    const a = await lease(record('a', { ttlMs: 900 }));
    cleanup.push(() => a.stop());
    const { events, watcher } = await watch(100);
    await redis.stop();
    await new Promise((r) => setTimeout(r, 1_500)); // longer than the TTL
    expect(events.log).toEqual(['join a']);
    await redis.restart(); // empty: the lease must write the record again
    await waitFor(async () => (await redis.client().exists('fabriek:worker:a')) === 1, 3_000, 're-registration');
    await new Promise((r) => setTimeout(r, 1_200));
    expect(events.log).toEqual(['join a']);
    expect(watcher.workers().map((w) => w.id)).toEqual(['a']);
  });

  it('ignores records that do not parse, and a worker that restarts with a new address is a leave then a join', async () => {
    const client = redis.client();
    await client.set('fabriek:worker:junk', '{"id":"junk","address":5}', 'PX', 5_000);
    const { events } = await watch(100);
    expect(events.log).toEqual([]);
    const first = await lease(record('w', { address: '127.0.0.1:1', startedAt: 1 }));
    await waitFor(() => events.log.includes('join w'), 2_000, 'join');
    await first.stop();
    const second = await lease(record('w', { address: '127.0.0.1:2', startedAt: 2 }));
    cleanup.push(() => second.stop());
    await waitFor(() => events.log.filter((e) => e === 'join w').length === 2, 2_000, 'second join');
    expect(events.log).toEqual(['join w', 'leave w (deregistered)', 'join w']);
  });

  it('a heartbeat renews the lease without writing the record again; a record Redis lost is written again, as a join', async () => {
    const client = redis.client();
    const a = await lease(record('a', { ttlMs: 900 }));
    cleanup.push(() => a.stop());
    // Someone else's edit of the stored record survives the heartbeats: they only renew its TTL.
    const edited = JSON.stringify(record('a', { ttlMs: 900, host: 'edited' }));
    await client.set('fabriek:worker:a', edited, 'PX', 900);
    await new Promise((r) => setTimeout(r, 700));
    expect(await client.get('fabriek:worker:a')).toBe(edited);
    expect(await client.pttl('fabriek:worker:a')).toBeGreaterThan(300);
    const joins: string[] = [];
    const sub = redis.client();
    await sub.subscribe('fabriek:events');
    sub.on('message', (_c: string, m: string) => joins.push(m));
    await client.del('fabriek:worker:a');
    await waitFor(async () => (await client.exists('fabriek:worker:a')) === 1, 2_000, 'the record written again');
    expect(JSON.parse((await client.get('fabriek:worker:a')) ?? '{}')).toMatchObject({ id: 'a', host: 'test' });
    await waitFor(() => joins.some((m) => m.includes('"join"')), 2_000, 'a join event');
    sub.disconnect();
  });

  it('polls reading only records it does not know; reads every record again at the full sync', async () => {
    const client = redis.client();
    const a = await lease(record('a', { ttlMs: 5_000 }));
    cleanup.push(() => a.stop());
    const { events, watcher } = await watch(100, 1_500);
    expect(events.log).toEqual(['join a']);
    // A change without an event (one lost while the channel was down): the polls do not read it…
    await client.set('fabriek:worker:a', JSON.stringify(record('a', { ttlMs: 5_000, draining: true })), 'PX', 5_000);
    await new Promise((r) => setTimeout(r, 400));
    expect(events.log).toEqual(['join a']);
    // … the full sync does.
    await waitFor(() => events.log.includes('update a draining'), 3_000, 'the full sync');
    expect(watcher.workers()[0]?.draining).toBe(true);
  });

  it('advertises the listen host, or the hostname for a wildcard listen, or what it is told', () => {
    expect(advertisedAddress('127.0.0.1:0', undefined, 4242, 'node7')).toBe('127.0.0.1:4242');
    expect(advertisedAddress('0.0.0.0:8010', undefined, 8010, 'node7')).toBe('node7:8010');
    expect(advertisedAddress('0.0.0.0:0', 'gpu3.hpc:0', 5555, 'node7')).toBe('gpu3.hpc:5555');
    expect(advertisedAddress('0.0.0.0:8010', '10.0.0.7:8010', 8010, 'node7')).toBe('10.0.0.7:8010');
  });
});
