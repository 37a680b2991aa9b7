import { z } from 'zod';

// What a worker tells the registry about itself, and how it is stored in
// Redis. Workers write it (worker/registry-lease.ts), gateways read it
// (gateway/registry/registry-watcher.ts). Redis holds this and nothing else
// about workers: requests and tensors never pass through it.

const tensorSpec = z.object({
  name: z.string(),
  datatype: z.string(),
  /** -1 for a dimension of variable size. */
  shape: z.array(z.number().int()),
  dimNames: z.array(z.string()),
});

const hostedModel = z.object({
  /** `name/version`, as the gateway keys versions. */
  key: z.string().min(1),
  name: z.string().min(1),
  version: z.number().int().nonnegative(),
  instances: z.number().int().positive(),
  executionProvider: z.string(),
  inputs: z.array(tensorSpec),
  outputs: z.array(tensorSpec),
  /**
   * The model's config.pbtxt as the worker read it; absent when it has none.
   * A gateway without a repository of its own serves the model from it.
   */
  config: z.string().optional(),
});

export const workerRecordSchema = z.object({
  id: z.string().min(1),
  /** grpc target gateways dial: `host:port`. */
  address: z.string().min(1),
  deviceKind: z.enum(['cpu', 'gpu']),
  deviceId: z.number().int().nonnegative(),
  host: z.string(),
  pid: z.number().int(),
  startedAt: z.number(),
  /** The worker's lease: it refreshes the record every ttlMs / 3. */
  ttlMs: z.number().int().positive(),
  /** Stopping: finishes what it has, takes no new batches. */
  draining: z.boolean(),
  fabriekVersion: z.string(),
  models: z.array(hostedModel),
});

export type WorkerRecord = z.infer<typeof workerRecordSchema>;
export type HostedModel = z.infer<typeof hostedModel>;

/** Redis key names under one namespace, so several deployments can share a Redis. */
export interface RegistryKeys {
  /** Key of one worker's record (a string with a TTL). */
  worker(id: string): string;
  /** SCAN pattern matching every worker key. */
  readonly workerPattern: string;
  /** Pub/sub channel announcing joins, changes and leaves at once. */
  readonly events: string;
}

export function registryKeys(namespace = 'fabriek'): RegistryKeys {
  return {
    worker: (id) => `${namespace}:worker:${id}`,
    workerPattern: `${namespace}:worker:*`,
    events: `${namespace}:events`,
  };
}

/** A registry event on the pub/sub channel; the record itself is in the key. */
export interface RegistryEvent {
  readonly type: 'join' | 'update' | 'leave';
  readonly id: string;
}

export function encodeRecord(record: WorkerRecord): string {
  return JSON.stringify(record);
}

/** Parses a stored record; throws with the field at fault when it is not one. */
export function decodeRecord(json: string): WorkerRecord {
  return workerRecordSchema.parse(JSON.parse(json));
}

export function decodeEvent(json: string): RegistryEvent | undefined {
  try {
    const value: unknown = JSON.parse(json);
    if (typeof value !== 'object' || value === null) return undefined;
    const { type, id } = value as { type?: unknown; id?: unknown };
    if ((type === 'join' || type === 'update' || type === 'leave') && typeof id === 'string') return { type, id };
  } catch {
    // not ours
  }
  return undefined;
}
