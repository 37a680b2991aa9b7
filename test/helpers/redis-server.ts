import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, spawnRedis } from '../../bench/fault/redis-process.js';

/** A real `redis-server` started by a test on a free port, without persistence. */
export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGKILL when `hard`), keeping its port for `restart`. */
  stop(hard?: boolean): Promise<void>;
  /** Starts it again on the same port (empty: nothing was persisted). */
  restart(): Promise<void>;
  /** A client for assertions; closed by `close`. */
  client(): Redis;
  /** Stops the server for good and removes its directory. */
  close(): Promise<void>;
}

async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  await exited;
}

export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'fabriek-redis-'));
  let child = await spawnRedis(port, dir);
  const clients: Redis[] = [];
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop: (hard = false) => kill(child, hard ? 'SIGKILL' : 'SIGTERM'),
    restart: async () => {
      await kill(child, 'SIGTERM');
      child = await spawnRedis(port, dir);
    },
    client: () => {
      const client = new Redis(port, '127.0.0.1', { lazyConnect: false, maxRetriesPerRequest: 1 });
      // Tests stop Redis on purpose; commands fail, the client reconnects.
      client.on('error', () => {});
      clients.push(client);
      return client;
    },
    close: async () => {
      for (const client of clients) client.disconnect();
      await kill(child, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
