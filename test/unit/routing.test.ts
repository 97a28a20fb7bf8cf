// The routing heatmap's numbers (renderer/src/routing.ts): shares, the coefficient of variation and its closed forms,
// windows added up and merged by their end step.
import { describe, expect, it } from "vitest";
import { layerBalance, mergeWindows, routingBalance, sumWindows } from "../../renderer/src/routing.js";

describe("routing balance", () => {
  it("an even router has CV 0; one that sends every token to k of E experts has CV sqrt(E/k - 1)", () => {
    expect(layerBalance({ layer: 0, topK: 2, counts: [5, 5, 5, 5] })).toMatchObject({ pairs: 20, cv: 0, maxShare: 0.25, idle: 0 });
    const collapsed = layerBalance({ layer: 1, topK: 2, counts: [0, 50, 0, 0, 0, 0, 0, 50] });
    expect(collapsed.cv).toBeCloseTo(Math.sqrt(8 / 2 - 1), 12);
    expect(collapsed).toMatchObject({ maxShare: 0.5, idle: 6 });
    expect(collapsed.shares[1]).toBe(0.5);
    // population σ / μ by hand: counts 1, 3 → μ 2, σ 1
    expect(layerBalance({ layer: 2, topK: 1, counts: [1, 3] }).cv).toBe(0.5);
  });

  it("nothing routed: CV null, not NaN; the mean skips such layers; tokens = Σ counts / topK", () => {
    expect(layerBalance({ layer: 0, topK: 2, counts: [0, 0, 0] })).toMatchObject({ pairs: 0, cv: null, idle: 3 });
    const b = routingBalance([{ layer: 0, topK: 2, counts: [0, 0] }, { layer: 1, topK: 2, counts: [4, 4] }, { layer: 2, topK: 2, counts: [2, 6] }]);
    expect(b.meanCv).toBeCloseTo((0 + 0.5) / 2, 12);
    expect(b.tokens).toBe(4);
    expect(routingBalance([]).meanCv).toBeNull();
  });

  it("windows add up layer by layer, and merge by end step (a resume's window replaces the one it repeats)", () => {
    const w = (step: number, fromStep: number, counts: number[]) => ({ step, fromStep, topK: 1, layers: [{ layer: 3, topK: 1, counts }] });
    expect(sumWindows([w(2, 0, [1, 2]), w(4, 2, [3, 0])])).toEqual([{ layer: 3, topK: 1, counts: [4, 2] }]);
    const merged = mergeWindows([w(2, 0, [1, 1]), w(4, 2, [9, 9])], [w(4, 2, [2, 2]), w(6, 4, [1, 0])]);
    expect(merged.map((x) => [x.step, x.layers[0].counts])).toEqual([[2, [1, 1]], [4, [2, 2]], [6, [1, 0]]]);
  });
});
