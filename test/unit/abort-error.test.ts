import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { isServingError } from '../../core/errors.js';
import { abortError } from '../../gateway/scheduling/execution.js';

describe('abortError: why a request’s signal ended it', () => {
  const code = (e: unknown): number | undefined => (isServingError(e) ? e.code : undefined);

  it('is the deadline’s from 1 ms before it on (timers count in whole ms and fire up to 1 ms early)', () => {
    for (const now of [999, 999.5, 1_000, 1_200]) {
      const e = abortError('m/1', now, 1_000, 'before the request ran');
      expect(code(e)).toBe(status.DEADLINE_EXCEEDED);
      expect(e.message).toBe("model 'm/1': deadline exceeded before the request ran");
    }
  });

  it('is the client’s cancel earlier, and always without a deadline', () => {
    const early = abortError('m/1', 998.9, 1_000, 'while the model loaded on demand');
    expect(code(early)).toBe(status.CANCELLED);
    expect(early.message).toBe("model 'm/1': request cancelled by the client while the model loaded on demand");
    expect(code(abortError('m/1', 5e12, Infinity, 'before the request ran'))).toBe(status.CANCELLED);
  });
});
