import { ConfigError } from '../../models/config/config-error.js';

/** The ConfigError `run` must throw; any other error is rethrown, and no error fails the test. */
export function configErrorOf(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}
