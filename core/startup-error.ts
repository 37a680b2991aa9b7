/** A gateway that cannot start (missing repository, unreadable certificate, busy port): exit 1 with one line. */
export class StartupError extends Error {
  override name = 'StartupError';
}
