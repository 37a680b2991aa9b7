#!/usr/bin/env node
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { WorkerService } from '../proto/gen/worker.js';
import { parseWorkerArgs, USAGE, UsageError, type WorkerArgs } from './cli-args.js';
import { InstancePool } from './instance-pool.js';
import { ModelHost } from './model-host.js';
import { type WorkerReadyMessage } from './ready-message.js';
import { createWorkerService } from './service.js';

// Worker process entry (composition root). Started by a gateway with an IPC
// channel, or by hand / by a scheduler without one. Protocol with the parent:
//   ready:    process.send(WorkerReadyMessage) once bound (ready-message.ts)
//   stop:     SIGTERM or SIGINT: stop accepting, finish in-flight calls, free
//             sessions, exit 0 (forced after --shutdown-timeout-ms)
//   orphaned: the IPC channel closes (parent died): same as SIGTERM
// Logs are pino JSON lines on stderr, never tensor data; stdout stays unused.

function boundAddress(listen: string, port: number): string {
  return listen.startsWith('unix:') ? listen : listen.replace(/:\d+$/, `:${port}`);
}

function bind(server: Server, address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, ServerCredentials.createInsecure(), (error, port) =>
      error === null ? resolve(port) : reject(error),
    );
  });
}

async function start(args: WorkerArgs, logger: Logger): Promise<void> {
  const host = new ModelHost({
    startInstance: (init) => InstancePool.start(init, (error) => logger.warn({ err: error }, 'ORT thread error')),
    cores: args.cores,
    logger,
  });
  const server = new Server({
    'grpc.max_receive_message_length': args.maxMessageBytes,
    'grpc.max_send_message_length': args.maxMessageBytes,
  });
  server.addService(WorkerService, createWorkerService({ host, workerId: args.workerId, device: args.device, logger }));
  const port = await bind(server, args.listen);
  const address = boundAddress(args.listen, port);

  let stopping = false;
  const stop = async (reason: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ reason }, 'worker stopping');
    const force = setTimeout(() => {
      logger.warn({ timeoutMs: args.shutdownTimeoutMs }, 'in-flight calls did not finish; forcing shutdown');
      server.forceShutdown();
    }, args.shutdownTimeoutMs);
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    clearTimeout(force);
    await host.closeAll();
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
  logger.info({ address, device: args.device, cores: args.cores, ipc: process.send !== undefined }, 'worker ready');
}

function main(): void {
  let args: WorkerArgs;
  try {
    args = parseWorkerArgs(process.argv.slice(2));
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
  start(args, logger).catch((error: unknown) => {
    logger.fatal({ err: error, listen: args.listen }, 'worker failed to start');
    process.exit(1);
  });
}

main();
