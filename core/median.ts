// The median of a handful of numbers, sorted in a caller's scratch array:
// the batching estimates take one on every execution (the cost model) or
// decision (the arrival gaps), so no array is allocated for it.

/** The median of the first `n` of `xs` (n ≥ 1), insertion-sorted into `scratch` (at least n long). */
export function medianOf(xs: ArrayLike<number>, n: number, scratch: Float64Array): number {
  for (let i = 0; i < n; i++) {
    const x = xs[i] as number;
    let j = i;
    for (; j > 0 && (scratch[j - 1] as number) > x; j--) scratch[j] = scratch[j - 1] as number;
    scratch[j] = x;
  }
  const mid = n >> 1;
  return n % 2 === 1 ? (scratch[mid] as number) : ((scratch[mid - 1] as number) + (scratch[mid] as number)) / 2;
}
