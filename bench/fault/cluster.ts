import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ChildServer, GATEWAY_CLI, removeAtExit, startChildServer } from '../load/child-server.js';

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

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const a = server.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.once('error', (e) => reject(new Error(`cannot start redis-server (install Debian's redis-server package): ${e.message}`)));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
  });
}

export async function startCluster(o: { workers: number; gateways: number; ttlSecs: number; model: string }): Promise<Cluster> {
  const repository = mkdtempSync(join(tmpdir(), 'fabriek-fault-'));
  const forget = removeAtExit(repository);
  cpSync(join(EXAMPLES, o.model), join(repository, o.model), { recursive: true });
  const redisPort = await freePort();
  const redis = await startRedis(redisPort);
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
