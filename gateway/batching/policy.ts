// The dynamic batcher's policy, derived once from config.pbtxt's
// `dynamic_batching` (Triton's model_config.proto). Times are bigint ns so
// the pure `decide` and the shell share one clock unit.
import {
  type ModelDynamicBatching,
  type ModelQueuePolicy,
  ModelQueuePolicy_TimeoutAction,
} from '../../proto/gen/model_config.js';

export type TimeoutAction = 'REJECT' | 'DELAY';

/** One priority level's queue policy (Triton's ModelQueuePolicy). */
export interface LevelQueuePolicy {
  /** What happens to a request whose queue timeout passes: fail it, or move it behind the level's others. */
  readonly timeoutAction: TimeoutAction;
  /** 0n = no queue timeout. */
  readonly defaultTimeoutNs: bigint;
  /** Whether a request's `timeout` parameter may shorten the timeout. */
  readonly allowTimeoutOverride: boolean;
  /** Requests this level may hold (queued + delayed); always bounded, see `batchingPolicyFromConfig`. */
  readonly maxQueueSize: number;
}

export interface BatchingPolicy {
  readonly maxBatchSize: number;
  /** Ascending, unique, each ≤ maxBatchSize; never empty (Triton: none given = [max_batch_size]). */
  readonly preferredBatchSizes: readonly number[];
  /** 0n = send whatever is queued as soon as a slot is free. */
  readonly maxQueueDelayNs: bigint;
  /** Answer requests in the order their batches were cut, even when a later batch finishes first. */
  readonly preserveOrdering: boolean;
  /** Number of levels, numbered 1 (highest) … levelCount; 1 when config's priority_levels is 0. */
  readonly levelCount: number;
  /** config's priority_levels as given: 0 = the model has no priorities. */
  readonly priorityLevels: number;
  /** Level of requests without a `priority` parameter. */
  readonly defaultLevel: number;
  readonly defaultQueuePolicy: LevelQueuePolicy;
  /** priority_queue_policy: per-level overrides of defaultQueuePolicy. */
  readonly levelPolicies: ReadonlyMap<number, LevelQueuePolicy>;
}

/**
 * Bound of a level's queue when config says max_queue_size 0 ("unbounded"
 * in Triton). Every Fabriek queue is bounded, so the gateway's
 * --max-queue-size is used instead; this is the fallback for callers that
 * pass none.
 */
export const DEFAULT_QUEUE_BOUND = 4096;

function toLevelPolicy(p: ModelQueuePolicy | undefined, queueBound: number): LevelQueuePolicy {
  return {
    timeoutAction: p?.timeoutAction === ModelQueuePolicy_TimeoutAction.DELAY ? 'DELAY' : 'REJECT',
    defaultTimeoutNs: (p?.defaultTimeoutMicroseconds ?? 0n) * 1000n,
    allowTimeoutOverride: p?.allowTimeoutOverride ?? false,
    maxQueueSize: p !== undefined && p.maxQueueSize > 0 ? p.maxQueueSize : queueBound,
  };
}

function safeNumber(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`Expected ${what} ≤ 2^53, got ${value}`);
  return Number(value);
}

/**
 * The batching policy of one model version. `maxBatchSize` must be > 0 (a
 * model that does not batch runs one request per execution). `queueBound`
 * replaces max_queue_size 0, per level: a model with N levels may hold
 * N × queueBound requests.
 */
export function batchingPolicyFromConfig(
  maxBatchSize: number,
  db: ModelDynamicBatching,
  queueBound: number = DEFAULT_QUEUE_BOUND,
): BatchingPolicy {
  if (!Number.isInteger(maxBatchSize) || maxBatchSize < 1) {
    throw new RangeError(`Expected max_batch_size to be an integer ≥ 1 for dynamic batching, got ${maxBatchSize}`);
  }
  if (!Number.isInteger(queueBound) || queueBound < 1) {
    throw new RangeError(`Expected the queue bound to be an integer ≥ 1, got ${queueBound}`);
  }
  const sizes = [...new Set(db.preferredBatchSize)].filter((s) => s >= 1 && s <= maxBatchSize).sort((a, b) => a - b);
  const priorityLevels = safeNumber(db.priorityLevels, 'priority_levels');
  const levelCount = Math.max(1, priorityLevels);
  const configuredDefault = safeNumber(db.defaultPriorityLevel, 'default_priority_level');
  // Unset default level: the lowest priority, as config completion also reads it.
  const defaultLevel = configuredDefault >= 1 && configuredDefault <= levelCount ? configuredDefault : levelCount;
  const levelPolicies = new Map<number, LevelQueuePolicy>();
  if (priorityLevels > 0) {
    for (const [level, p] of db.priorityQueuePolicy) {
      const n = Number(level);
      if (n >= 1 && n <= levelCount) levelPolicies.set(n, toLevelPolicy(p, queueBound));
    }
  }
  return {
    maxBatchSize,
    preferredBatchSizes: sizes.length > 0 ? sizes : [maxBatchSize],
    maxQueueDelayNs: db.maxQueueDelayMicroseconds * 1000n,
    preserveOrdering: db.preserveOrdering,
    levelCount,
    priorityLevels,
    defaultLevel,
    defaultQueuePolicy: toLevelPolicy(db.defaultQueuePolicy, queueBound),
    levelPolicies,
  };
}

export function levelPolicy(policy: BatchingPolicy, level: number): LevelQueuePolicy {
  return policy.levelPolicies.get(level) ?? policy.defaultQueuePolicy;
}

/**
 * The level of a request's `priority` parameter. As Triton does, 0, no
 * value, or a value outside 1…priority_levels means the default level, so
 * clients that always send a priority work with every model.
 */
export function levelOf(policy: BatchingPolicy, priority: number | undefined): number {
  if (priority === undefined || !Number.isInteger(priority) || priority < 1 || priority > policy.priorityLevels) {
    return policy.defaultLevel;
  }
  return priority;
}

/**
 * A request's queue timeout in ns (undefined = none). Its `timeout`
 * parameter may only shorten the level's default, and only when the level
 * allows overrides. A default of 0 means "no limit", so there any override
 * applies (Triton's code ignores overrides then; its documentation allows
 * them: "less than the default").
 */
export function queueTimeoutNs(level: LevelQueuePolicy, requestTimeoutUs: number | undefined): bigint | undefined {
  let ns = level.defaultTimeoutNs;
  if (level.allowTimeoutOverride && requestTimeoutUs !== undefined && requestTimeoutUs > 0) {
    const requested = BigInt(Math.round(requestTimeoutUs)) * 1000n;
    if (ns === 0n || requested < ns) ns = requested;
  }
  return ns === 0n ? undefined : ns;
}
