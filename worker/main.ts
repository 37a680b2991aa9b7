#!/usr/bin/env node
import { startTracing, stopTracing, WORKER_TRACE_URL_ENV } from '../core/tracing.js';
import { realpathSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { pathToFileURL } from 'node:url';
import { pino, type Logger } from 'pino';
import { FABRIEK_VERSION } from '../core/version.js';
import { redactUrl } from '../core/redis-connection.js';
import { parseWorkerArgs, USAGE, UsageError, type WorkerArgs } from './cli-args.js';
import { loadWorkerTls, tlsPaths } from '../core/tls.js';
import { TlsReloader } from '../core/tls-reloader.js';
import { setLevel } from '../core/log-levels.js';
import { FrameServer } from './frame-server.js';
import { type WorkerReadyMessage } from './ready-message.js';
import { isWorkerLogLevelMessage } from './log-level-message.js';
import { RegistryLease } from './registry-lease.js';
import { loadRepository } from './repository-models.js';
import { createWorkerRuntime } from './runtime.js';
import { createWorkerService } from './service.js';

// Worker process entry (composition root). Started by a gateway with an IPC
// channel, or standalone (`fabriek worker --registry …`): then it loads its
// repository itself and registers in Redis (registry-lease.ts), and SIGTERM
// first marks it draining there. Protocol with a parent gateway:
//   ready:    process.send(WorkerReadyMessage) once bound (ready-message.ts)
//   level:    a WorkerLogLevelMessage sets the log level (log-level-message.ts)
//   stop:     SIGTERM or SIGINT: stop accepting, finish in-flight calls, free
//             sessions, exit 0 (forced after --shutdown-timeout-ms)
//   orphaned: the IPC channel closes (parent died): same as SIGTERM
// Logs are pino JSON lines on stderr, never tensor data; stdout stays unused.

function boundAddress(listen: string, port: number): string {
  return listen.startsWith('unix:') ? listen : listen.replace(/:\d+$/, `:${port}`);
}

/** The address gateways dial: --advertise-address, else the bound address (hostname for a wildcard host). */
export function advertisedAddress(bound: string, advertise: string | undefined, port: number, host = hostname()): string {
  if (advertise !== undefined) return advertise.replace(/:0$/, `:${port}`);
  const listenHost = bound.slice(0, bound.lastIndexOf(':'));
  const wildcard = listenHost === '0.0.0.0' || listenHost === '[::]' || listenHost === '::';
  return `${wildcard ? host : listenHost}:${port}`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function start(args: WorkerArgs, logger: Logger): Promise<void> {
  const traceUrl = args.trace?.url ?? process.env[WORKER_TRACE_URL_ENV];
  // Parent-based: the worker records only executions its gateway sampled.
  if (traceUrl) await startTracing({ url: traceUrl, ratio: 0 }, 'fabriek-worker', 'worker');
  // Its sessions are gone with a dead thread: exit, so that the gateway restarts this
  // worker and loads its models again (a worker of its own reloads them at start).
  const { pool, host } = createWorkerRuntime(args, logger, (error) => {
    logger.fatal({ err: error }, 'an ONNX Runtime thread died; exiting so the worker is restarted');
    process.exit(1);
  });
  let accepting = true;
  // Read and checked before anything loads: a bad certificate fails in a second.
  const tls = args.tls ? await loadWorkerTls(args.tls) : undefined;
  const server = new FrameServer({
    ...(tls ? { tls: tls.server } : {}),
    handler: createWorkerService({ host, workerId: args.workerId, device: args.device, logger, accepting: () => accepting }),
    // Several gateway processes share this worker: a model only a closed connection held goes.
    onDisconnect: (connection) => void host.release(connection, args.localGateways > 1),
    maxMessageBytes: args.maxMessageBytes,
    logger,
  });
  const listen = async (): Promise<{ port: number; address: string }> => {
    if (args.listen.startsWith('unix:')) rmSync(args.listen.slice('unix:'.length), { force: true });
    const port = await server.listen(args.listen);
    return { port, address: boundAddress(args.listen, port) };
  };

  let lease: RegistryLease | undefined;
  let address: string;
  if (args.registry) {
    lease = new RegistryLease(
      {
        id: args.workerId,
        address: '', // known once listening, after the models loaded
        deviceKind: args.device.kind,
        deviceId: args.device.kind === 'gpu' ? args.device.deviceId : 0,
        host: hostname(),
        pid: process.pid,
        startedAt: Date.now(),
        ttlMs: args.registry.ttlMs,
        draining: false,
        fabriekVersion: FABRIEK_VERSION,
        models: [],
      },
      { url: args.registry.url, secrets: args.registry.secrets, namespace: args.registry.namespace, logger },
    );
    // Fail fast on a wrong registry before spending minutes loading models.
    await lease.connect();
    const { models, failed } = await loadRepository(args.registry.modelRepository, { id: args.workerId, device: args.device }, host, logger);
    // Listen only now, just before registering: a TCP probe of the port
    // passes only once the models are loaded and the worker can serve.
    const bound = await listen();
    address = bound.address;
    const advertised = advertisedAddress(address, args.registry.advertiseAddress, bound.port);
    await lease.start(models, advertised);
    logger.info(
      { registry: redactUrl(args.registry.url), advertised, models: models.map((m) => m.key), failed: failed.map((f) => f.key) },
      'registered',
    );
    // One line on stdout for people and scripts, like the gateway's.
    process.stdout.write(
      `fabriek worker ${args.workerId} ready: serving ${models.length} model versions on ${advertised}${tls ? ' (mutual TLS)' : ''}` +
        (failed.length > 0 ? `; failed: ${failed.map((f) => f.key).join(', ')}` : '') +
        '\n',
    );
  } else {
    // Started by a gateway: it loads the models through the socket.
    address = (await listen()).address;
  }

  // The TLS files rotate in place (core/tls-reloader.ts), checked every --tls-poll-secs and on SIGHUP. Without
  // them SIGHUP is ignored: Node's default would end the worker when a HUP reaches the whole process group.
  const files = args.tls;
  const tlsWatch =
    tls && files
      ? new TlsReloader({ listener: 'worker', paths: tlsPaths(files), loaded: tls, load: () => loadWorkerTls(files), apply: (t) => server.setSecureContext(t.server), log: logger })
      : undefined;
  await tlsWatch?.baseline();
  tlsWatch?.start(args.tlsPollSecs * 1000);
  process.on('SIGHUP', () => {
    if (tlsWatch) void tlsWatch.reload();
    else logger.info('SIGHUP: no TLS files to reload; ignored');
  });

  let stopping = false;
  const stop = async (reason: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ reason }, 'worker stopping');
    tlsWatch?.stop();
    if (lease && args.registry) {
      // Gateways stop sending once they see the draining mark; batches already
      // on the wire are still served during the grace period. After it, new
      // ones are refused with UNAVAILABLE and the gateway retries them elsewhere.
      await lease.drain();
      await sleep(args.registry.drainGraceMs);
      accepting = false;
    }
    if (!(await server.close(args.shutdownTimeoutMs))) {
      logger.warn({ timeoutMs: args.shutdownTimeoutMs }, 'in-flight calls did not finish; forcing shutdown');
    }
    await lease?.stop();
    await host.closeAll();
    await pool.close();
    await stopTracing();
    logger.info('worker stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('disconnect', () => void stop('parent disconnected'));

  const ready: WorkerReadyMessage = { type: 'ready', address, workerId: args.workerId, pid: process.pid };
  process.send?.(ready, undefined, {}, (error: Error | null) => {
    if (error !== null) logger.warn({ err: error }, 'could not send ready message to parent');
  });
  logger.info({ address, device: args.device, cores: args.cores, ortThreads: pool.size, ipc: process.send !== undefined }, 'worker ready');
}

/** Runs a worker with these arguments (the process entry, and `fabriek worker`). */
export function runWorker(argv: readonly string[]): void {
  let args: WorkerArgs;
  try {
    args = parseWorkerArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${error.message}\n${USAGE}\n`);
    process.exit(2);
  }
  // Synchronous: lines stay in order and none are lost on process.exit().
  const logger = pino(
    { level: args.logLevel, base: { pid: process.pid, workerId: args.workerId } },
    pino.destination({ dest: 2, sync: true }),
  );
  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, 'uncaught exception');
    process.exit(1);
  });
  // The gateway that forked this worker passes on its LogSettings changes.
  process.on('message', (message: unknown) => {
    if (isWorkerLogLevelMessage(message)) setLevel(logger, message.level, "the gateway's LogSettings");
  });
  start(args, logger).catch((error: unknown) => {
    logger.fatal({ err: error, listen: args.listen }, 'worker failed to start');
    process.stderr.write(`fabriek worker: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  runWorker(process.argv.slice(2));
}
