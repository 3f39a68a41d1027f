// The statistics every report uses, in one place: simple-statistics for the figures (median
// averages the two middle values of an even count; quantiles interpolate, R's type 7), and
// the two ways a report writes a percentage.
import { geometricMean, mean, median, quantileSorted } from "simple-statistics";

export { geometricMean, mean, median };

/**
 * The p-th percentile (0-100) of values already sorted ascending; NaN when there are none.
 * Takes a typed array too (the benchmark keeps every latency in a Float64Array).
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  // quantileSorted reads only length and indices, which a typed array has.
  return quantileSorted(sorted as readonly number[], p / 100);
}

/** `n` as a share of `of`: "12.5%" (two decimals from 1000 up), "-" when `of` is 0. */
export function percentOf(n: number, of: number): string {
  if (of === 0) return "-";
  return `${((100 * n) / of).toFixed(of >= 1000 ? 2 : 1)}%`;
}

/** The change from `from` to `to`, signed: "+4.2%", "-0.8%". */
export function percentChange(from: number, to: number): string {
  return `${to >= from ? "+" : ""}${(((to - from) / from) * 100).toFixed(1)}%`;
}
