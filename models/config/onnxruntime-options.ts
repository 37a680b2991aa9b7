import { type ModelConfig } from '../../proto/gen/model_config.js';
import { type SessionOptions } from '../../proto/gen/worker.js';
import { ConfigError } from './config-error.js';

// The ONNX Runtime session settings a model's config asks for, under the
// names Triton's onnxruntime backend reads, so a Triton model repository
// keeps its tuning:
//   parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
//   parameters { key: "inter_op_thread_count" ... }
//   parameters { key: "execution_mode" ... }       0 sequential, 1 parallel
//   parameters { key: "enable_mem_arena" ... }     1/0, true/false
//   parameters { key: "enable_mem_pattern" ... }
//   optimization { graph { level: N } }            as Triton: 0 all (default),
//                                                  -1 basic, 1 extended, 2 none
// Other parameter keys are the model's own and are left alone.

/** Triton's graph levels (its README's mapping) → ONNX Runtime's names. */
const GRAPH_LEVELS: ReadonlyMap<number, string> = new Map([
  [0, 'all'],
  [-1, 'basic'],
  [1, 'extended'],
  [2, 'disabled'],
]);

/** More threads than this is a typo, not a tuning (the biggest CPU nodes have a few hundred cores). */
const MAX_THREADS = 1024;

/**
 * The session options for every instance of the model; throws ConfigError
 * naming `file` and the parameter when a value cannot be used.
 */
export function onnxRuntimeOptions(config: ModelConfig | undefined, file: string): SessionOptions {
  const parameters = config?.parameters ?? {};
  const text = (key: string): string | undefined => {
    const value = parameters[key]?.stringValue;
    return value === undefined ? undefined : value.trim();
  };
  const fail = (key: string, reason: string): never => {
    throw new ConfigError(file, `parameters["${key}"]`, reason);
  };
  const threads = (key: string): number => {
    const value = text(key);
    if (value === undefined || value === '') return 0;
    if (!/^\d+$/.test(value) || Number(value) > MAX_THREADS) {
      return fail(key, `expected a thread count from 0 (ONNX Runtime's default) to ${MAX_THREADS}, got ${JSON.stringify(value)}`);
    }
    return Number(value);
  };
  const flag = (key: string, fallback: boolean): boolean => {
    const value = text(key)?.toLowerCase();
    if (value === undefined || value === '') return fallback;
    if (value === '1' || value === 'true') return true;
    if (value === '0' || value === 'false') return false;
    return fail(key, `expected "1", "0", "true" or "false", got ${JSON.stringify(text(key))}`);
  };
  const mode = text('execution_mode');
  let executionMode = 'sequential';
  if (mode === '1' || mode === 'parallel') executionMode = 'parallel';
  else if (mode !== undefined && mode !== '' && mode !== '0' && mode !== 'sequential') {
    fail('execution_mode', `expected 0 (sequential) or 1 (parallel), got ${JSON.stringify(mode)}`);
  }
  const level = config?.optimization?.graph?.level ?? 0;
  const graphOptimizationLevel = GRAPH_LEVELS.get(level);
  if (graphOptimizationLevel === undefined) {
    throw new ConfigError(file, 'optimization.graph.level', `expected 0 (all, the default), -1 (basic), 1 (extended) or 2 (disabled), got ${level}`);
  }
  return {
    intraOpThreads: threads('intra_op_thread_count'),
    interOpThreads: threads('inter_op_thread_count'),
    graphOptimizationLevel,
    enableCpuMemArena: flag('enable_mem_arena', true),
    executionMode,
    enableMemPattern: flag('enable_mem_pattern', true),
  };
}
