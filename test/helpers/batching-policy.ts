import { type BatchingPolicy, batchingPolicyFromConfig } from '../../gateway/batching/policy.js';
import { type ModelDynamicBatching } from '../../proto/gen/model_config.js';

/** `dynamic_batching { }` as the config parser gives it (no delay, no preferred sizes, one level), with `more` over it. */
export function dynamicBatching(more: Partial<ModelDynamicBatching> = {}): ModelDynamicBatching {
  return {
    preferredBatchSize: [],
    maxQueueDelayMicroseconds: 0n,
    preserveOrdering: false,
    priorityLevels: 0n,
    defaultPriorityLevel: 0n,
    defaultQueuePolicy: undefined,
    priorityQueuePolicy: new Map(),
    ...more,
  };
}

/** The batching policy of `dynamic_batching { }` (and `more`) at `maxBatchSize` rows. */
export function batchingPolicy(maxBatchSize: number, more: Partial<ModelDynamicBatching> = {}): BatchingPolicy {
  return batchingPolicyFromConfig(maxBatchSize, dynamicBatching(more));
}
