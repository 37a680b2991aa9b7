// The median of a bench's rounds: each figure over rounds measured in turn,
// which this shared machine's drift between series needs. Off the hot path:
// it filters a copy and takes core/median.ts's median of it.
import { medianOf } from '../../core/median.js';

/** The median of the finite values of `xs`; NaN when there are none. */
export function median(xs: readonly number[]): number {
  const s = xs.filter(Number.isFinite);
  return s.length === 0 ? NaN : medianOf(s, s.length, new Float64Array(s.length));
}
