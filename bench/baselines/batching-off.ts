// "The same server with batching off": the model's served config, without
// dynamic_batching, loaded as Triton's config override through the
// repository API; afterwards the model is loaded again from its repository,
// which puts its own config back.
import { status } from '@grpc/grpc-js';
import { isInferenceError } from '../../client/errors.js';
import { type InferenceClient } from '../../client/inference-client.js';
import { ModelConfig } from '../../proto/gen/model_config.js';

/** The served config as override JSON, minus dynamic batching (either protocol's form). */
export function withoutDynamicBatching(config: unknown): Record<string, unknown> {
  const json = (typeof config === 'object' && config !== null && 'maxBatchSize' in config
    ? ModelConfig.toJSON(config as ModelConfig)
    : { ...(config as Record<string, unknown>) }) as Record<string, unknown>;
  delete json['dynamicBatching'];
  delete json['dynamic_batching'];
  return json;
}

/** A repository call, tried again once if the connection failed under it (heavy load can break one). */
export async function control<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (!isInferenceError(error) || (error.code !== status.UNAVAILABLE && error.code !== status.INTERNAL)) throw error;
    await new Promise((r) => setTimeout(r, 1_000));
    return call();
  }
}

/**
 * Runs `fn` while `model` serves without dynamic batching; undefined (and
 * `fn` not run) when the model has no dynamic batching to turn off.
 */
export async function withBatchingOff<T>(client: InferenceClient, model: string, fn: () => Promise<T>): Promise<T | undefined> {
  const summary = await control(() => client.getModelConfig(model, '', { timeoutMs: 10_000 }));
  if (!summary.dynamicBatching) return undefined;
  await control(() => client.loadModel(model, { config: withoutDynamicBatching(summary.config), timeoutMs: 300_000 }));
  try {
    const now = await control(() => client.getModelConfig(model, '', { timeoutMs: 10_000 }));
    if (now.dynamicBatching) throw new Error(`${model}: dynamic batching is still on after the override`);
    return await fn();
  } finally {
    await control(() => client.loadModel(model, { timeoutMs: 300_000 }));
  }
}
