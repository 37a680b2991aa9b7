#!/usr/bin/env node
// CLI: build the test models into a model repository directory.
//   node dist/models/build/build-test-models.js OUT_DIR [name ...]
//   node dist/models/build/build-test-models.js --examples [DIR]
// --examples (re)writes the committed example repository (default
// models/examples/ under the current directory, i.e. run from the repo root).

import { resolve } from 'node:path';
import { buildExampleRepository, buildModels, TEST_MODELS } from './test-models.js';

const USAGE = `usage: build-test-models OUT_DIR [name ...]
       build-test-models --examples [DIR]   (default DIR: models/examples)
models: ${TEST_MODELS.join(', ')}`;

async function main(argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined || first === '-h' || first === '--help') {
    console.error(USAGE);
    return first === undefined ? 2 : 0;
  }
  const started = performance.now();
  let paths: string[];
  if (first === '--examples') {
    if (rest.length > 1) {
      console.error(USAGE);
      return 2;
    }
    paths = await buildExampleRepository(resolve(rest[0] ?? 'models/examples'));
  } else {
    paths = await buildModels(resolve(first), rest.length > 0 ? rest : TEST_MODELS);
  }
  for (const p of paths) console.log(p);
  console.error(`${paths.length} files up to date in ${Math.round(performance.now() - started)} ms`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 1;
  },
);
