import { buildModels } from '../models/build/test-models.js';
import { TEST_REPOSITORY, TEST_REPOSITORY_MODELS } from './helpers/test-repository.js';

/** Builds the deterministic test models once per run (skips files that are already identical). */
export default async function setup(): Promise<void> {
  await buildModels(TEST_REPOSITORY, TEST_REPOSITORY_MODELS);
}
