import { type BatchingPolicy, batchingPolicyFromConfig } from '../../gateway/batching/policy.js';
import { ModelDynamicBatching } from '../../proto/gen/model_config.js';

/** `dynamic_batching { }` as the config parser gives it (no delay, no preferred sizes, one level), with `more` over it. */
export function dynamicBatching(more: Partial<ModelDynamicBatching> = {}): ModelDynamicBatching {
  return ModelDynamicBatching.fromPartial(more);
}

/** The batching policy of `dynamic_batching { }` (and `more`) at `maxBatchSize` rows, and the server's --max-queue-size if given. */
export function batchingPolicy(maxBatchSize: number, more: Partial<ModelDynamicBatching> = {}, maxQueueSize?: number): BatchingPolicy {
  return batchingPolicyFromConfig(maxBatchSize, dynamicBatching(more), maxQueueSize);
}
