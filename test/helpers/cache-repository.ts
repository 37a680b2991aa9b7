import { copyFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ModelInferRequest, type ModelStatistics } from '../../proto/gen/inference.js';
import { TEST_REPOSITORY } from './test-repository.js';

/** The MLP's one input: 784 floats per row. */
export const MLP_ROW = 784;

/**
 * A Triton-layout repository for the response-cache tests: the test MLP
 * three times, as `mlp_cached` (response_cache on), `mlp_shared` (also
 * shared across tenants) and `mlp_plain` (no cache).
 */
export async function cacheRepository(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fabriek-cache-repo-'));
  const configs: Record<string, string> = {
    mlp_cached: 'response_cache { enable: true }\n',
    mlp_shared: 'response_cache { enable: true }\nparameters { key: "cache_shared_across_tenants" value { string_value: "true" } }\n',
    mlp_plain: '',
  };
  for (const [name, config] of Object.entries(configs)) {
    await mkdir(join(dir, name, '1'), { recursive: true });
    await copyFile(join(TEST_REPOSITORY, 'mlp', '1', 'model.onnx'), join(dir, name, '1', 'model.onnx'));
    if (config !== '') await writeFile(join(dir, name, 'config.pbtxt'), `name: "${name}"\n${config}`);
  }
  return dir;
}

/** One MLP row whose values depend on `seed`. */
export function mlpRow(seed: number): Float32Array {
  return Float32Array.from({ length: MLP_ROW }, (_, k) => Math.sin((k + 1) * 0.37 + seed));
}

export function mlpRequest(model: string, seed: number): ModelInferRequest {
  const row = mlpRow(seed);
  return {
    modelName: model,
    modelVersion: '',
    id: `seed-${seed}`,
    parameters: {},
    inputs: [{ name: 'input', datatype: 'FP32', shape: [1n, BigInt(MLP_ROW)], parameters: {} }],
    outputs: [],
    rawInputContents: [Buffer.from(row.buffer)],
  };
}

/** The counts the cache tests look at, as numbers. */
export function cacheCounts(s: ModelStatistics | undefined): { success: number; hits: number; misses: number; executions: number; inferences: number; hitNs: number; missNs: number } {
  const st = s?.inferenceStats;
  return {
    success: Number(st?.success?.count ?? 0n),
    hits: Number(st?.cacheHit?.count ?? 0n),
    misses: Number(st?.cacheMiss?.count ?? 0n),
    executions: Number(s?.executionCount ?? 0n),
    inferences: Number(s?.inferenceCount ?? 0n),
    hitNs: Number(st?.cacheHit?.ns ?? 0n),
    missNs: Number(st?.cacheMiss?.ns ?? 0n),
  };
}
