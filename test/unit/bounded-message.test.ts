import { describe, expect, it } from 'vitest';
import { boundedMessage, MAX_MESSAGE_BYTES } from '../../core/errors.js';

/** True when the string survives UTF-8 unchanged: no surrogate was split. */
const wellFormed = (s: string): boolean => Buffer.from(s, 'utf8').toString('utf8') === s;

describe('boundedMessage', () => {
  it('leaves ordinary messages alone', () => {
    const m = "model 'identity_fp32': input 'INPUT0': expected shape [-1,16], got [1,15]";
    expect(boundedMessage(m)).toBe(m);
    const exact = 'x'.repeat(MAX_MESSAGE_BYTES);
    expect(boundedMessage(exact)).toBe(exact);
  });

  it('keeps the head and the tail of a message that echoes a huge name', () => {
    const m = `model '${'x'.repeat(300_000)}' is not in the repository`;
    const b = boundedMessage(m);
    expect(Buffer.byteLength(b)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(b).toMatch(/^model 'x+ … \[\d+ bytes cut\] … x+' is not in the repository$/);
    const cut = Number(/\[(\d+) bytes cut\]/.exec(b)?.[1]);
    expect(Buffer.byteLength(b.replace(/ … \[\d+ bytes cut\] … /, '')) + cut).toBe(Buffer.byteLength(m));
  });

  it.each([
    ['two-byte', 'é'],
    ['three-byte', '界'],
    ['surrogate pairs', '😀'],
    ['mixed', 'aé界😀'],
  ])('cuts %s characters on whole code points', (_, unit) => {
    const m = `input '${unit.repeat(50_000)}' is not an input of the model`;
    const b = boundedMessage(m);
    expect(Buffer.byteLength(b)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(wellFormed(b)).toBe(true);
    expect(b.endsWith("' is not an input of the model")).toBe(true);
  });
});
