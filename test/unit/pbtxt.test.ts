import { describe, expect, it } from 'vitest';
import { type PbField, type PbMessage, parsePbtxt, PbtxtSyntaxError, type PbValue } from '../../models/config/pbtxt.js';

/** The tree without positions, for compact expectations. */
type Plain = string | { n: string } | { id: string } | Plain[] | { [name: string]: Plain[] };
function plain(value: PbValue): Plain {
  switch (value.kind) {
    case 'string':
      return value.value;
    case 'number':
      return { n: value.text };
    case 'identifier':
      return { id: value.text };
    case 'list':
      return value.items.map(plain);
    case 'message':
      return fieldsOf(value);
  }
}
function fieldsOf(message: PbMessage): { [name: string]: Plain[] } {
  const out: { [name: string]: Plain[] } = {};
  for (const f of message.fields) (out[f.name] ??= []).push(plain(f.value));
  return out;
}
function field(message: PbMessage, i: number): PbField {
  const f = message.fields[i];
  if (!f) throw new Error(`no field ${i}`);
  return f;
}
function syntaxError(text: string): PbtxtSyntaxError {
  try {
    parsePbtxt(text);
  } catch (error) {
    if (error instanceof PbtxtSyntaxError) return error;
    throw error;
  }
  throw new Error(`expected a syntax error for ${JSON.stringify(text)}`);
}

describe('parsePbtxt: values', () => {
  it('reads scalars of every kind, keeping number text as written', () => {
    const doc = parsePbtxt('a: "s" b: 12 c: -3 d: 0x1F e: 2.5e3 f: 1.5f g: .5 h: KIND_GPU i: true j: -inf k: 017');
    expect(fieldsOf(doc)).toEqual({
      a: ['s'],
      b: [{ n: '12' }],
      c: [{ n: '-3' }],
      d: [{ n: '0x1F' }],
      e: [{ n: '2.5e3' }],
      f: [{ n: '1.5f' }],
      g: [{ n: '.5' }],
      h: [{ id: 'KIND_GPU' }],
      i: [{ id: 'true' }],
      j: [{ id: '-inf' }],
      k: [{ n: '017' }],
    });
  });

  it('reads messages in braces or angle brackets, with or without a colon', () => {
    const doc = parsePbtxt('a { x: 1 } b: { x: 2 } c < x: 3 > d: < e { } >');
    expect(fieldsOf(doc)).toEqual({
      a: [{ x: [{ n: '1' }] }],
      b: [{ x: [{ n: '2' }] }],
      c: [{ x: [{ n: '3' }] }],
      d: [{ e: [{}] }],
    });
  });

  it('keeps repetition and list syntax apart and in order', () => {
    const doc = parsePbtxt('dims: 1 dims: [2, 3] dims: [] g [ { c: 1 }, { c: 2 } ] h: [{}]');
    expect(fieldsOf(doc)).toEqual({
      dims: [{ n: '1' }, [{ n: '2' }, { n: '3' }], []],
      g: [[{ c: [{ n: '1' }] }, { c: [{ n: '2' }] }]],
      h: [[{}]],
    });
  });

  it('accepts "," and ";" after fields, and comments anywhere', () => {
    const doc = parsePbtxt('# header\na: 1, b: 2; # trailing\nc { d: 3; } # end');
    expect(fieldsOf(doc)).toEqual({ a: [{ n: '1' }], b: [{ n: '2' }], c: [{ d: [{ n: '3' }] }] });
  });

  it('reads map entries as messages with key and value', () => {
    const doc = parsePbtxt('parameters { key: "intra_op_thread_count" value: { string_value: "1" } }');
    expect(fieldsOf(doc)).toEqual({
      parameters: [{ key: ['intra_op_thread_count'], value: [{ string_value: ['1'] }] }],
    });
  });

  it('parses an empty document and one of only comments', () => {
    expect(parsePbtxt('').fields).toEqual([]);
    expect(parsePbtxt('  # nothing\n\n').fields).toEqual([]);
  });
});

describe('parsePbtxt: strings', () => {
  it('reads both quote styles and every escape', () => {
    const doc = parsePbtxt(String.raw`a: 'it''s' b: "q\"\'\\" c: "\n\t\r\a\b\f\v\?" d: "\101\x42\u00e9\U0001F600"`);
    expect(fieldsOf(doc)).toEqual({ a: ['its'], b: [`q"'\\`], c: ['\n\t\r\x07\b\f\v?'], d: ['ABé😀'] });
  });

  it('joins adjacent literals, across lines and quote styles', () => {
    expect(fieldsOf(parsePbtxt(`a: "x" 'y'\n  "z"`))).toEqual({ a: ['xyz'] });
  });

  it('decodes octal and hex escapes as UTF-8 bytes, as protobuf does', () => {
    expect(fieldsOf(parsePbtxt(String.raw`a: "\303\251\xc3\xa9"`))).toEqual({ a: ['éé'] });
  });

  it('keeps non-ASCII text as is', () => {
    expect(fieldsOf(parsePbtxt('a: "modèle 模型"'))).toEqual({ a: ['modèle 模型'] });
  });
});

describe('parsePbtxt: positions', () => {
  it('records 1-based line and column of each field and value', () => {
    const doc = parsePbtxt('name: "m"\n  max_batch_size: 8\ninput [\n  { dims: [ -1 ] }\n]');
    expect(field(doc, 0).pos).toEqual({ line: 1, column: 1 });
    expect(field(doc, 1).pos).toEqual({ line: 2, column: 3 });
    expect(field(doc, 1).value.pos).toEqual({ line: 2, column: 19 });
    const input = field(doc, 2).value;
    if (input.kind !== 'list') throw new Error('expected a list');
    const first = input.items[0];
    if (first?.kind !== 'message') throw new Error('expected a message');
    expect(first.pos).toEqual({ line: 4, column: 3 });
    expect(field(first, 0).value.pos).toEqual({ line: 4, column: 11 });
  });
});

describe('parsePbtxt: errors say where, what was expected and what came', () => {
  const cases: [string, string, number, number, string, string][] = [
    // [name, text, line, column, field, reason]
    ['scalar without colon', 'count 2', 1, 7, 'count', 'expected ":" or "{" after the field name "count", got 2'],
    ['list of scalars without colon', 'dims [1]', 1, 7, 'dims[0]', 'expected a message ("{") since no ":" follows the field name, got 1'],
    ['missing value', 'a { b: }', 1, 8, 'a.b', 'expected a value, got "}"'],
    ['value at end of input', 'a:', 1, 3, 'a', 'expected a value, got end of input'],
    ['unclosed message', 'dynamic_batching {\n  x: 1\n', 3, 1, 'dynamic_batching', 'expected "}" to close the "{" at line 1, column 18, got end of input'],
    ['mismatched closer', 'a { b: 1 >', 1, 10, 'a', 'expected a field name or "}", got ">"'],
    ['stray closer at top level', 'a: 1 }', 1, 6, '', 'expected a field name, got "}"'],
    ['field name that is a string', '"a": 1', 1, 1, '', 'expected a field name, got the string "a"'],
    ['list without comma', 'x: [1 2]', 1, 7, 'x', 'expected "," or "]" in the list, got 2'],
    ['trailing comma in list', 'x: [1, ]', 1, 8, 'x[1]', 'expected a value, got "]"'],
    ['nested list', 'x: [[1]]', 1, 5, 'x[0]', 'expected a value, got "[" (lists cannot be nested)'],
    ['minus before a string', 'x: - "a"', 1, 6, 'x', 'expected a number after "-", got the string "a"'],
    ['value in list item', 'g [ { c: } ]', 1, 10, 'g[0].c', 'expected a value, got "}"'],
  ];
  it.each(cases)('%s', (_name, text, line, column, fieldPath, reason) => {
    const error = syntaxError(text);
    expect(error.reason).toBe(reason);
    expect(error.field).toBe(fieldPath);
    expect({ line: error.line, column: error.column }).toEqual({ line, column });
    expect(error.message).toBe(`${line}:${column}: ${fieldPath ? `${fieldPath}: ` : ''}${reason}`);
    expect(error.name).toBe('PbtxtSyntaxError');
  });

  const lexical: [string, string, number, number, string][] = [
    ['unterminated string', 'a: "abc\nb: 1', 1, 4, 'unterminated string: expected a closing " on the same line'],
    ['unterminated string at end', "a: 'abc", 1, 4, "unterminated string: expected a closing ' on the same line"],
    ['unknown escape', 'a: "x\\q"', 1, 6, 'unknown escape \\q in string'],
    ['short \\u escape', 'a: "\\u12"', 1, 5, 'expected 4 hex digits after \\u'],
    ['\\x without digits', 'a: "\\xg"', 1, 5, 'expected hex digits after \\x'],
    ['octal escape above 255', 'a: "\\400"', 1, 5, 'octal escape \\400 is above \\377'],
    ['code point out of range', 'a: "\\U00110000"', 1, 5, '\\U00110000 is not a Unicode code point'],
    ['unexpected character', 'a: @', 1, 4, 'unexpected character "@"'],
    ['number glued to letters', 'a: 12abc', 1, 6, 'expected a space or punctuation after the number 12, got "a"'],
    ['hex prefix without digits', 'a: 0x', 1, 6, 'expected hex digits after "0x"'],
    ['two dots', 'a: 1.2.3', 1, 7, 'expected a space or punctuation after the number 1.2, got "."'],
  ];
  it.each(lexical)('%s', (_name, text, line, column, reason) => {
    const error = syntaxError(text);
    expect(error.reason).toBe(reason);
    expect({ line: error.line, column: error.column }).toEqual({ line, column });
    expect(error.message).toBe(`${line}:${column}: ${reason}`);
  });

  it('counts columns after multi-line comments and strings', () => {
    const error = syntaxError('# one\n# two "\nname: "x"   oops 3\n');
    expect({ line: error.line, column: error.column }).toEqual({ line: 3, column: 18 });
    expect(error.reason).toBe('expected ":" or "{" after the field name "oops", got 3');
  });
});
