// The median of a bench's rounds: each figure over rounds measured in turn,
// which this shared machine's drift between series needs. Off the hot path,
// so it sorts a copy (core/median.ts is the allocation-free one).

/** The median of the finite values of `xs`; NaN when there are none. */
export function median(xs: readonly number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
