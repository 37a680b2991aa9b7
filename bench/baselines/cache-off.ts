// "The same model uncached": the model's served config without
// response_cache, loaded as Triton's config override through the repository
// API; afterwards the model is loaded again from its repository, which puts
// its own config back (and with it the cache).
import { type InferenceClient } from '../../client/inference-client.js';
import { ModelConfig } from '../../proto/gen/model_config.js';
import { control } from './batching-off.js';

/** The served config as override JSON, minus response_cache (either protocol's form). */
export function withoutResponseCache(config: unknown): Record<string, unknown> {
  const json = (typeof config === 'object' && config !== null && 'maxBatchSize' in config
    ? ModelConfig.toJSON(config as ModelConfig)
    : { ...(config as Record<string, unknown>) }) as Record<string, unknown>;
  delete json['responseCache'];
  delete json['response_cache'];
  return json;
}

function cacheEnabled(config: unknown): boolean {
  if (typeof config !== 'object' || config === null) return false;
  const c = config as { responseCache?: { enable?: boolean }; response_cache?: { enable?: boolean } };
  return (c.responseCache ?? c.response_cache)?.enable === true;
}

/** Runs `fn` while `model` serves without its response cache; undefined (and `fn` not run) when it has none. */
export async function withCacheOff<T>(client: InferenceClient, model: string, fn: () => Promise<T>): Promise<T | undefined> {
  const summary = await control(() => client.getModelConfig(model, '', { timeoutMs: 10_000 }));
  if (!cacheEnabled(summary.config)) return undefined;
  await control(() => client.loadModel(model, { config: withoutResponseCache(summary.config), timeoutMs: 300_000 }));
  try {
    const now = await control(() => client.getModelConfig(model, '', { timeoutMs: 10_000 }));
    if (cacheEnabled(now.config)) throw new Error(`${model}: response_cache is still on after the override`);
    return await fn();
  } finally {
    await control(() => client.loadModel(model, { timeoutMs: 300_000 }));
  }
}
