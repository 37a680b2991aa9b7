// A repository of many small distinct models, for density tests and the
// many-models bench: model_<i> computes y = x + c_i over FP32 [batch, 4],
// with c_i = constantOf(i), and has no config file (the gateway completes
// it). Built from code into a directory the caller owns (a temp dir): no
// binaries are committed, and the same count always gives the same bytes.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GraphBuilder } from './onnx-graph.js';

/** Elements per row of every many-models input and output. */
export const MANY_MODELS_WIDTH = 4;

/** The name of model i (zero-padded so the repository lists in order). */
export function manyModelName(i: number): string {
  return `model_${String(i).padStart(5, '0')}`;
}

/** c_i: distinct per model and exact in FP32 (a multiple of 1/4 below 2^20). */
export function constantOf(i: number): number {
  return i + 0.25;
}

/** y = x + c over FP32 [batch, MANY_MODELS_WIDTH]; the constant is a [1] initializer. */
export function addConstantModel(name: string, c: number): Uint8Array {
  const dims = ['batch', MANY_MODELS_WIDTH] as const;
  const g = new GraphBuilder(name);
  g.input('x', 'float', dims);
  const constant = g.initializer('c', [1], new Float32Array([c]));
  g.op('Add', ['x', constant], 'y');
  g.output('y', 'float', dims);
  return g.encode();
}

/**
 * Writes model_00000 … model_<count-1> as `<dir>/<name>/1/model.onnx`;
 * returns the names in order. Writes a bounded number of files at once.
 */
export async function buildManyModels(dir: string, count: number): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => manyModelName(i));
  const CONCURRENT_WRITES = 32;
  for (let start = 0; start < count; start += CONCURRENT_WRITES) {
    await Promise.all(
      names.slice(start, start + CONCURRENT_WRITES).map(async (name, j) => {
        const versionDir = join(dir, name, '1');
        await mkdir(versionDir, { recursive: true });
        await writeFile(join(versionDir, 'model.onnx'), addConstantModel(name, constantOf(start + j)));
      }),
    );
  }
  return names;
}
