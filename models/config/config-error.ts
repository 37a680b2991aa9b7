/** Where in a text file something was written (1-based). */
export interface SourcePosition {
  readonly line: number;
  readonly column: number;
}

/**
 * A model configuration that cannot be used: a syntax error in config.pbtxt,
 * a field of the wrong type, or a config that contradicts the ONNX model.
 * The message reads `<file>: <field>: <reason> (line L, column C)` so an
 * operator can go straight to the spot; the parts are kept for programs.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'ERR_MODEL_CONFIG';
  /** The config file (or `model "<name>"` when there is none). */
  readonly file: string;
  /** Dotted field path such as `input[0].dims`; "" for the file as a whole. */
  readonly field: string;
  /** The message without file, field and position. */
  readonly reason: string;
  readonly position: SourcePosition | undefined;

  constructor(
    file: string,
    field: string,
    reason: string,
    position?: SourcePosition,
    options?: { cause?: unknown },
  ) {
    super(formatConfigMessage(file, field, reason, position), options);
    this.file = file;
    this.field = field;
    this.reason = reason;
    this.position = position;
  }
}

export function formatConfigMessage(
  file: string,
  field: string,
  reason: string,
  position?: SourcePosition,
): string {
  const at = position ? ` (line ${position.line}, column ${position.column})` : '';
  return `${file}: ${field ? `${field}: ` : ''}${reason}${at}`;
}
