import { type SourcePosition } from './config-error.js';
import { describeToken, type Punct, PbtxtSyntaxError, type Token, tokenize } from './pbtxt-lexer.js';

export { PbtxtSyntaxError } from './pbtxt-lexer.js';

/**
 * Protobuf text format (what Triton's config.pbtxt is written in) as a
 * schema-free tree. The tree keeps what the text says — repetition, list
 * syntax, raw number text, positions — and leaves meaning (which field is
 * repeated, what type a value must have) to the schema reader.
 */

export interface PbString {
  readonly kind: 'string';
  /** Adjacent literals ("a" "b") are already joined. */
  readonly value: string;
  readonly pos: SourcePosition;
}

export interface PbNumber {
  readonly kind: 'number';
  /** As written, sign included: "-1", "0x1F", "2.5e3", "1.5f". */
  readonly text: string;
  readonly pos: SourcePosition;
}

/** Enum names, true/false, inf/nan, possibly with a leading "-". */
export interface PbIdentifier {
  readonly kind: 'identifier';
  readonly text: string;
  readonly pos: SourcePosition;
}

export interface PbMessage {
  readonly kind: 'message';
  /** In written order; a repeated field appears once per occurrence. */
  readonly fields: readonly PbField[];
  readonly pos: SourcePosition;
}

/** `field: [a, b]`: items are scalars or messages, never lists. */
export interface PbList {
  readonly kind: 'list';
  readonly items: readonly (PbScalar | PbMessage)[];
  readonly pos: SourcePosition;
}

export type PbScalar = PbString | PbNumber | PbIdentifier;
export type PbValue = PbScalar | PbMessage | PbList;

export interface PbField {
  readonly name: string;
  readonly value: PbValue;
  /** Where the field name is. */
  readonly pos: SourcePosition;
}

/** Parses a whole document (the body of the top-level message). */
export function parsePbtxt(text: string): PbMessage {
  return new Parser(tokenize(text)).document();
}

/** How a parsed value reads in an error message ("got …"). */
export function describeValue(value: PbValue): string {
  switch (value.kind) {
    case 'string':
      return JSON.stringify(value.value);
    case 'number':
    case 'identifier':
      return value.text;
    case 'message':
      return 'a message { … }';
    case 'list':
      return 'a list [ … ]';
  }
}

const CLOSER: Partial<Record<Punct, Punct>> = { '{': '}', '<': '>' };

class Parser {
  readonly #tokens: readonly Token[];
  #i = 0;

  constructor(tokens: readonly Token[]) {
    this.#tokens = tokens;
  }

  document(): PbMessage {
    return { kind: 'message', fields: this.#fields('', undefined), pos: { line: 1, column: 1 } };
  }

  #peek(): Token {
    // tokenize() always ends with eof, and #i never passes it.
    return this.#tokens[this.#i] ?? { kind: 'eof', pos: { line: 1, column: 1 } };
  }

  #next(): Token {
    const t = this.#peek();
    if (t.kind !== 'eof') this.#i++;
    return t;
  }

  #eat(text: Punct): boolean {
    const t = this.#peek();
    if (t.kind === 'punct' && t.text === text) {
      this.#i++;
      return true;
    }
    return false;
  }

  /** Fields up to the closer of `open`, or to the end of input at top level. */
  #fields(path: string, open: (Token & { kind: 'punct' }) | undefined): PbField[] {
    const close = open === undefined ? undefined : CLOSER[open.text];
    const fields: PbField[] = [];
    for (;;) {
      const t = this.#peek();
      if (close === undefined && t.kind === 'eof') return fields;
      if (close !== undefined && this.#eat(close)) return fields;
      if (t.kind === 'eof' && open !== undefined) {
        const at = `line ${open.pos.line}, column ${open.pos.column}`;
        throw new PbtxtSyntaxError(`expected "${close}" to close the "${open.text}" at ${at}, got end of input`, t.pos, path);
      }
      if (t.kind !== 'identifier') {
        const expected = close === undefined ? 'a field name' : `a field name or "${close}"`;
        throw new PbtxtSyntaxError(`expected ${expected}, got ${describeToken(t)}`, t.pos, path);
      }
      this.#next();
      const fieldPath = path ? `${path}.${t.text}` : t.text;
      let value: PbValue;
      if (this.#eat(':')) {
        value = this.#value(fieldPath, true);
      } else {
        const n = this.#peek();
        if (n.kind !== 'punct' || !['{', '<', '['].includes(n.text)) {
          const reason = `expected ":" or "{" after the field name "${t.text}", got ${describeToken(n)}`;
          throw new PbtxtSyntaxError(reason, n.pos, fieldPath);
        }
        // Without ":" only messages may follow (protobuf's rule).
        value = this.#value(fieldPath, false);
      }
      fields.push({ name: t.text, value, pos: t.pos });
      if (!this.#eat(',')) this.#eat(';');
    }
  }

  #value(path: string, scalarAllowed: boolean): PbValue {
    const t = this.#peek();
    if (t.kind === 'punct' && t.text === '[') {
      this.#next();
      return this.#list(path, scalarAllowed, t.pos);
    }
    return this.#item(path, scalarAllowed);
  }

  #item(path: string, scalarAllowed: boolean): PbScalar | PbMessage {
    const t = this.#peek();
    if (t.kind === 'punct' && (t.text === '{' || t.text === '<')) {
      this.#next();
      return { kind: 'message', fields: this.#fields(path, t), pos: t.pos };
    }
    if (!scalarAllowed) {
      const reason = `expected a message ("{") since no ":" follows the field name, got ${describeToken(t)}`;
      throw new PbtxtSyntaxError(reason, t.pos, path);
    }
    return this.#scalar(path);
  }

  #list(path: string, scalarAllowed: boolean, pos: SourcePosition): PbList {
    const items: (PbScalar | PbMessage)[] = [];
    if (this.#eat(']')) return { kind: 'list', items, pos };
    for (;;) {
      const t = this.#peek();
      if (t.kind === 'punct' && t.text === '[') {
        throw new PbtxtSyntaxError('expected a value, got "[" (lists cannot be nested)', t.pos, `${path}[${items.length}]`);
      }
      items.push(this.#item(`${path}[${items.length}]`, scalarAllowed));
      if (this.#eat(']')) return { kind: 'list', items, pos };
      if (!this.#eat(',')) {
        const n = this.#peek();
        throw new PbtxtSyntaxError(`expected "," or "]" in the list, got ${describeToken(n)}`, n.pos, path);
      }
    }
  }

  #scalar(path: string): PbScalar {
    const t = this.#next();
    switch (t.kind) {
      case 'string': {
        let value = t.value;
        for (let n = this.#peek(); n.kind === 'string'; n = this.#peek()) {
          value += n.value;
          this.#next();
        }
        return { kind: 'string', value, pos: t.pos };
      }
      case 'number':
        return { kind: 'number', text: t.text, pos: t.pos };
      case 'identifier':
        return { kind: 'identifier', text: t.text, pos: t.pos };
      case 'punct':
        if (t.text === '-') {
          const n = this.#next();
          if (n.kind === 'number') return { kind: 'number', text: `-${n.text}`, pos: t.pos };
          if (n.kind === 'identifier') return { kind: 'identifier', text: `-${n.text}`, pos: t.pos };
          throw new PbtxtSyntaxError(`expected a number after "-", got ${describeToken(n)}`, n.pos, path);
        }
        break;
      case 'eof':
        break;
    }
    throw new PbtxtSyntaxError(`expected a value, got ${describeToken(t)}`, t.pos, path);
  }
}
