import { status } from '@grpc/grpc-js';
import { expect } from 'vitest';
import { ServingError } from '../../core/errors.js';

/** `fn` must throw a ServingError with INVALID_ARGUMENT and exactly `message`. */
export function expectInvalid(fn: () => unknown, message: string): void {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ServingError);
  expect((error as ServingError).code).toBe(status.INVALID_ARGUMENT);
  expect((error as ServingError).message).toBe(message);
}
