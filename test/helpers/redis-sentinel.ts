import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../../bench/fault/redis-process.js';
import { waitFor } from './processes.js';
import { ephemeralArgs, type RedisProcess, spawnRedisProcess } from './redis-processes.js';

// A master, one replica and three sentinels (Debian's redis-sentinel), each
// a real process on its own loopback port: what a failover test needs.

export const MASTER_NAME = 'fabriek';

export interface SentinelGroup {
  /** redis-sentinel://127.0.0.1:S1,…/fabriek */
  readonly url: string;
  readonly sentinelPorts: readonly number[];
  /** Port of the node each data process listens on; index 0 starts as master. */
  readonly dataPorts: readonly number[];
  readonly data: readonly RedisProcess[];
  /** The master's port as the sentinels say now. */
  masterPort(): Promise<number>;
  /** A client on a data node (for assertions). */
  client(port: number): Redis;
  close(): Promise<void>;
}

export async function startSentinelGroup(downAfterMs = 1_000): Promise<SentinelGroup> {
  const dir = mkdtempSync(join(tmpdir(), 'fabriek-sentinel-'));
  const clients: Redis[] = [];
  const processes: RedisProcess[] = [];
  const client = (port: number): Redis => {
    const c = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, lazyConnect: false });
    c.on('error', () => {});
    clients.push(c);
    return c;
  };
  try {
    const [masterPort, replicaPort, ...sentinelPorts] = await Promise.all([0, 1, 2, 3, 4].map(() => freePort())) as [number, number, ...number[]];
    const node = async (port: number, extra: string[]): Promise<RedisProcess> => {
      const nodeDir = join(dir, String(port));
      mkdirSync(nodeDir);
      const p = await spawnRedisProcess('redis-server', ['--port', String(port), ...ephemeralArgs(nodeDir), ...extra], /Ready to accept connections/);
      processes.push(p);
      return p;
    };
    const master = await node(masterPort, []);
    const replica = await node(replicaPort, ['--replicaof', '127.0.0.1', String(masterPort)]);
    const replicaClient = client(replicaPort);
    await waitFor(async () => /master_link_status:up/.test(await replicaClient.info('replication')), 10_000, 'the replica to sync');
    for (const port of sentinelPorts) {
      const conf = join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterPort} 2`,
          `sentinel down-after-milliseconds ${MASTER_NAME} ${downAfterMs}`,
          `sentinel failover-timeout ${MASTER_NAME} 10000`,
          `sentinel parallel-syncs ${MASTER_NAME} 1`,
          '',
        ].join('\n'),
      );
      processes.push(await spawnRedisProcess('redis-sentinel', [conf], /\+monitor master/));
    }
    // Failover needs every sentinel to know the replica and a quorum of the others.
    for (const port of sentinelPorts) {
      const s = client(port);
      await waitFor(
        async () => {
          const replicas = (await s.call('SENTINEL', 'REPLICAS', MASTER_NAME)) as unknown[];
          const others = (await s.call('SENTINEL', 'SENTINELS', MASTER_NAME)) as unknown[];
          return replicas.length === 1 && others.length === sentinelPorts.length - 1;
        },
        20_000,
        `sentinel ${port} to know the replica and the other sentinels`,
      );
    }
    const first = client(sentinelPorts[0] as number);
    return {
      url: `redis-sentinel://${sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')}/${MASTER_NAME}`,
      sentinelPorts,
      dataPorts: [masterPort, replicaPort],
      data: [master, replica],
      masterPort: async () => {
        const addr = (await first.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [string, string];
        return Number(addr[1]);
      },
      client,
      close: async () => {
        for (const c of clients) c.disconnect();
        await Promise.all(processes.map((p) => p.stop('SIGKILL')));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    for (const c of clients) c.disconnect();
    await Promise.all(processes.map((p) => p.stop('SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
