// Triton's rules for the models an ensemble depends on (its steps, and
// theirs when a step is an ensemble), pure. Loading an ensemble loads the
// steps that are not loaded, as dependencies; unloading it with
// `unload_dependents` also unloads the steps that were loaded only as
// dependencies and that no other loaded ensemble still uses
// (model_repository_manager.cc, UpdateDependencyGraph).

/** The models an ensemble's steps name; empty for a model that is not an ensemble. */
export type StepsOf = (model: string) => readonly string[];

/**
 * The models `names` need, each after the models it needs (steps before the
 * ensembles that use them), `names` included. A cycle between ensembles is
 * cut where it closes: the ensemble's own load reports it.
 */
export function withSteps(names: Iterable<string>, stepsOf: StepsOf): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    for (const step of stepsOf(name)) visit(step);
    order.push(name);
  };
  for (const name of names) visit(name);
  return order;
}

/**
 * What unloading `name` with `unload_dependents` unloads: `name`, then each
 * of its steps (and theirs) that was loaded only as a dependency and that
 * no loaded ensemble outside this unload still uses. `loaded`: the models
 * loaded now (ensembles among them count as users of their steps).
 */
export function withDependents(name: string, stepsOf: StepsOf, loaded: ReadonlySet<string>, dependencyOnly: ReadonlySet<string>): string[] {
  const unloading = [name];
  const gone = new Set(unloading);
  for (let i = 0; i < unloading.length; i++) {
    for (const step of stepsOf(unloading[i] as string)) {
      if (gone.has(step) || !dependencyOnly.has(step) || !loaded.has(step)) continue;
      const stillUsed = [...loaded].some((m) => !gone.has(m) && stepsOf(m).includes(step));
      if (stillUsed) continue;
      gone.add(step);
      unloading.push(step);
    }
  }
  return unloading;
}
