// JSON bodies of the non-infer endpoints, shaped as Triton's HTTP server
// prints them (snake_case names, enums by name, 64-bit counters as numbers).
import { type ModelStatistics, type StatisticDuration } from '../../proto/gen/inference.js';
import { ModelConfig } from '../../proto/gen/model_config.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const snake = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Map fields: their keys are user data (parameter names), never renamed. */
const MAP_FIELDS = new Set(['parameters', 'metric_tags', 'inputs', 'cc_model_filenames', 'priority_queue_policy']);
/** int64 fields, which proto3 JSON writes as strings; Triton prints them as numbers. */
const INT64_FIELDS = new Set([
  'dims',
  'shape',
  'versions',
  'max_queue_delay_microseconds',
  'default_timeout_microseconds',
  'priority_levels',
  'default_priority_level',
  'key',
]);

function toNumber(value: Json): Json {
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  return Array.isArray(value) ? value.map(toNumber) : value;
}

function convert(value: Json, mapKeys = false): Json {
  if (Array.isArray(value)) return value.map((v) => convert(v));
  if (typeof value !== 'object' || value === null) return value;
  const out: { [key: string]: Json } = {};
  for (const [k, v] of Object.entries(value)) {
    const key = mapKeys ? k : snake(k);
    out[key] = INT64_FIELDS.has(key) && !mapKeys ? toNumber(v) : convert(v, !mapKeys && MAP_FIELDS.has(key));
  }
  return out;
}

/**
 * A ModelConfig as Triton's GET .../config prints it. ts-proto's toJSON
 * gives proto3 JSON (camelCase, defaults omitted); we rename to the proto
 * field names and keep `max_batch_size` even when 0, which clients read.
 */
export function modelConfigJson(config: ModelConfig): Json {
  const converted = convert(ModelConfig.toJSON(config) as Json);
  if (typeof converted !== 'object' || converted === null || Array.isArray(converted)) return converted;
  return { ...converted, max_batch_size: config.maxBatchSize };
}

const duration = (d: StatisticDuration | undefined): Json => ({ count: Number(d?.count ?? 0n), ns: Number(d?.ns ?? 0n) });

/** One entry of Triton's `model_stats` array. */
export function modelStatisticsJson(s: ModelStatistics): Json {
  const i = s.inferenceStats;
  return {
    name: s.name,
    version: s.version,
    last_inference: Number(s.lastInference),
    inference_count: Number(s.inferenceCount),
    execution_count: Number(s.executionCount),
    inference_stats: {
      success: duration(i?.success),
      fail: duration(i?.fail),
      queue: duration(i?.queue),
      compute_input: duration(i?.computeInput),
      compute_infer: duration(i?.computeInfer),
      compute_output: duration(i?.computeOutput),
      cache_hit: duration(i?.cacheHit),
      cache_miss: duration(i?.cacheMiss),
    },
    response_stats: {},
    batch_stats: s.batchStats.map((b) => ({
      batch_size: Number(b.batchSize),
      compute_input: duration(b.computeInput),
      compute_infer: duration(b.computeInfer),
      compute_output: duration(b.computeOutput),
    })),
    memory_usage: [],
  };
}
