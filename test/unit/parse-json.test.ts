import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, parseClientJson } from '../../gateway/parse-json.js';
import { expectInvalid } from '../helpers/expect-invalid.js';

const arrays = (depth: number): string => `${'['.repeat(depth)}1${']'.repeat(depth)}`;
const objects = (depth: number): string => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

describe('parseClientJson', () => {
  it('parses JSON nested up to the limit', () => {
    expect(parseClientJson(Buffer.from('{"inputs":[{"data":[[1,2],[3,4]]}]}'), 'the request JSON')).toEqual({ inputs: [{ data: [[1, 2], [3, 4]] }] });
    expect(() => parseClientJson(arrays(MAX_JSON_DEPTH), 'x')).not.toThrow();
    expect(() => parseClientJson(objects(MAX_JSON_DEPTH), 'x')).not.toThrow();
  });

  it.each([
    ['arrays', arrays(MAX_JSON_DEPTH + 1)],
    ['objects', objects(MAX_JSON_DEPTH + 1)],
    ['100,000 arrays', arrays(100_000)],
    ['100,000 objects', objects(100_000)],
    ['a deep branch after a wide one', `[${new Array(10_000).fill(0).join(',')},${arrays(5_000)}]`],
  ])('refuses %s nested too deep, without recursing', (_, text) => {
    expectInvalid(() => parseClientJson(Buffer.from(text), 'the request JSON'), `the request JSON nests deeper than ${MAX_JSON_DEPTH} levels`);
  });

  it('refuses bytes that are not UTF-8 instead of replacing them', () => {
    const body = Buffer.concat([Buffer.from('{"data":["a'), Buffer.from([0xff]), Buffer.from('"]}')]);
    expectInvalid(() => parseClientJson(body, 'the request JSON'), 'the request JSON is not valid UTF-8');
  });

  it('says why text is not JSON', () => {
    expect(() => parseClientJson(Buffer.from('{"inputs": ['), 'the request JSON')).toThrow(/^failed to parse the request JSON: /);
  });
});
