import { type ConnectionOptions } from 'node:tls';
import { type Logger } from 'pino';
import { type WorkerRecord } from '../../core/worker-record.js';
import { type ModelManager } from '../repository/model-manager.js';
import { WorkerConnection } from '../scheduling/worker-connection.js';
import { type RegistryListener } from './registry-watcher.js';

// Turns registry events into connections and slots: a worker that joins gets
// a connection and its instances become slots of the versions it hosts; one
// that drains keeps its connection (its batches in flight finish) but gets no
// new work; one that leaves is forgotten, and its connection is closed once
// whatever it was still running has had time to answer.

export interface RemoteWorkersOptions {
  readonly models: ModelManager;
  readonly maxMessageBytes: number;
  /** Liveness check of each worker's connection (--worker-ping-timeout-ms); 0 or absent = off. */
  readonly pingTimeoutMs?: number;
  /** Mutual TLS to the workers (--worker-tls-*). */
  readonly tls?: ConnectionOptions;
  readonly log: Logger;
  /** Remote workers up/down changed (metrics). */
  readonly onChange?: (up: number) => void;
  /** How long a left worker's connection stays open for answers in flight. */
  readonly closeDelayMs?: number;
}

export class RemoteWorkers implements RegistryListener {
  readonly #options: RemoteWorkersOptions;
  readonly #connections = new Map<string, WorkerConnection>();
  readonly #pending = new Set<Promise<void>>();

  constructor(options: RemoteWorkersOptions) {
    this.#options = options;
  }

  get count(): number {
    return this.#connections.size;
  }

  join(record: WorkerRecord): void {
    const connection = new WorkerConnection(
      { id: record.id, address: record.address, deviceKind: record.deviceKind, deviceId: record.deviceId },
      {
        maxMessageBytes: this.#options.maxMessageBytes,
        ...(this.#options.tls ? { tls: this.#options.tls } : {}),
        ...(this.#options.pingTimeoutMs ? { pingTimeoutMs: this.#options.pingTimeoutMs } : {}),
      },
    );
    // Unresponsive: ModelManager takes it out of the slots and probes it until
    // it answers again (slots back) or its lease expires (leave).
    connection.onUnresponsive((reason) => {
      if (this.#connections.get(record.id) !== connection) return; // left: its connection only waits to close
      this.#options.log.warn({ worker: record.id, reason }, 'registered worker unresponsive; not sending it work until it answers again');
    });
    this.#connections.set(record.id, connection);
    this.#options.log.info(
      { worker: record.id, address: record.address, device: deviceOf(record), models: record.models.map((m) => m.key), draining: record.draining },
      'registered worker joined',
    );
    this.#apply(record, connection);
    this.#options.onChange?.(this.#connections.size);
  }

  update(record: WorkerRecord): void {
    const connection = this.#connections.get(record.id);
    if (!connection) return this.join(record);
    this.#options.log.info({ worker: record.id, draining: record.draining, models: record.models.map((m) => m.key) }, 'registered worker changed');
    this.#apply(record, connection);
  }

  leave(id: string, reason: string): void {
    const connection = this.#connections.get(id);
    if (!connection) return;
    this.#connections.delete(id);
    this.#options.models.removeWorker(id);
    this.#options.log.info({ worker: id, reason }, 'registered worker left');
    setTimeout(() => connection.close(), this.#options.closeDelayMs ?? 30_000).unref();
    this.#options.onChange?.(this.#connections.size);
  }

  /** Resolves when the versions made ready by joins so far have finished loading. */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending);
  }

  closeAll(): void {
    for (const c of this.#connections.values()) c.close();
    this.#connections.clear();
  }

  #apply(record: WorkerRecord, connection: WorkerConnection): void {
    // A draining worker hosts nothing as far as new work is concerned.
    const hosted = record.draining ? [] : record.models;
    const applied = this.#options.models.setRemoteWorker(connection, hosted).catch((error: unknown) =>
      this.#options.log.error({ worker: record.id, err: error }, 'could not use a registered worker'),
    );
    this.#pending.add(applied);
    void applied.then(() => this.#pending.delete(applied));
  }
}

function deviceOf(record: WorkerRecord): string {
  return record.deviceKind === 'gpu' ? `gpu:${record.deviceId}` : 'cpu';
}
