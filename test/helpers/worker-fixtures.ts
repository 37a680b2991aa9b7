import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraphBuilder } from '../../models/build/onnx-graph.js';
import { buildModels, modelPath, writeIfChanged } from '../../models/build/test-models.js';

// Model files for the worker-process tests, on top of the shared test models:
// a deliberately slow model (to hold an instance busy), a BF16 model and a
// file that is not ONNX at all (load errors).

export const WORKER_MODELS_DIR = fileURLToPath(new URL('../.models/worker', import.meta.url));

/** Shared test models the worker tests use. */
export const WORKER_TEST_MODELS = [
  'identity_fp32',
  'identity_int64',
  'identity_bool',
  'identity_fp16',
  'identity_string',
  'add_sub',
  'bf16_identity',
] as const;

/** Dimension of slow_matmul's square input used by the tests. */
export const SLOW_N = 1024;

/**
 * slow_matmul: X FP32 [n,n] → X·X·X·… (`depth` MatMuls) → Y FP32 [n,n]. With
 * one intra-op thread and n = 1024 a run takes about half a second, long
 * enough to hold its instance busy while a test looks at it through Status.
 */
export function slowMatmulModel(depth = 48): Uint8Array {
  const g = new GraphBuilder('slow_matmul');
  let y = g.input('X', 'float', ['n', 'n']);
  for (let i = 0; i < depth; i++) y = g.op('MatMul', [y, 'X'], i === depth - 1 ? 'Y' : `mm${i}`);
  g.output('Y', 'float', ['n', 'n']);
  return g.encode();
}

export interface WorkerModelFiles {
  /** Path of a built model by name (shared test models plus slow_matmul). */
  path(name: string): string;
  readonly notOnnx: string;
}

export async function buildWorkerModels(): Promise<WorkerModelFiles> {
  await buildModels(WORKER_MODELS_DIR, WORKER_TEST_MODELS);
  await writeIfChanged(modelPath(WORKER_MODELS_DIR, 'slow_matmul'), slowMatmulModel());
  const notOnnx = join(WORKER_MODELS_DIR, 'not_onnx', '1', 'model.onnx');
  await writeIfChanged(notOnnx, new TextEncoder().encode('this is not an ONNX model\n'));
  return { path: (name) => modelPath(WORKER_MODELS_DIR, name), notOnnx };
}
