import { describe, expect, it } from 'vitest';
import { notFound } from '../../core/errors.js';
import { runInference } from '../../gateway/inference/infer-pipeline.js';
import { type ModelManager } from '../../gateway/repository/model-manager.js';

// runInference is a plain function on its usual path (no async wrapper per
// request): whatever fails before the request is queued must still reach
// its caller as a rejected promise, never as a synchronous throw, which a
// caller chaining .then() would not catch.

const request = { modelName: 'nope', modelVersion: '', id: '', inputs: [], outputs: [], parameters: {} };

describe('runInference', () => {
  it('rejects, never throws, when the model cannot be routed', async () => {
    const models = {
      onDemand: false,
      route: (name: string): never => {
        throw notFound(`model '${name}' is not ready`);
      },
    } as unknown as ModelManager;
    let result: Promise<unknown> | undefined;
    expect(() => {
      result = runInference(models, request, { signal: undefined as never, deadline: Infinity });
    }).not.toThrow();
    await expect(result).rejects.toThrow(/model 'nope' is not ready/);
  });

  it('rejects, never throws, on demand too, and releases a held version when its request fails', async () => {
    const failing = {
      onDemand: true,
      routedVersion: (name: string): never => {
        throw notFound(`model '${name}' is not in the repository`);
      },
    } as unknown as ModelManager;
    let result: Promise<unknown> | undefined;
    expect(() => {
      result = runInference(failing, request, { signal: undefined as never, deadline: Infinity });
    }).not.toThrow();
    await expect(result).rejects.toThrow(/model 'nope' is not in the repository/);
    // Held, then failed (a version with no scheduler): released all the same, once.
    let released = 0;
    const held = {
      onDemand: true,
      routedVersion: () => '1',
      acquire: () => Promise.resolve({ version: { key: 'nope/1', serving: undefined }, release: () => void released++ }),
    } as unknown as ModelManager;
    await expect(runInference(held, request, { signal: undefined as never, deadline: Infinity })).rejects.toThrow(/has no scheduler/);
    expect(released).toBe(1);
    // Held at once (a version already loaded: acquire answers without a promise): released the same.
    const heldNow = {
      onDemand: true,
      routedVersion: () => '1',
      acquire: () => ({ version: { key: 'nope/1', serving: undefined }, release: () => void released++ }),
    } as unknown as ModelManager;
    await expect(runInference(heldNow, request, { signal: undefined as never, deadline: Infinity })).rejects.toThrow(/has no scheduler/);
    expect(released).toBe(2);
  });
});
