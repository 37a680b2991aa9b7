import { Server, ServerCredentials } from '@grpc/grpc-js';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { type Logger } from 'pino';
import { unavailable } from '../core/errors.js';
import { GRPCInferenceServiceService } from '../proto/gen/inference.js';
import { detectGpus, planLocalWorkers } from './devices.js';
import { createInferenceService } from './grpc/inference-service.js';
import { createLogger } from './logger.js';
import { type ServeOptions } from './options.js';
import { ModelManager } from './repository/model-manager.js';
import { WorkerSupervisor } from './scheduling/worker-supervisor.js';
import { FABRIEK_VERSION } from './version.js';

/** Extensions of the KServe/Triton protocol this server implements. */
export const EXTENSIONS = ['model_configuration', 'model_repository', 'schedule_policy', 'statistics', 'parameters'] as const;

export class StartupError extends Error {
  override name = 'StartupError';
}

export interface RunningGateway {
  readonly grpcPort: number;
  readonly models: ModelManager;
  readonly supervisor: WorkerSupervisor;
  /** Stops accepting, finishes in-flight requests, stops workers. */
  shutdown(): Promise<void>;
}

async function checkRepository(dir: string): Promise<string> {
  const path = resolve(dir);
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new StartupError(`model repository '${dir}' does not exist`);
  if (!info.isDirectory()) throw new StartupError(`model repository '${dir}' is not a directory`);
  return path;
}

function bindGrpc(server: Server, address: string): Promise<number> {
  return new Promise((resolvePort, reject) => {
    server.bindAsync(address, ServerCredentials.createInsecure(), (error, port) => {
      if (error) reject(new StartupError(`cannot listen for gRPC on ${address}: ${error.message}`));
      else resolvePort(port);
    });
  });
}

/** The composition root of a gateway: wires repository, workers, schedulers and the gRPC service. */
export async function startGateway(options: ServeOptions, log: Logger = createLogger(options.logLevel, 'fabriek')): Promise<RunningGateway> {
  const repository = await checkRepository(options.modelRepository);
  const models = new ModelManager({
    repository,
    log,
    defaultMaxBatchSize: options.defaultMaxBatchSize,
    maxQueueSize: options.maxQueueSize,
  });
  await models.scan();

  const gpus = options.gpus ?? detectGpus();
  const specs = planLocalWorkers(gpus, options.workers);
  const supervisor = new WorkerSupervisor(specs, {
    maxMessageBytes: options.maxMessageBytes,
    logLevel: options.logLevel,
    log,
    onUp: (connection) => models.addWorker(connection),
    onDown: (workerId) => models.removeWorker(workerId),
  });
  await supervisor.start();
  await models.loadAll();

  let draining = false;
  const server = new Server({
    'grpc.max_receive_message_length': options.maxMessageBytes,
    'grpc.max_send_message_length': options.maxMessageBytes,
  });
  server.addService(
    GRPCInferenceServiceService,
    createInferenceService(
      models,
      {
        name: 'fabriek',
        version: FABRIEK_VERSION,
        extensions: EXTENSIONS,
        isDraining: () => draining,
        strictReadiness: options.strictReadiness,
      },
      log,
    ),
  );
  let grpcPort: number;
  try {
    grpcPort = await bindGrpc(server, `${options.grpcAddress}:${options.grpcPort}`);
  } catch (error) {
    await supervisor.stop();
    throw error;
  }

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    shuttingDown ??= (async () => {
      draining = true;
      log.info('shutting down: no new requests; finishing those in flight');
      await new Promise<void>((done) => {
        const force = setTimeout(() => {
          log.warn({ exitTimeoutSecs: options.exitTimeoutSecs }, 'exit timeout reached; cancelling remaining requests');
          server.forceShutdown();
          done();
        }, options.exitTimeoutSecs * 1000);
        server.tryShutdown(() => {
          clearTimeout(force);
          done();
        });
      });
      await models.stop(unavailable('server is shutting down'));
      await supervisor.stop();
      log.info('stopped');
    })();
    return shuttingDown;
  };

  return { grpcPort, models, supervisor, shutdown };
}
