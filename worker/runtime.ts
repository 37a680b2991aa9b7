import { type Logger } from 'pino';
import { type WorkerArgs } from './cli-args.js';
import { ModelHost } from './model-host.js';
import { OrtThreadPool } from './ort-pool.js';

// A worker's ONNX Runtime threads and the models on them, as a worker process
// (main.ts) and a gateway's in-process worker both make them.

export interface WorkerRuntime {
  readonly pool: OrtThreadPool;
  readonly host: ModelHost;
}

/**
 * `onFatal`: an ONNX Runtime thread died, and the sessions on it with it; the
 * runtime is of no further use (a process exits, an in-process worker starts afresh).
 */
export function createWorkerRuntime(args: WorkerArgs, logger: Logger, onFatal: (error: Error) => void): WorkerRuntime {
  const pool = new OrtThreadPool({
    threads: args.ortThreads,
    inlineMaxRunNs: args.inlineRunUs * 1000,
    onInline: (label, outcome) => {
      if ('error' in outcome) {
        logger.warn({ instance: label, err: outcome.error }, 'could not open the instance on the main thread; its runs stay on its ONNX Runtime thread');
        return;
      }
      const us = (ns: number): number => Math.round(ns / 1000);
      const runs = { instance: label, mainThreadUs: us(outcome.medianNs), ownThreadUs: us(outcome.threadMedianNs), handOffUs: us(outcome.handOffMedianNs) };
      if (outcome.moved) logger.debug(runs, 'instance runs on the main thread from now on (its runs are shorter than the hand-off to a thread)');
      else logger.debug(runs, 'instance stays on its ONNX Runtime thread: its runs on the main thread took longer than --inline-run-us');
    },
    onFatal,
  });
  const host = new ModelHost({
    startInstances: (inits) => pool.open(inits),
    cores: args.cores,
    logger,
    queuedPerInstance: args.queuedPerInstance,
    mergeBeforePipelining: args.localGateways > 1,
  });
  return { pool, host };
}
