import { type SourcePosition } from './config-error.js';

// Tokens of protobuf text format, the syntax of Triton's config.pbtxt.

export type Punct = '{' | '}' | '<' | '>' | '[' | ']' | ':' | ',' | ';' | '-';

export type Token =
  | { readonly kind: 'punct'; readonly text: Punct; readonly pos: SourcePosition }
  | { readonly kind: 'string'; readonly value: string; readonly pos: SourcePosition }
  | { readonly kind: 'number'; readonly text: string; readonly pos: SourcePosition }
  | { readonly kind: 'identifier'; readonly text: string; readonly pos: SourcePosition }
  | { readonly kind: 'eof'; readonly pos: SourcePosition };

/** A syntax error: `line:column: [field: ]reason`. */
export class PbtxtSyntaxError extends Error {
  override name = 'PbtxtSyntaxError';
  readonly reason: string;
  readonly line: number;
  readonly column: number;
  /** Field path being parsed when it failed ("" at top level). */
  readonly field: string;

  constructor(reason: string, pos: SourcePosition, field = '') {
    super(`${pos.line}:${pos.column}: ${field ? `${field}: ` : ''}${reason}`);
    this.reason = reason;
    this.line = pos.line;
    this.column = pos.column;
    this.field = field;
  }
}

/** How a token reads in an error message ("got …"). */
export function describeToken(token: Token): string {
  switch (token.kind) {
    case 'punct':
      return `"${token.text}"`;
    case 'string':
      return `the string ${JSON.stringify(token.value)}`;
    case 'number':
    case 'identifier':
      return token.text;
    case 'eof':
      return 'end of input';
  }
}

const PUNCTS: readonly string[] = ['{', '}', '<', '>', '[', ']', ':', ',', ';', '-'] satisfies Punct[];
const isPunct = (c: string): c is Punct => PUNCTS.includes(c);
const SIMPLE_ESCAPES: Readonly<Record<string, number>> = {
  a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92, "'": 39, '"': 34, '?': 63,
};
const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9';
const isHex = (c: string | undefined): boolean => c !== undefined && /^[0-9a-fA-F]$/.test(c);
const isIdentStart = (c: string | undefined): boolean => c !== undefined && /^[A-Za-z_]$/.test(c);
const isIdentPart = (c: string | undefined): boolean => c !== undefined && /^[A-Za-z0-9_]$/.test(c);
const utf8 = new TextEncoder();

export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const here = (): SourcePosition => ({ line, column: i - lineStart + 1 });
  const fail = (reason: string, pos: SourcePosition = here()): never => {
    throw new PbtxtSyntaxError(reason, pos);
  };

  const readString = (quote: string, pos: SourcePosition): string => {
    // Escapes produce bytes (\377, \xff), so collect UTF-8 and decode once.
    const bytes: number[] = [];
    i++;
    for (;;) {
      const c = text[i];
      if (c === undefined || c === '\n') {
        return fail(`unterminated string: expected a closing ${quote} on the same line`, pos);
      }
      if (c === quote) {
        i++;
        return new TextDecoder().decode(Uint8Array.from(bytes));
      }
      if (c !== '\\') {
        const cp = text.codePointAt(i) ?? 0;
        const ch = String.fromCodePoint(cp);
        bytes.push(...utf8.encode(ch));
        i += ch.length;
        continue;
      }
      const escPos = here();
      const e = text[i + 1];
      i += 2;
      if (e !== undefined && Object.hasOwn(SIMPLE_ESCAPES, e)) {
        bytes.push(SIMPLE_ESCAPES[e] ?? 0);
      } else if (e !== undefined && e >= '0' && e <= '7') {
        let digits = e;
        while (digits.length < 3 && /^[0-7]$/.test(text[i] ?? '')) digits += text[i++];
        const value = parseInt(digits, 8);
        if (value > 255) fail(`octal escape \\${digits} is above \\377`, escPos);
        bytes.push(value);
      } else if (e === 'x' || e === 'X') {
        let digits = '';
        while (digits.length < 2 && isHex(text[i])) digits += text[i++];
        if (digits === '') fail('expected hex digits after \\x', escPos);
        bytes.push(parseInt(digits, 16));
      } else if (e === 'u' || e === 'U') {
        const n = e === 'u' ? 4 : 8;
        const digits = text.slice(i, i + n);
        if (digits.length !== n || ![...digits].every(isHex)) fail(`expected ${n} hex digits after \\${e}`, escPos);
        const cp = parseInt(digits, 16);
        if (cp > 0x10ffff) fail(`\\${e}${digits} is not a Unicode code point`, escPos);
        bytes.push(...utf8.encode(String.fromCodePoint(cp)));
        i += n;
      } else {
        fail(`unknown escape \\${e ?? ''} in string`, escPos);
      }
    }
  };

  const readNumber = (): string => {
    const start = i;
    if (text[i] === '0' && (text[i + 1] === 'x' || text[i + 1] === 'X')) {
      i += 2;
      if (!isHex(text[i])) fail(`expected hex digits after "${text.slice(start, i)}"`);
      while (isHex(text[i])) i++;
    } else {
      while (isDigit(text[i])) i++;
      if (text[i] === '.') {
        i++;
        while (isDigit(text[i])) i++;
      }
      if ((text[i] === 'e' || text[i] === 'E') && (isDigit(text[i + 1]) || /^[+-]$/.test(text[i + 1] ?? ''))) {
        i += 2;
        while (isDigit(text[i])) i++;
      }
      if (text[i] === 'f' || text[i] === 'F') i++;
    }
    const next = text[i];
    if (isIdentPart(next) || next === '.') {
      fail(`expected a space or punctuation after the number ${text.slice(start, i)}, got "${next ?? ''}"`);
    }
    return text.slice(start, i);
  };

  while (i < text.length) {
    const c = text[i] ?? '';
    if (c === '\n') {
      i++;
      line++;
      lineStart = i;
    } else if (/^\s$/.test(c)) {
      i++;
    } else if (c === '#') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === '"' || c === "'") {
      const pos = here();
      tokens.push({ kind: 'string', value: readString(c, pos), pos });
    } else if (isDigit(c) || (c === '.' && isDigit(text[i + 1]))) {
      const pos = here();
      tokens.push({ kind: 'number', text: readNumber(), pos });
    } else if (isIdentStart(c)) {
      const pos = here();
      const start = i;
      while (isIdentPart(text[i])) i++;
      tokens.push({ kind: 'identifier', text: text.slice(start, i), pos });
    } else if (isPunct(c)) {
      tokens.push({ kind: 'punct', text: c, pos: here() });
      i++;
    } else {
      fail(`unexpected character ${JSON.stringify(c)}`);
    }
  }
  tokens.push({ kind: 'eof', pos: here() });
  return tokens;
}
