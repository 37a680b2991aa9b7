import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Writes `<repo>/<name>/1/model.onnx` (when given) and `<repo>/<name>/config.pbtxt` (when given). */
export async function putModel(repo: string, name: string, config: string | undefined, model?: Uint8Array): Promise<void> {
  await mkdir(join(repo, name, '1'), { recursive: true });
  if (model) await writeFile(join(repo, name, '1', 'model.onnx'), model);
  if (config !== undefined) await writeFile(join(repo, name, 'config.pbtxt'), config);
}
