import { once } from 'node:events';
import { type AddressInfo } from 'node:net';
import {
  type ClientHttp2Session,
  type Http2Server,
  type ServerHttp2Session,
  type ServerHttp2Stream,
  connect,
  createServer,
} from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import { StreamTable, homeSlot, useStreamTable } from '../../gateway/grpc/session-streams.js';

/** A small deterministic generator (mulberry32), so a failure replays. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function expectSame(table: StreamTable<string>, map: Map<number, string>, probe: readonly number[]): void {
  expect(table.size).toBe(map.size);
  for (const id of probe) expect(table.get(id)).toBe(map.get(id));
  expect(new Map(table.entries())).toEqual(map);
}

describe('StreamTable', () => {
  // Multiplier 1 puts every small id at slot 0 (the top bits of a small number
  // are zero); −1 puts them at the last slot, so their runs wrap around to slot 0.
  for (const [name, multiplier] of [['the process multiplier', undefined], ['every id colliding (1)', 1], ['every run wrapping around (−1)', -1]] as const) {
    it(`agrees with a Map over rising stream ids, through collisions, wrap-around and growth: ${name}`, () => {
      const next = random(12);
      const table = new StreamTable<string>(8, multiplier);
      const map = new Map<number, string>();
      // Rising odd ids as a session sees them, some streams long-lived.
      let id = 1;
      const probe: number[] = [];
      for (let step = 0; step < 20_000; step++) {
        const r = next();
        if (r < 0.5 || map.size === 0) {
          table.set(id, `s${id}`);
          map.set(id, `s${id}`);
          probe.push(id);
          id += next() < 0.3 ? 128 : 2;
        } else {
          const live = [...map.keys()];
          // Mostly the oldest (calls end in about the order they came), sometimes any.
          const victim = r < 0.9 ? live[0]! : live[Math.floor(next() * live.length)]!;
          expect(table.delete(victim)).toBe(true);
          map.delete(victim);
          expect(table.delete(victim)).toBe(false);
          expect(table.has(victim)).toBe(false);
        }
        if (step % 1000 === 0) expectSame(table, map, probe.slice(-300));
      }
      expectSame(table, map, probe);
      table.clear();
      expect(table.size).toBe(0);
      expect(table.get(1)).toBeUndefined();
    });
  }

  it('deletes from the middle of a run of collisions, and of one that wraps around, and still finds the entries after it', () => {
    for (const multiplier of [1, -1]) {
      const table = new StreamTable<string>(8, multiplier); // 8 slots, every id below 2^29 starts at the same one
      for (const id of [1, 9, 17, 25, 3]) table.set(id, `s${id}`);
      table.delete(9);
      expect([table.get(1), table.get(9), table.get(17), table.get(25), table.get(3)]).toEqual(['s1', undefined, 's17', 's25', 's3']);
      table.delete(1);
      table.delete(25);
      expect([table.get(17), table.get(3), table.size]).toEqual(['s17', 's3', 2]);
    }
  });

  it('spreads ids a power of two apart over the slots (the client picks the ids)', () => {
    // With the id's low bits as its slot, 1024 ids 65,536 apart all started at one slot,
    // and each stream added or removed probed past every other.
    const ids = Array.from({ length: 1024 }, (_, k) => 1 + k * 65_536);
    const next = random(7);
    for (let trial = 0; trial < 5; trial++) {
      const multiplier = (Math.floor(next() * 0x40000000) * 2 + 1) | 0;
      const homes = new Set(ids.map((id) => homeSlot(id, multiplier, 32 - 11)));
      expect(homes.size).toBeGreaterThan(600); // of 2048 slots; at random about 800
    }
    const table = new StreamTable<number>();
    for (const id of ids) table.set(id, id);
    for (const id of ids) expect(table.get(id)).toBe(id);
    for (const id of ids) table.delete(id);
    expect(table.size).toBe(0);
  });

  it('refuses an even multiplier, which would map ids onto half the slots', () => {
    expect(() => new StreamTable<string>(8, 2)).toThrow(/multiplier must be odd/);
  });

  it('replaces the value of an id already there without counting it twice', () => {
    const table = new StreamTable<string>();
    table.set(5, 'a').set(5, 'b');
    expect([table.get(5), table.size]).toEqual(['b', 1]);
  });

  it('visits each stream once in forEach while the callback deletes streams, skipping those deleted before their turn', () => {
    // The order of the visits follows the hash: each visit closes its stream
    // and, if still open, the next one (destroying one stream can close
    // another). The multiplier is fixed here: with the per-process random one,
    // about 2 % of multipliers visit every id after the one above it, and no
    // stream was ever closed before its turn (CI failed so once).
    const table = new StreamTable<string>(8, 0x9e3779b1 | 0);
    for (let id = 1; id <= 41; id += 2) table.set(id, `s${id}`);
    const seen: number[] = [];
    const closedEarly = new Set<number>();
    table.forEach((value, id) => {
      expect(closedEarly.has(id)).toBe(false);
      expect(seen).not.toContain(id);
      seen.push(id);
      expect(value).toBe(`s${id}`);
      table.delete(id);
      if (table.delete(id + 2)) closedEarly.add(id + 2);
    });
    expect(closedEarly.size).toBeGreaterThan(0);
    expect(seen.length + closedEarly.size).toBe(21);
    expect(table.size).toBe(0);
  });

  it('refuses what cannot be an HTTP/2 stream id', () => {
    const table = new StreamTable<string>();
    for (const bad of [0, -1, 1.5, 2 ** 31, Number.NaN]) expect(() => table.set(bad, 'x')).toThrow(/not an HTTP\/2 stream id/);
    expect(table.get(0)).toBeUndefined();
    expect(table.delete(0)).toBe(false);
  });
});

describe('useStreamTable on a real HTTP/2 session', () => {
  let server: Http2Server | undefined;
  let client: ClientHttp2Session | undefined;

  afterEach(async () => {
    client?.destroy();
    if (server) await new Promise((resolve) => server!.close(resolve));
    server = client = undefined;
  });

  /** A server whose sessions keep their streams in a StreamTable; `onStream` answers (or holds) each stream. */
  async function start(onStream: (stream: ServerHttp2Stream) => void): Promise<{ sessions: ServerHttp2Session[]; swapped: boolean[] }> {
    const sessions: ServerHttp2Session[] = [];
    const swapped: boolean[] = [];
    server = createServer();
    server.on('session', (session: ServerHttp2Session) => {
      sessions.push(session);
      swapped.push(useStreamTable(session));
    });
    server.on('stream', onStream);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    client = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    await once(client, 'connect');
    return { sessions, swapped };
  }

  const streamsOf = (session: ServerHttp2Session): StreamTable<ServerHttp2Stream> => {
    const fields = session as unknown as Record<symbol, { streams?: StreamTable<ServerHttp2Stream> } | undefined>;
    const key = Object.getOwnPropertySymbols(session).find((k) => k.description === 'state' && fields[k]?.streams !== undefined)!;
    return fields[key]!.streams!;
  };

  function request(body: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = client!.request({ ':method': 'POST', ':path': '/echo' });
      let answer = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (answer += chunk));
      req.on('end', () => resolve(answer));
      req.on('error', reject);
      req.end(body);
    });
  }

  it('serves many concurrent streams through the table and leaves it empty', async () => {
    const { sessions, swapped } = await start((stream) => {
      let body = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => (body += chunk));
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(`echo ${body}`);
      });
    });
    const answers = await Promise.all(Array.from({ length: 300 }, (_, i) => request(`${i}`)));
    expect(answers).toEqual(Array.from({ length: 300 }, (_, i) => `echo ${i}`));
    expect(swapped).toEqual([true]);
    const table = streamsOf(sessions[0]!);
    expect(table).toBeInstanceOf(StreamTable);
    await new Promise((resolve) => setImmediate(resolve));
    expect(table.size).toBe(0);
  });

  it('closes the streams still open when the session is destroyed (Node walks the table with forEach)', async () => {
    const held: ServerHttp2Stream[] = [];
    const { sessions } = await start((stream) => held.push(stream));
    const pending = Array.from({ length: 5 }, (_, i) => request(`${i}`).catch((error: Error) => error));
    while (held.length < 5) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(streamsOf(sessions[0]!).size).toBe(5);
    const closed = held.map((stream) => once(stream, 'close'));
    sessions[0]!.destroy();
    await Promise.all(closed);
    expect(held.every((stream) => stream.destroyed)).toBe(true);
    expect(streamsOf(sessions[0]!).size).toBe(0);
    await Promise.all(pending);
  });

  it('lets a closing session finish its open streams first (Node reads the table size)', async () => {
    const held: ServerHttp2Stream[] = [];
    const { sessions } = await start((stream) => held.push(stream));
    const answer = request('late');
    while (held.length < 1) await new Promise((resolve) => setTimeout(resolve, 5));
    const sessionClosed = once(sessions[0]!, 'close');
    sessions[0]!.close();
    expect(sessions[0]!.destroyed).toBe(false);
    held[0]!.respond({ ':status': 200 });
    held[0]!.end('answered after close()');
    expect(await answer).toBe('answered after close()');
    await sessionClosed;
  });

  it('leaves a session alone whose streams are not where Node 20 keeps them, or that already has streams', () => {
    expect(useStreamTable({} as ServerHttp2Session)).toBe(false);
    const open = new Map([[1, 'a stream']]);
    const busy = { [Symbol('state')]: { streams: open } };
    expect(useStreamTable(busy as unknown as ServerHttp2Session)).toBe(false);
    expect((busy as Record<symbol, { streams: unknown }>)[Object.getOwnPropertySymbols(busy)[0]!]!.streams).toBe(open);
    const fresh = { [Symbol('state')]: { streams: new Map() } };
    expect(useStreamTable(fresh as unknown as ServerHttp2Session)).toBe(true);
    expect((fresh as Record<symbol, { streams: unknown }>)[Object.getOwnPropertySymbols(fresh)[0]!]!.streams).toBeInstanceOf(StreamTable);
  });
});
