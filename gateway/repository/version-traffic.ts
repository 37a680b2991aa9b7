// A canary rollout inside the server: `parameters { key: "version_traffic"
// value { string_value: "1:90,2:10" } }` in a model's config.pbtxt shares
// the requests that name no version among its versions by weight, instead of
// sending them all to the latest. Requests that name a version still get it.
// The choice is a smooth weighted round robin (nginx's): over each cycle of
// sum(weights) requests every version gets exactly its weight, interleaved,
// so a 10 % canary sees every tenth request rather than runs of them.
import { type ModelConfig } from '../../proto/gen/model_config.js';

export const VERSION_TRAFFIC = 'version_traffic';

/** One version's share: `weight` of every sum(weights) requests. */
export interface VersionWeight {
  readonly version: number;
  readonly weight: number;
}

/**
 * The config's version_traffic, or undefined when it has none. Throws
 * RangeError (the loader names the model and field) on a malformed value.
 */
export function versionTrafficOf(config: Pick<ModelConfig, 'parameters'>): readonly VersionWeight[] | undefined {
  const raw = config.parameters[VERSION_TRAFFIC]?.stringValue;
  if (raw === undefined) return undefined;
  const bad = (why: string): never => {
    throw new RangeError(`parameter '${VERSION_TRAFFIC}': expected VERSION:WEIGHT pairs separated by commas, e.g. "1:90,2:10" (${why}), got '${raw}'`);
  };
  const weights: VersionWeight[] = [];
  for (const part of raw.split(',')) {
    const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(part);
    if (!m) bad(`'${part.trim()}' is not VERSION:WEIGHT with whole numbers`);
    const version = Number(m?.[1]);
    const weight = Number(m?.[2]);
    if (!Number.isSafeInteger(version) || !Number.isSafeInteger(weight) || weight > 1_000_000) bad(`'${part.trim()}' is out of range (weights up to 1000000)`);
    if (weights.some((w) => w.version === version)) bad(`version ${version} is listed twice`);
    weights.push({ version, weight });
  }
  if (!weights.some((w) => w.weight > 0)) bad('every weight is 0');
  return weights;
}

/**
 * Smooth weighted round robin over the versions of one model. `pick` is
 * given the versions that can serve now; the listed ones among them share
 * the requests by weight (a listed version that cannot serve gives its share
 * to the others), and undefined comes back when none of them can: the caller
 * then serves the request as if there were no version_traffic.
 */
export class VersionTraffic {
  readonly weights: readonly VersionWeight[];
  /** nginx's current weight per version. */
  readonly #current = new Map<number, number>();

  constructor(weights: readonly VersionWeight[]) {
    this.weights = weights;
  }

  pick(serving: (version: number) => boolean): number | undefined {
    let total = 0;
    let best: VersionWeight | undefined;
    let bestCurrent = -Infinity;
    for (const w of this.weights) {
      if (w.weight === 0 || !serving(w.version)) continue;
      total += w.weight;
      const current = (this.#current.get(w.version) ?? 0) + w.weight;
      this.#current.set(w.version, current);
      if (current > bestCurrent) {
        best = w;
        bestCurrent = current;
      }
    }
    if (best === undefined) return undefined;
    this.#current.set(best.version, bestCurrent - total);
    return best.version;
  }
}
