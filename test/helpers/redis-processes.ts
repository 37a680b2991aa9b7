import { type ChildProcess, spawn } from 'node:child_process';
import { reapAtExit } from './reap.js';

// Real redis-server / redis-sentinel processes with arbitrary arguments (TLS,
// passwords, replicas, sentinels, cluster nodes), for the tests that need
// more than test/helpers/redis-server.ts's plain server.

export interface RedisProcess {
  readonly child: ChildProcess;
  /** Everything it wrote so far. */
  output(): string;
  /** Sends `signal` and waits for the exit (at once if it already exited). */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `binary ARGS…` and resolves once its output matches `ready` (10 s at most). */
export function spawnRedisProcess(binary: 'redis-server' | 'redis-sentinel', args: readonly string[], ready: RegExp, timeoutMs = 10_000): Promise<RedisProcess> {
  const child = spawn(binary, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  reapAtExit(child);
  let out = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const process: RedisProcess = {
    child,
    output: () => out,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${binary} not ready in ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (ready.test(out)) {
        clearTimeout(timer);
        resolve(process);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${binary} (npm test installs it: .ci/ensure-redis-server): ${error.message}`));
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${binary} exited with ${child.exitCode ?? child.signalCode}:\n${out}`));
    });
  });
}

/** Arguments every throwaway server gets: loopback only, no persistence, its own directory. */
export function ephemeralArgs(dir: string): string[] {
  return ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
}
