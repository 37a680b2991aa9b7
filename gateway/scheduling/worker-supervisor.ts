import { type ChildProcess, fork } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type Logger } from 'pino';
import { type LogLevel } from '../../core/log-levels.js';
import { MAX_EXECUTIONS_AHEAD_PER_INSTANCE } from '../../core/pipelining.js';
import { type WorkerLogLevelMessage } from '../../worker/log-level-message.js';
import { WorkerConnection } from './worker-connection.js';
import { type WorkerEndpoint, type WorkerLink } from './worker-link.js';
import { removeStaleWorkerSockets, workerSocketPath } from './worker-sockets.js';

const WORKER_ENTRY = fileURLToPath(new URL('../../worker/main.js', import.meta.url));

export interface LocalWorkerSpec {
  readonly id: string;
  readonly deviceKind: 'cpu' | 'gpu';
  readonly deviceId: number;
}

export interface SupervisorOptions {
  readonly maxMessageBytes: number;
  /** Liveness check of each worker's connection; an unresponsive worker is killed (SIGKILL) and restarted. 0 or absent = off. */
  readonly pingTimeoutMs?: number;
  readonly logLevel: string;
  readonly log: Logger;
  /** A worker is up (first start or restart) and reachable through `connection`. */
  readonly onUp: (connection: WorkerLink) => Promise<void>;
  /** A worker went away; its requests in flight fail on their own. */
  readonly onDown: (workerId: string, reason: string) => void;
  /** How long a worker may take to report ready. */
  readonly startTimeoutMs?: number;
  /** More worker arguments (e.g. --local-gateways N from the primary of several gateway processes). */
  readonly workerArgs?: readonly string[];
}

interface Running {
  child: ChildProcess;
  connection: WorkerConnection | undefined;
  startedAt: number;
  restarts: number;
}

interface ReadyMessage {
  type: 'ready';
  address: string;
}

function isReadyMessage(m: unknown): m is ReadyMessage {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'ready';
}

/** Back off on crash loops; a worker that ran a while (30 s) restarts at once. */
export function nextRestart(startedAt: number, restarts: number, now = Date.now()): { attempt: number; delay: number } {
  const attempt = now - startedAt > 30_000 ? 0 : restarts + 1;
  return { attempt, delay: attempt === 0 ? 0 : Math.min(5_000, 100 * 2 ** attempt) };
}

/** What a gateway needs of its local workers: a WorkerSupervisor, or (a cluster child) the primary's workers. */
export type LocalWorkers = Pick<WorkerSupervisor, 'start' | 'stop' | 'stopRestarting' | 'pids' | 'setLogLevel'>;

/**
 * Starts the gateway's local worker processes, restarts those that die
 * (with backoff), and stops them on shutdown. A worker crash never takes
 * the gateway down.
 */
export class WorkerSupervisor {
  readonly #specs: readonly LocalWorkerSpec[];
  readonly #options: SupervisorOptions;
  readonly #running = new Map<string, Running>();
  #stopping = false;
  /** --log-level, then what LogSettings last set: a worker started later starts at it. */
  #logLevel: string;

  constructor(specs: readonly LocalWorkerSpec[], options: SupervisorOptions) {
    this.#specs = specs;
    this.#options = options;
    this.#logLevel = options.logLevel;
  }

  /** LogSettings changed the gateway's level: the running workers take it, and those started later start at it. */
  setLogLevel(level: LogLevel): void {
    this.#logLevel = level;
    const message: WorkerLogLevelMessage = { type: 'log-level', level };
    for (const { child } of this.#running.values()) if (child.connected) child.send(message, undefined, {}, () => undefined);
  }

  /** Starts every worker; resolves once all are up and `onUp` has finished for each. */
  async start(): Promise<void> {
    const stale = await removeStaleWorkerSockets(tmpdir());
    if (stale.length > 0) this.#options.log.info({ removed: stale.length, dir: tmpdir() }, 'removed worker sockets left by gateways that no longer run');
    await Promise.all(this.#specs.map((spec) => this.#launch(spec, 0)));
  }

  /** Pids of the running workers (for tests and diagnostics). */
  pids(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [id, r] of this.#running) if (r.child.pid !== undefined) out.set(id, r.child.pid);
    return out;
  }

  /** The connections to the workers that are up (the supervisor's own: liveness, and status for metrics). */
  connections(): WorkerConnection[] {
    return [...this.#running.values()].flatMap((r) => (r.connection ? [r.connection] : []));
  }

  /** From now on a worker that exits is not restarted (a shutdown began; stop() follows). */
  stopRestarting(): void {
    this.#stopping = true;
  }

  async stop(timeoutMs = 30_000): Promise<void> {
    this.#stopping = true;
    await Promise.all(
      [...this.#running.values()].map(
        (r) =>
          new Promise<void>((resolve) => {
            r.connection?.close();
            if (r.child.exitCode !== null || r.child.signalCode !== null) return resolve();
            const kill = setTimeout(() => r.child.kill('SIGKILL'), timeoutMs);
            r.child.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            r.child.kill('SIGTERM');
          }),
      ),
    );
    this.#running.clear();
  }

  #launch(spec: LocalWorkerSpec, restarts: number): Promise<void> {
    const { log } = this.#options;
    const socket = workerSocketPath(tmpdir(), process.pid, spec.id);
    rmSync(socket, { force: true });
    const device = spec.deviceKind === 'gpu' ? `gpu:${spec.deviceId}` : 'cpu';
    const child = fork(
      WORKER_ENTRY,
      [
        '--listen',
        `unix:${socket}`,
        '--device',
        device,
        '--worker-id',
        spec.id,
        '--log-level',
        this.#logLevel,
        '--max-message-bytes',
        String(this.#options.maxMessageBytes),
        ...(this.#options.workerArgs ?? []),
      ],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' },
    );
    const running: Running = { child, connection: undefined, startedAt: Date.now(), restarts };
    this.#running.set(spec.id, running);

    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`worker ${spec.id} did not report ready within ${this.#options.startTimeoutMs ?? 60_000} ms`));
      }, this.#options.startTimeoutMs ?? 60_000);
      child.on('message', (message: unknown) => {
        if (!isReadyMessage(message) || running.connection) return;
        clearTimeout(timer);
        const endpoint: WorkerEndpoint = { ...spec, address: message.address, maxAheadPerInstance: MAX_EXECUTIONS_AHEAD_PER_INSTANCE };
        running.connection = new WorkerConnection(endpoint, {
          maxMessageBytes: this.#options.maxMessageBytes,
          ...(this.#options.pingTimeoutMs ? { pingTimeoutMs: this.#options.pingTimeoutMs } : {}),
        });
        // Hung (stopped, or its main thread wedged): SIGKILL works on a stopped
        // process too, and the exit below restarts it.
        running.connection.onUnresponsive((reason) => {
          if (this.#running.get(spec.id) !== running || child.exitCode !== null || child.signalCode !== null) return;
          log.error({ worker: spec.id, pid: child.pid, reason }, 'worker unresponsive; killing it (SIGKILL) to restart it');
          child.kill('SIGKILL');
        });
        log.info({ worker: spec.id, pid: child.pid, address: message.address, device }, 'worker up');
        this.#options.onUp(running.connection).then(resolve, reject);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (!running.connection) reject(new Error(`worker ${spec.id} exited before it was ready (code ${code}, signal ${signal})`));
      });
    });

    child.once('exit', (code, signal) => {
      // A worker that ends normally removes its socket; one killed leaves it.
      rmSync(socket, { force: true });
      if (this.#running.get(spec.id) !== running) return;
      running.connection?.close();
      const reason = `worker ${spec.id} (pid ${child.pid}) exited with ${signal ?? `code ${code}`}`;
      if (this.#stopping) {
        // Its requests in flight fail on their own; its slots must go, so nothing more is sent to it.
        log.info({ worker: spec.id, code, signal }, 'worker exited during shutdown; not restarting');
        this.#options.onDown(spec.id, reason);
        return;
      }
      log.error({ worker: spec.id, code, signal }, 'worker exited; restarting');
      this.#options.onDown(spec.id, reason);
      const { attempt, delay } = nextRestart(running.startedAt, restarts);
      setTimeout(() => {
        if (this.#stopping) return;
        this.#launch(spec, attempt).catch((error: unknown) =>
          log.error({ worker: spec.id, err: error }, 'worker restart failed'),
        );
      }, delay).unref();
    });
    return ready;
  }
}
