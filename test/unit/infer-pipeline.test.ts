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
});
