import { describe, expect, it } from 'vitest';
import { answerEncoding } from '../../gateway/http/answer-encoding.js';

describe('answerEncoding', () => {
  it.each([
    [undefined, undefined],
    ['', undefined],
    ['identity', undefined],
    ['br', undefined],
    ['gzip', 'gzip'],
    ['GZIP', 'gzip'],
    ['x-gzip', 'gzip'],
    ['deflate', 'deflate'],
    ['gzip, deflate', 'gzip'],
    ['deflate, gzip', 'gzip'],
    ['gzip;q=0.5, deflate', 'deflate'],
    ['gzip;q=0, deflate;q=0', undefined],
    ['br, gzip;q=0', undefined],
    ['*', 'gzip'],
    ['*;q=0', undefined],
    ['*;q=0.5, gzip;q=0', 'deflate'],
    ['gzip;q=abc', undefined],
    [' gzip ; q=0.8 , deflate ; q=0.9 ', 'deflate'],
  ])('%s → %s', (header, expected) => {
    expect(answerEncoding(header)).toBe(expected);
  });
});
