import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ChildServer, GATEWAY_CLI, removeAtExit, startChildServer } from '../load/child-server.js';
import { freePort, spawnRedis } from './redis-process.js';

// A small distributed Fabriek on one machine for the fault benchmark: a
// redis-server, N `fabriek worker --registry` processes and M gateways with
// no local workers, all real processes on loopback ports.

const EXAMPLES = fileURLToPath(new URL('../../../models/examples', import.meta.url));

export interface Cluster {
  readonly redisUrl: string;
  readonly redisPort: number;
  readonly workers: Map<string, ChildServer>;
  readonly gateways: ChildServer[];
  close(): Promise<void>;
}

export async function startCluster(o: { workers: number; gateways: number; ttlSecs: number; model: string }): Promise<Cluster> {
  const repository = mkdtempSync(join(tmpdir(), 'fabriek-fault-'));
  const forget = removeAtExit(repository);
  cpSync(join(EXAMPLES, o.model), join(repository, o.model), { recursive: true });
  const redisPort = await freePort();
  const redis = await spawnRedis(redisPort);
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const workers = new Map<string, ChildServer>();
  await Promise.all(
    Array.from({ length: o.workers }, async (_, i) => {
      const id = `w${i + 1}`;
      const w = await startChildServer(
        GATEWAY_CLI,
        ['worker', '--registry', redisUrl, '--model-repository', repository, '--listen', '127.0.0.1:0', '--worker-id', id, '--registry-ttl-secs', String(o.ttlSecs), '--log-level', 'warn'],
        /ready: serving \d+ model versions on 127\.0\.0\.1:(\d+)/,
      );
      workers.set(id, w);
    }),
  );
  const gateways = await Promise.all(
    Array.from({ length: o.gateways }, () =>
      startChildServer(
        GATEWAY_CLI,
        ['serve', '--model-repository', repository, '--registry', redisUrl, '--workers', '0', '--grpc-address', '127.0.0.1', '--grpc-port', '0', '--allow-http', 'false', '--allow-metrics', 'false', '--log-level', 'warn'],
        / ready: gRPC on 127\.0\.0\.1:(\d+)/,
      ),
    ),
  );
  return {
    redisUrl,
    redisPort,
    workers,
    gateways,
    close: async () => {
      await Promise.all([...gateways, ...workers.values()].map((s) => s.stop(5_000)));
      redis.kill('SIGTERM');
      rmSync(repository, { recursive: true, force: true });
      forget();
    },
  };
}
