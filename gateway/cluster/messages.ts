import { type WorkerEndpoint } from '../scheduling/worker-link.js';
import { type ModelStatistics } from '../../proto/gen/inference.js';
import { type TenantQuotas } from '../tenants/tenant.js';
import { ServingError } from '../../core/errors.js';
import { QuotaExceededError } from '../tenants/quota.js';
import { type LoadRequest } from '../repository/on-demand-loader.js';
import { type LogLevel } from '../../core/log-levels.js';
import { type TracePolicy } from '../../core/trace-policy.js';
import { type SharedMemoryChange } from '../shared-memory/system-shared-memory.js';
import { type Tensor } from '../../core/tensor.js';
import { type ExecutionResult, type SequenceFlags } from '../scheduling/execution.js';

// IPC between the primary of `fabriek serve --gateway-processes N` and its
// gateway children (node:cluster, advanced serialization: bigints, Maps and
// bytes travel as they are). Every message of ours carries `fabriek: 1`, so
// prom-client's cluster messages on the same channel are told apart.
// Nothing here is on the inference path, except quota asks for tenants that
// have quotas: the primary holds the limiter (local buckets, or Redis), so a
// host is one gateway to the others and its share holds across its processes;
// and requests of a stateful model's sequence that another process keeps.

/** Env of a child: the primary's local workers when it was forked (JSON WorkerEndpoint[]). */
export const WORKERS_ENV = 'FABRIEK_GATEWAY_WORKERS';
/** A gateway child, forked by the primary with its env (cheap to ask: a single gateway loads nothing of gateway/cluster). */
export function isGatewayChild(): boolean {
  return process.env[WORKERS_ENV] !== undefined && process.send !== undefined;
}

/** Env of a child: its place among them, 0…N-1 (child 0 polls the repository in poll mode). */
export const INDEX_ENV = 'FABRIEK_GATEWAY_INDEX';
/** Env of a child: how many gateway processes there are. */
export const PROCESSES_ENV = 'FABRIEK_GATEWAY_PROCESSES';

/** A repository API change, applied by the other children as the one that served it did. */
export type RepositoryChange =
  | { readonly op: 'load'; readonly name: string; readonly config: string | undefined; readonly files: ReadonlyMap<string, Uint8Array> }
  | { readonly op: 'unload'; readonly name: string };

/** A request of a sequence kept by another gateway process (scheduling/sequence-scheduler.ts), as it travels there. */
export interface SequenceJobWire {
  readonly model: string;
  readonly version: number;
  readonly inputs: readonly Tensor[];
  readonly outputs: readonly string[];
  /** ms since the epoch; Infinity: none. */
  readonly deadline: number;
  readonly batchSize: number;
  readonly priority?: number | undefined;
  readonly timeoutUs?: number | undefined;
  /** Its tenant's share (model access was checked where it arrived). */
  readonly tenant?: { readonly name: string; readonly weight: number; readonly queueShare: number } | undefined;
  readonly sequence: SequenceFlags;
}

/** Its answer, as it travels back. */
export interface SequenceResultWire {
  readonly outputs: readonly Tensor[];
  readonly queueNs: number;
  readonly batchRows?: number | undefined;
  readonly execution: Omit<ExecutionResult, 'outputs'>;
}

/** What a child asks the primary. */
export type Ask =
  | { readonly op: 'metrics' }
  | { readonly op: 'stats'; readonly name: string; readonly version: string }
  | { readonly op: 'repository'; readonly change: RepositoryChange }
  | { readonly op: 'quota-acquire'; readonly tenant: string; readonly quotas: TenantQuotas; readonly items: number }
  | { readonly op: 'quota-release'; readonly grant: number }
  /** On demand: room on the host for this load (the primary plans the budget, host-budget.ts). */
  | { readonly op: 'budget-reserve'; readonly need: LoadRequest }
  /** On demand: the load `budget-reserve` allowed is over. */
  | { readonly op: 'budget-settled'; readonly key: string }
  /** LogSettings changed the level in this process: the primary and the others take it too. */
  | { readonly op: 'log-level'; readonly level: LogLevel }
  /** TraceSetting changed what this process samples: the others sample so too. */
  | { readonly op: 'trace-policy'; readonly policy: TracePolicy }
  /** A system shared memory region registered or unregistered here: the others do so too. */
  | { readonly op: 'shared-memory'; readonly change: SharedMemoryChange }
  /** Hold (claim) or give up a region name for a registration in this process: no other may register it meanwhile. */
  | { readonly op: 'shared-memory-claim'; readonly name: string; readonly claim: boolean }
  /** Sequence `key` (sequence-scheduler.ts processKey) starts in this process: record it here (the process that kept it drops it first). */
  | { readonly op: 'sequence-claim'; readonly key: string; readonly model: string; readonly version: number }
  /** Run this request in the process that keeps sequence `key` (refused as not started when none does). */
  | { readonly op: 'sequence-infer'; readonly key: string; readonly job: SequenceJobWire }
  /** Sequence `key`, kept here, ended: forget it (if still recorded as this process's). */
  | { readonly op: 'sequence-ended'; readonly key: string };

/** What the primary asks a child. */
export type ChildRequest =
  | { readonly op: 'stats'; readonly name: string; readonly version: string }
  | { readonly op: 'repository'; readonly change: RepositoryChange }
  /** On demand: what this process holds (ResidentReport[]). */
  | { readonly op: 'budget-residents' }
  /** On demand: unload `key` if it is idle here (true: gone; false: busy). */
  | { readonly op: 'budget-evict'; readonly key: string }
  /** Log at this level from now on (LogSettings in another process, or a process forked after it). */
  | { readonly op: 'log-level'; readonly level: LogLevel }
  /** Sample by this from now on (TraceSetting in another process, or a process forked after it). */
  | { readonly op: 'trace-policy'; readonly policy: TracePolicy }
  /** Register or unregister this region too (another process's call, or one made before this process was forked). */
  | { readonly op: 'shared-memory'; readonly change: SharedMemoryChange }
  /** Run this request of a sequence this process keeps (SequenceResultWire). */
  | { readonly op: 'sequence-infer'; readonly job: SequenceJobWire }
  /** Another process took the START of sequence `key`: end this process's. */
  | { readonly op: 'sequence-drop'; readonly key: string; readonly model: string; readonly version: number };

/** An error across the channel: its gRPC code (if it had one), message and retry hint. */
export interface WireError {
  readonly code: number | undefined;
  readonly message: string;
  readonly retryAfterMs?: number | undefined;
  readonly quota?: { readonly tenant: string; readonly limit: 'requests' | 'items' | 'concurrency' } | undefined;
}

export interface ReadySummary {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly metricsPort: number;
  readonly ready: readonly string[];
  readonly onDemand: readonly string[];
  readonly failed: readonly string[];
  readonly budget: string | undefined;
  readonly tenants: number | 'open';
}

export type ToPrimary =
  | { readonly fabriek: 1; readonly kind: 'ready'; readonly summary: ReadySummary }
  | { readonly fabriek: 1; readonly kind: 'ask'; readonly id: number; readonly ask: Ask }
  | { readonly fabriek: 1; readonly kind: 'reply'; readonly id: number; readonly value?: unknown; readonly error?: WireError };

export type ToChild =
  | { readonly fabriek: 1; readonly kind: 'worker-up'; readonly endpoint: WorkerEndpoint }
  | { readonly fabriek: 1; readonly kind: 'worker-down'; readonly id: string; readonly reason: string }
  | { readonly fabriek: 1; readonly kind: 'request'; readonly id: number; readonly request: ChildRequest }
  /** The primary refused a tenant's rate: every child refuses it early (before reading a request) for `retryAfterMs`. */
  | { readonly fabriek: 1; readonly kind: 'quota-refused'; readonly error: WireError; readonly retryAfterMs: number }
  /** Where the primary counts tenant quotas now (Redis, or this host's share), and how many gateways share them. */
  | { readonly fabriek: 1; readonly kind: 'quota-state'; readonly store: 'redis' | 'local'; readonly gateways: number }
  | { readonly fabriek: 1; readonly kind: 'reply'; readonly id: number; readonly value?: unknown; readonly error?: WireError };

export function toWire(error: unknown): WireError {
  if (error instanceof QuotaExceededError) {
    return { code: error.code, message: error.message, retryAfterMs: error.retryAfterMs, quota: { tenant: error.tenant, limit: error.limit } };
  }
  if (error instanceof ServingError) return { code: error.code, message: error.message, retryAfterMs: error.retryAfterMs };
  return { code: undefined, message: error instanceof Error ? error.message : String(error) };
}

/** The error again, with its class (a quota refusal keeps its retry hint and metric label). */
export function fromWire(e: WireError): Error {
  if (e.quota) return new QuotaExceededError(e.quota.tenant, e.quota.limit, e.message, e.retryAfterMs);
  if (e.code !== undefined) return new ServingError(e.code, e.message, e.retryAfterMs === undefined ? {} : { retryAfterMs: e.retryAfterMs });
  return new Error(e.message);
}

export function isOurs<T extends { fabriek: 1 }>(message: unknown): message is T {
  return typeof message === 'object' && message !== null && (message as { fabriek?: unknown }).fabriek === 1;
}

/** The answer of stats asks: each other child's statistics. */
export type OthersStatistics = ModelStatistics[][];
