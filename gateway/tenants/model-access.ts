// Which models a tenant may use: glob patterns over model names, where `*`
// matches any run of characters (also none) and `?` exactly one. Nothing
// else is special, so a model name with dots or brackets is matched
// literally. node's path.matchesGlob is experimental in Node 20 and treats
// `/` and brackets as path syntax, which model names are not.

/** Compiles one pattern; throws RangeError for an empty one. */
export function globToRegExp(pattern: string): RegExp {
  if (pattern === '') throw new RangeError('Expected a non-empty model pattern');
  let source = '';
  for (const ch of pattern) {
    if (ch === '*') source += '.*';
    else if (ch === '?') source += '.';
    else source += ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  // `s`: a model name never holds a newline, but a hostile one might; `.` must not stop at it.
  return new RegExp(`^${source}$`, 's');
}

/** A tenant's allowed models. `*` alone allows every model. */
export class ModelAccess {
  readonly patterns: readonly string[];
  readonly #all: boolean;
  readonly #exact: ReadonlySet<string>;
  readonly #globs: readonly RegExp[];

  constructor(patterns: readonly string[]) {
    this.patterns = [...patterns];
    this.#all = patterns.includes('*');
    const wild = patterns.filter((p) => p.includes('*') || p.includes('?'));
    this.#exact = new Set(patterns.filter((p) => !wild.includes(p)));
    this.#globs = wild.map(globToRegExp);
  }

  allows(model: string): boolean {
    if (this.#all || this.#exact.has(model)) return true;
    for (const re of this.#globs) if (re.test(model)) return true;
    return false;
  }

  static readonly everything = new ModelAccess(['*']);
}
