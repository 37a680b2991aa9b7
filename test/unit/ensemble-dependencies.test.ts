import { describe, expect, it } from 'vitest';
import { type StepsOf, withDependents, withSteps } from '../../gateway/repository/ensemble-dependencies.js';

// pipeline: add_sub → identity; solo: identity; outer: pipeline → mlp (an ensemble of an ensemble); loop_a ↔ loop_b.
const STEPS: Record<string, string[]> = {
  pipeline: ['add_sub', 'identity'],
  solo: ['identity'],
  outer: ['pipeline', 'mlp'],
  loop_a: ['loop_b'],
  loop_b: ['loop_a'],
};
const stepsOf: StepsOf = (m) => STEPS[m] ?? [];

describe('withSteps', () => {
  it('puts each model after the steps it needs, once each', () => {
    expect(withSteps(['outer', 'solo'], stepsOf)).toEqual(['add_sub', 'identity', 'pipeline', 'mlp', 'outer', 'solo']);
    expect(withSteps(['add_sub'], stepsOf)).toEqual(['add_sub']);
  });

  it('cuts a cycle where it closes', () => {
    expect(withSteps(['loop_a'], stepsOf)).toEqual(['loop_b', 'loop_a']);
  });
});

describe('withDependents', () => {
  const all = new Set(['pipeline', 'solo', 'outer', 'add_sub', 'identity', 'mlp']);

  it('unloads the steps loaded only as dependencies that nothing else loaded uses', () => {
    const loaded = new Set(['pipeline', 'add_sub', 'identity']);
    expect(withDependents('pipeline', stepsOf, loaded, new Set(['add_sub', 'identity']))).toEqual(['pipeline', 'add_sub', 'identity']);
  });

  it('keeps a step another loaded ensemble uses, and one loaded explicitly', () => {
    const loaded = new Set(['pipeline', 'solo', 'add_sub', 'identity']);
    expect(withDependents('pipeline', stepsOf, loaded, new Set(['add_sub', 'identity']))).toEqual(['pipeline', 'add_sub']);
    expect(withDependents('pipeline', stepsOf, new Set(['pipeline', 'add_sub', 'identity']), new Set(['identity']))).toEqual(['pipeline', 'identity']);
  });

  it('follows an ensemble step down, counting only users that stay loaded', () => {
    expect(withDependents('outer', stepsOf, all, new Set(['pipeline', 'mlp', 'add_sub']))).toEqual(['outer', 'pipeline', 'mlp', 'add_sub']);
    // identity is dependency-only too, but solo still uses it.
    expect(withDependents('outer', stepsOf, all, new Set(['pipeline', 'mlp', 'add_sub', 'identity']))).toEqual(['outer', 'pipeline', 'mlp', 'add_sub']);
  });

  it('unloads a step once a later step that used it goes too', () => {
    // shared is a step of both outer2 and inner; inner goes with outer2, so shared does.
    const steps: StepsOf = (m) => ({ outer2: ['shared', 'inner'], inner: ['shared'] })[m] ?? [];
    expect(withDependents('outer2', steps, new Set(['outer2', 'inner', 'shared']), new Set(['inner', 'shared']))).toEqual(['outer2', 'inner', 'shared']);
  });

  it('leaves a model that is not an ensemble, or a step not loaded, alone', () => {
    expect(withDependents('add_sub', stepsOf, all, new Set(['identity']))).toEqual(['add_sub']);
    expect(withDependents('pipeline', stepsOf, new Set(['pipeline']), new Set(['add_sub', 'identity']))).toEqual(['pipeline']);
  });
});
