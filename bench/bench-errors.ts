/** Bad command-line use (exit code 2, with the usage). */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A run that cannot go on for a reason the user can act on (exit code 1, the message without a stack). */
export class BenchError extends Error {
  override name = 'BenchError';
}
