import { type ChildProcess } from 'node:child_process';
import { spawnReadyCli } from './gateway-process.js';

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
  const { child, readyLine, exited, stderr } = await spawnReadyCli(
    ['worker', '--registry', registry, '--model-repository', repository, '--listen', '127.0.0.1:0', '--worker-id', id, ...extraArgs],
    `worker ${id}`,
    timeoutMs,
  );
  return {
    id,
    child,
    readyLine,
    exited,
    stderr,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}
