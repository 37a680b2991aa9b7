import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { freePort } from '../../bench/fault/redis-process.js';
import { waitFor } from './processes.js';
import { ephemeralArgs, type RedisProcess, spawnRedisProcess } from './redis-processes.js';

// A Redis Cluster of `masters` real redis-server processes on loopback
// ports, joined with `redis-cli --cluster create` (no replicas).

const run = promisify(execFile);

export interface RedisClusterProcesses {
  /** redis-cluster://127.0.0.1:P1,… */
  readonly url: string;
  readonly ports: readonly number[];
  /** A cluster client for assertions. */
  client(): Cluster;
  close(): Promise<void>;
}

export async function startRedisCluster(masters = 3): Promise<RedisClusterProcesses> {
  const dir = mkdtempSync(join(tmpdir(), 'fabriek-cluster-'));
  const processes: RedisProcess[] = [];
  const clients: (Redis | Cluster)[] = [];
  const close = async (): Promise<void> => {
    for (const c of clients) c.disconnect();
    await Promise.all(processes.map((p) => p.stop('SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ports = await Promise.all(Array.from({ length: masters }, () => freePort()));
    for (const port of ports) {
      const nodeDir = join(dir, String(port));
      mkdirSync(nodeDir);
      processes.push(
        await spawnRedisProcess(
          'redis-server',
          ['--port', String(port), '--cluster-enabled', 'yes', '--cluster-config-file', join(nodeDir, 'nodes.conf'), '--cluster-node-timeout', '2000', ...ephemeralArgs(nodeDir)],
          /Ready to accept connections/,
        ),
      );
    }
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
    for (const port of ports) {
      const node = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      node.on('error', () => {});
      clients.push(node);
      await waitFor(async () => /cluster_state:ok/.test(String(await node.call('CLUSTER', 'INFO'))), 20_000, `node ${port} to see the cluster ok`);
    }
    return {
      url: `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
      ports,
      client: () => {
        const c = new Cluster(ports.map((port) => ({ host: '127.0.0.1', port })));
        c.on('error', () => {});
        clients.push(c);
        return c;
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
