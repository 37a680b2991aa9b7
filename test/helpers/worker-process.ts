import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WorkerConnection } from '../../gateway/scheduling/worker-connection.js';
import {
  type ExecuteRequest,
  type ExecuteResponse,
  type LoadModelRequest,
  type LoadModelResponse,
  type StatusResponse,
} from '../../proto/gen/worker.js';
import { isWorkerReadyMessage, type WorkerReadyMessage } from '../../worker/ready-message.js';
import { reapAtExit } from './reap.js';

// Spawns the real worker process (dist/worker/main.js, built by `npm test`)
// with an IPC channel, as the gateway does, and talks to it over a unix socket
// with the gateway's own client (WorkerConnection).

export const WORKER_MAIN = fileURLToPath(new URL('../../dist/worker/main.js', import.meta.url));

export interface WorkerProcess {
  readonly child: ChildProcess;
  /** The `ready` message the worker sent over IPC. */
  readonly ready: WorkerReadyMessage;
  readonly client: WorkerConnection;
  load(request: Partial<LoadModelRequest> & { modelKey: string }): Promise<LoadModelResponse>;
  execute(request: Partial<ExecuteRequest> & { modelKey: string }): Promise<ExecuteResponse>;
  unload(modelKey: string): Promise<void>;
  status(): Promise<StatusResponse>;
  /** Resolves with the exit code once the process has exited. */
  readonly exited: Promise<number | null>;
  stderr(): string;
  /** Sends `signal` (default SIGTERM) and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startWorker(extraArgs: readonly string[] = [], timeoutMs = 30_000): Promise<WorkerProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'fabriek-worker-'));
  const listen = `unix:${join(dir, 'worker.sock')}`;
  const child = spawn(process.execPath, [WORKER_MAIN, '--listen', listen, ...extraArgs], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  reapAtExit(child);
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      rmSync(dir, { recursive: true, force: true });
      resolve(code);
    }),
  );
  const ready = await new Promise<WorkerReadyMessage>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker not ready in ${timeoutMs} ms; stderr:\n${err}`)), timeoutMs);
    child.on('message', (message: unknown) => {
      if (!isWorkerReadyMessage(message)) return;
      clearTimeout(timer);
      resolve(message);
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code} before ready; stderr:\n${err}`));
    });
  });
  const client = new WorkerConnection({ id: 'test', address: ready.address, deviceKind: 'cpu', deviceId: 0 }, { maxMessageBytes: 256 * 1024 * 1024 });
  return {
    child,
    ready,
    client,
    exited,
    load: (request) =>
      client.loadModel({
        modelPath: '',
        modelBytes: Buffer.alloc(0),
        instanceCount: 1,
        deviceKind: 'cpu',
        deviceId: 0,
        sessionOptions: undefined,
        maxBatchSize: 0,
        ...request,
      }),
    execute: (request) => client.execute({ inputs: [], outputs: [], ...request }, Infinity),
    unload: (modelKey) => client.unloadModel(modelKey),
    status: () => client.status(),
    stderr: () => err,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      client.close();
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
