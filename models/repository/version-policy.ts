import { type ModelVersionPolicy } from '../../proto/gen/model_config.js';

export interface VersionSelection {
  /** Versions to serve, ascending. */
  readonly selected: readonly number[];
  /** Versions `specific` names that have no directory. */
  readonly missing: readonly number[];
}

/**
 * Which of the version directories found on disk a version_policy serves.
 * No policy (or an empty one) is Triton's default: the latest version.
 */
export function selectVersions(policy: ModelVersionPolicy | undefined, available: readonly number[]): VersionSelection {
  const sorted = [...new Set(available)].sort((a, b) => a - b);
  const choice = policy?.policyChoice;
  switch (choice?.$case) {
    case 'all':
      return { selected: sorted, missing: [] };
    case 'specific': {
      const wanted = [...new Set(choice.value.versions.map(Number))].sort((a, b) => a - b);
      return {
        selected: wanted.filter((v) => sorted.includes(v)),
        missing: wanted.filter((v) => !sorted.includes(v)),
      };
    }
    case 'latest':
    case undefined: {
      const count = choice ? Math.max(choice.value.numVersions, 1) : 1;
      return { selected: sorted.slice(Math.max(sorted.length - count, 0)), missing: [] };
    }
  }
}
