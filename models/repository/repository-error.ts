/** The model repository as a whole cannot be read (one bad model is not this: it gets an `error` entry). */
export class RepositoryError extends Error {
  override name = 'RepositoryError';
  readonly code = 'ERR_MODEL_REPOSITORY';
  readonly directory: string;

  constructor(directory: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.directory = directory;
  }
}
