/**
 * Summary statistics of measured samples (timings, cycle counts), one rule everywhere so that a
 * "median" in one bench means what it means in another.
 */

/**
 * The upper median of `xs`: element ⌊n / 2⌋ of the values sorted ascending (the usual median for
 * odd n, the larger of the two middle values for even n); NaN when `xs` is empty. `xs` is not
 * modified. The upper median rather than the mean of the two middle values because it is always
 * a sample that was actually measured, and because it is the rule every kernel timer here used
 * before this helper existed, so the recorded benchmark figures keep their meaning.
 */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}
