// Expert routing telemetry (issue 13): the engine counts the (token, expert) pairs each expert of each MoE layer
// receives (Model::routing_counts, read by model.routing()). The oracle is transformers' own router modules on the
// fixture prompts (goldens/routing.json, test/fixtures/make_routing_goldens.py): the counts must be the same,
// exactly — a pair is an integer; only a near-tie between the k-th and (k+1)-th expert (gap < 1e-4 in softmax
// probability, counted per layer by the script) may move one pair from one expert to the other.
// Training: each training token is counted once (backward's checkpointed recompute routes it again and must not
// count), validation forwards not at all; the counters reset on request.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadModel } from "../../electron/engine/engine.js";
import { GOLDENS, modelDir } from "./fixtures.js";

interface RoutingGolden {
  prompt_ids: number[];
  layers: { layer: number; top_k: number; counts: number[]; min_gap: number; near_ties: number }[];
}
const goldens = JSON.parse(readFileSync(join(GOLDENS, "routing.json"), "utf8")) as Record<string, RoutingGolden>;

describe("routing counts match transformers' routers", () => {
  for (const [name, g] of Object.entries(goldens)) {
    it(name, async () => {
      const m = await loadModel(modelDir(name), { threads: 1 });
      try {
        expect(m.native.routing().layers.every((l) => l.counts.every((c) => c === 0))).toBe(true);  // nothing ran yet
        await m.logits(g.prompt_ids);  // one forward of the whole prompt
        const r = m.native.routing();
        expect(r.layers.map((l) => l.layer)).toEqual(g.layers.map((l) => l.layer));
        for (const [i, gl] of g.layers.entries()) {
          const ours = r.layers[i];
          expect(ours.topK).toBe(gl.top_k);
          expect(ours.counts.reduce((a, b) => a + b, 0)).toBe(g.prompt_ids.length * gl.top_k);
          const l1 = ours.counts.reduce((a, c, e) => a + Math.abs(c - gl.counts[e]), 0);
          expect(l1, `layer ${gl.layer}: ours ${ours.counts} vs transformers ${gl.counts}`).toBeLessThanOrEqual(2 * gl.near_ties);
        }
        // reset: this snapshot, then zeros; a second forward counts again from there
        expect(m.native.routing({ reset: true })).toEqual(r);
        expect(m.native.routing().layers.every((l) => l.counts.every((c) => c === 0))).toBe(true);
      } finally {
        m.close();
      }
    }, 60_000);
  }
});

describe("routing counts in chat and training", () => {
  it("a chat session's prefill and decode tokens are each counted once; a dense model lists no layers", async () => {
    const m = await loadModel(modelDir("qwen3_moe"), { threads: 1 });
    try {
      const s = m.chat();
      const gen = s.generate({ ids: goldens.qwen3_moe.prompt_ids.slice(0, 10) }, { maxTokens: 5, eosIds: [] });
      for await (const _ of gen) { /* drain */ }
      const res = await gen.result;
      // the prompt in one prefill, then every sampled id is run so the cache holds it (cachedIds = prompt + completion)
      const fed = res.promptIds.length + res.ids.length;
      for (const l of m.native.routing().layers) expect(l.counts.reduce((a, b) => a + b, 0)).toBe(fed * l.topK);
      s.dispose();
    } finally {
      m.close();
    }
    const dense = await loadModel(modelDir("llama"), { threads: 1 });
    try {
      expect(dense.native.routing()).toEqual({ topK: 0, layers: [] });
    } finally {
      dense.close();
    }
  }, 60_000);

  it("a training step counts its tokens once (not backward's recompute); evaluation is not counted", async () => {
    const m = await loadModel(modelDir("mixtral"), { threads: 1 });
    try {
      const t = m.native.createTrainer({ max_steps: 3, lora_rank: 4, lora_alpha: 8, max_seq_length: 32, learning_rate: 1e-3, seed: 1 });
      const ids = Array.from({ length: 12 }, (_, i) => (i * 37) % m.info.vocabSize);
      const seq = { ids, labels: ids.map((x, i) => (i < 4 ? -100 : x)) };
      await t.step([seq, seq]);
      const after = m.native.routing();
      for (const l of after.layers) expect(l.counts.reduce((a, b) => a + b, 0)).toBe(24 * l.topK);
      await t.evaluate([seq]);
      expect(m.native.routing()).toEqual(after);
      t.dispose();
    } finally {
      m.close();
    }
  }, 60_000);
});
