// Expert routing telemetry as the UI reads it (pure; tested in test/unit/routing.test.ts): each MoE layer's counts
// (the (token, expert) pairs each expert received, electron/contract.ts RoutingLayer) as shares, and the load-balance
// figure a user checks to see whether finetuning collapsed routing.
//
// Load balance: the coefficient of variation of the experts' loads, CV = σ / μ over the E counts of a layer
// (population σ). A perfectly even router has CV 0; one that sends everything to k of E experts has
// CV = sqrt(E / k − 1) (k experts at N/k, the rest at 0) — 1.73 for top-1 of 4, 2.65 for top-2 of 16. Switch
// Transformer's auxiliary loss is E·Σ f_e·P_e, which needs router probabilities; counts are what an engine can keep
// for free, and CV over counts is the figure the MoE literature reports for them.
import type { RoutingLayer, RunRouting } from "../../electron/contract.js";

export interface LayerBalance {
  layer: number;
  /** Σ counts: tokens · topK. */
  pairs: number;
  /** counts / pairs (all 0 when nothing was routed). */
  shares: number[];
  /** σ / μ of the counts; null when nothing was routed. */
  cv: number | null;
  /** The busiest expert's share, and how many experts received nothing. */
  maxShare: number;
  idle: number;
}

export function layerBalance(l: RoutingLayer): LayerBalance {
  const E = l.counts.length;
  const pairs = l.counts.reduce((a, b) => a + b, 0);
  if (pairs === 0 || E === 0) return { layer: l.layer, pairs, shares: l.counts.map(() => 0), cv: null, maxShare: 0, idle: E };
  const mean = pairs / E;
  const variance = l.counts.reduce((a, c) => a + (c - mean) * (c - mean), 0) / E;
  return {
    layer: l.layer,
    pairs,
    shares: l.counts.map((c) => c / pairs),
    cv: Math.sqrt(variance) / mean,
    maxShare: Math.max(...l.counts) / pairs,
    idle: l.counts.filter((c) => c === 0).length,
  };
}

/** Per layer, and the mean CV over the layers that routed anything (null: none did). */
export function routingBalance(layers: readonly RoutingLayer[]): { layers: LayerBalance[]; meanCv: number | null; tokens: number } {
  const out = layers.map(layerBalance);
  const cvs = out.flatMap((l) => (l.cv === null ? [] : [l.cv]));
  const first = layers.find((l) => l.counts.some((c) => c > 0));
  return {
    layers: out,
    meanCv: cvs.length ? cvs.reduce((a, b) => a + b, 0) / cvs.length : null,
    tokens: first ? first.counts.reduce((a, b) => a + b, 0) / first.topK : 0,
  };
}

/** Several windows added up (a run's whole routing, or a range of it), layer by layer. */
export function sumWindows(windows: readonly RunRouting[]): RoutingLayer[] {
  const by = new Map<number, RoutingLayer>();
  for (const w of windows)
    for (const l of w.layers) {
      const acc = by.get(l.layer);
      if (!acc) by.set(l.layer, { layer: l.layer, topK: l.topK, counts: [...l.counts] });
      else l.counts.forEach((c, e) => (acc.counts[e] = (acc.counts[e] ?? 0) + c));
    }
  return [...by.values()].sort((a, b) => a.layer - b.layer);
}

/** Windows by their end step: one from an event and the same from finetune.get are one; a resume's replaces. */
export function mergeWindows(windows: readonly RunRouting[], incoming: readonly RunRouting[]): RunRouting[] {
  if (!incoming.length) return windows as RunRouting[];
  const by = new Map<number, RunRouting>();
  for (const w of windows) by.set(w.step, w);
  for (const w of incoming) by.set(w.step, w);
  return [...by.values()].sort((a, b) => a.step - b.step);
}
