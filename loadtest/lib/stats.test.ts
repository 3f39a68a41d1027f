import { describe, expect, it } from "vitest";
import { geometricMean, mean, median, percentChange, percentile, percentOf } from "./stats.ts";

describe("stats", () => {
  it("takes the median as the middle value, or the mean of the two middle ones", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([10, 2])).toBe(6);
  });

  it("takes means, arithmetic and geometric", () => {
    expect(mean([1, 2, 6])).toBe(3);
    expect(geometricMean([1, 4])).toBeCloseTo(2, 12);
  });

  it("interpolates percentiles of sorted values, typed arrays too, NaN for none", () => {
    const xs = Float64Array.from({ length: 101 }, (_, i) => i);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile([1, 2], 50)).toBe(1.5);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([1, 5, 9], 100)).toBe(9);
    expect(percentile(new Float64Array(0), 50)).toBeNaN();
  });

  it("writes shares and changes as percentages", () => {
    expect(percentOf(1, 8)).toBe("12.5%");
    expect(percentOf(1, 3000)).toBe("0.03%");
    expect(percentOf(0, 0)).toBe("-");
    expect(percentChange(100, 104.2)).toBe("+4.2%");
    expect(percentChange(100, 99.2)).toBe("-0.8%");
    expect(percentChange(5, 5)).toBe("+0.0%");
  });
});
