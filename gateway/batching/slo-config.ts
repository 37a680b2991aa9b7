// Where the SLO-aware mode's setting comes from: the model's config.pbtxt
// `parameters { key: "batching_slo_ms" value { string_value: "25" } }`,
// else the server's --batching-slo-ms. 0 = off (Triton's fixed settings).
import { type ModelConfig } from '../../proto/gen/model_config.js';

export const BATCHING_SLO_MS = 'batching_slo_ms';

/** Largest SLO accepted, ms: a day; beyond it the setting is surely a mistake. */
export const MAX_SLO_MS = 86_400_000;

/** The SLO in ms a config asks for: its parameter, else `serverDefaultMs`; throws a RangeError naming the parameter when malformed. */
export function batchingSloMs(config: Pick<ModelConfig, 'parameters'>, serverDefaultMs: number): number {
  const raw = config.parameters[BATCHING_SLO_MS]?.stringValue;
  if (raw === undefined) return serverDefaultMs;
  const text = raw.trim();
  const ms = text === '' ? NaN : Number(text);
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_SLO_MS) {
    throw new RangeError(`parameter '${BATCHING_SLO_MS}': expected milliseconds between 0 and ${MAX_SLO_MS} (0 = off), got '${raw}'`);
  }
  return ms;
}

/**
 * The config as served: with the SLO in force written to its parameter, so
 * ModelConfig shows the mode whether the model or the server default set it.
 */
export function withBatchingSlo<C extends Pick<ModelConfig, 'parameters'>>(config: C, sloMs: number): C {
  if (sloMs <= 0 || config.parameters[BATCHING_SLO_MS] !== undefined) return config;
  return { ...config, parameters: { ...config.parameters, [BATCHING_SLO_MS]: { stringValue: String(sloMs) } } };
}
