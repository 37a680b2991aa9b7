import { type ChildProcess, spawn } from 'node:child_process';
import { CLI } from './gateway-process.js';

/** A real `fabriek worker --registry …` process. */
export interface RegisteredWorker {
  readonly id: string;
  readonly child: ChildProcess;
  readonly readyLine: string;
  readonly exited: Promise<number | null>;
  stderr(): string;
  /** Sends `signal` (default SIGTERM) and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startRegisteredWorker(
  id: string,
  registry: string,
  repository: string,
  extraArgs: readonly string[] = [],
  timeoutMs = 60_000,
): Promise<RegisteredWorker> {
  const child = spawn(
    process.execPath,
    [CLI, 'worker', '--registry', registry, '--model-repository', repository, '--listen', '127.0.0.1:0', '--worker-id', id, ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const readyLine = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker ${id} not ready in ${timeoutMs} ms; stderr:\n${err}`)), timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes(' ready: '));
      if (line) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`worker ${id} exited with ${code} before ready; stderr:\n${err}`));
    });
  });
  return {
    id,
    child,
    readyLine,
    exited,
    stderr: () => err,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}
