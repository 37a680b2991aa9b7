import { ConfigError, formatConfigMessage, type SourcePosition } from './config-error.js';
import { describeValue, type PbField, type PbMessage, type PbScalar, type PbValue } from './pbtxt.js';
import { type ScalarType } from './scalar-types.js';

/** Shared by every reader of one file. */
export interface ReadContext {
  readonly file: string;
  /** Collected as read; the caller orders them by position. */
  readonly warnings: { readonly message: string; readonly pos: SourcePosition | undefined }[];
  /** Paths of the fields the file writes (`max_batch_size`, `input[0].dims`). */
  readonly present: Set<string>;
}

/** Fields Triton knows and Fabriek skips: name → why, for the warning. */
export type IgnoredFields = Readonly<Record<string, string>>;

/**
 * Reads one text-format message against the schema its converter spells
 * out: each accessor names a field and its type, and `read()` then rejects
 * any field no accessor asked for, so a typo never passes silently.
 */
export class MessageReader {
  readonly path: string;
  readonly #message: PbMessage;
  readonly #ctx: ReadContext;
  readonly #known = new Set<string>();

  private constructor(message: PbMessage, path: string, ctx: ReadContext) {
    this.#message = message;
    this.path = path;
    this.#ctx = ctx;
  }

  static read<T>(
    message: PbMessage,
    path: string,
    ctx: ReadContext,
    convert: (r: MessageReader) => T,
    ignored: IgnoredFields = {},
  ): T {
    const reader = new MessageReader(message, path, ctx);
    const result = convert(reader);
    reader.#finish(ignored);
    return result;
  }

  fieldPath(name: string): string {
    return this.path ? `${this.path}.${name}` : name;
  }

  fail(field: string, reason: string, pos: SourcePosition): never {
    throw new ConfigError(this.#ctx.file, field, reason, pos);
  }

  warn(field: string, reason: string, pos?: SourcePosition): void {
    this.#ctx.warnings.push({ message: formatConfigMessage(this.#ctx.file, field, reason, pos), pos });
  }

  has(name: string): boolean {
    return this.#message.fields.some((f) => f.name === name);
  }

  /** A singular scalar field; undefined when absent. */
  scalar<T>(name: string, type: ScalarType<T>): T | undefined {
    const field = this.#single(name);
    if (!field) return undefined;
    const path = this.fieldPath(name);
    if (field.value.kind === 'list') {
      const reason = `expected ${type.expected}, got ${describeValue(field.value)} (the field is not repeated)`;
      this.fail(path, reason, field.value.pos);
    }
    return this.#convert(field.value, type, path);
  }

  /** A repeated scalar field, by repetition and/or list syntax. */
  scalars<T>(name: string, type: ScalarType<T>): T[] {
    return this.#items(name).map(({ value, path }) => this.#convert(value, type, path));
  }

  /** A singular message field; undefined when absent. */
  message<T>(name: string, convert: (r: MessageReader) => T, ignored?: IgnoredFields): T | undefined {
    const field = this.#single(name);
    if (!field) return undefined;
    const path = this.fieldPath(name);
    if (field.value.kind !== 'message') {
      const extra = field.value.kind === 'list' ? ' (the field is not repeated)' : '';
      this.fail(path, `expected a message { … }, got ${describeValue(field.value)}${extra}`, field.value.pos);
    }
    return MessageReader.read(field.value, path, this.#ctx, convert, ignored);
  }

  /** A repeated message field. */
  messages<T>(name: string, convert: (r: MessageReader) => T, ignored?: IgnoredFields): T[] {
    return this.#items(name).map(({ value, path }) => {
      if (value.kind !== 'message') this.fail(path, `expected a message { … }, got ${describeValue(value)}`, value.pos);
      return MessageReader.read(value, path, this.#ctx, convert, ignored);
    });
  }

  /**
   * A map field: entries `{ key: … value: … }`. A key written twice keeps
   * its last value (protobuf's rule) and earns a warning.
   */
  map<K, V>(name: string, keyType: ScalarType<K>, keyDefault: K, readValue: (entry: MessageReader) => V): Map<K, V> {
    const result = new Map<K, V>();
    const items = this.#items(name);
    const entries = this.messages(name, (e) => ({ key: e.scalar('key', keyType) ?? keyDefault, value: readValue(e) }));
    entries.forEach(({ key, value }, i) => {
      if (result.has(key)) {
        const item = items[i];
        const shown = typeof key === 'string' ? JSON.stringify(key) : String(key);
        this.warn(item?.path ?? this.fieldPath(name), `key ${shown} is set more than once; the last value is used`, item?.value.pos);
      }
      result.set(key, value);
    });
    return result;
  }

  /** At most one of `names` may be set (a protobuf oneof). */
  oneof(names: readonly string[]): void {
    const set = this.#message.fields.filter((f) => names.includes(f.name));
    const first = set[0];
    const second = set.find((f) => f.name !== first?.name);
    if (first && second) {
      const reason =
        `expected only one of ${names.join(', ')} (they are alternatives), ` +
        `got both ${first.name} and ${second.name}`;
      this.fail(this.fieldPath(second.name), reason, second.pos);
    }
  }

  #occurrences(name: string): PbField[] {
    this.#known.add(name);
    const found = this.#message.fields.filter((f) => f.name === name);
    if (found.length > 0) this.#ctx.present.add(this.fieldPath(name));
    return found;
  }

  #single(name: string): PbField | undefined {
    const [first, second] = this.#occurrences(name);
    if (first && second) {
      const at = `line ${first.pos.line}, column ${first.pos.column}`;
      this.fail(this.fieldPath(name), `expected the field once (it is not repeated), got it again after ${at}`, second.pos);
    }
    return first;
  }

  /** Every value of a repeated field, list items flattened, with indexed paths. */
  #items(name: string): { value: PbScalar | PbMessage; path: string }[] {
    const values = this.#occurrences(name).flatMap((f) => (f.value.kind === 'list' ? f.value.items : [f.value]));
    return values.map((value, i) => {
      const path = `${this.fieldPath(name)}[${i}]`;
      this.#ctx.present.add(path);
      return { value, path };
    });
  }

  #convert<T>(value: PbValue, type: ScalarType<T>, path: string): T {
    const result = value.kind === 'message' || value.kind === 'list' ? undefined : type.read(value);
    if (result === undefined) this.fail(path, `expected ${type.expected}, got ${describeValue(value)}`, value.pos);
    return result;
  }

  #finish(ignored: IgnoredFields): void {
    const warned = new Set<string>();
    for (const field of this.#message.fields) {
      if (this.#known.has(field.name) || warned.has(field.name)) continue;
      const why = ignored[field.name];
      if (why === undefined) {
        const known = [...this.#known].join(', ');
        this.fail(this.fieldPath(field.name), `unknown field; expected one of ${known}`, field.pos);
      }
      warned.add(field.name);
      this.warn(this.fieldPath(field.name), `ignored: ${why}`, field.pos);
    }
  }
}
