// Assistant-only loss spans (electron/train/data.ts: prefix renders P_i / Q_i, tokens compared as prefixes of the
// whole conversation) on every fixture's own chat template: a two-turn conversation must give exactly two runs of
// labelled tokens, each decoding to its reply (plus only the template's end-of-turn / think markup), never a user
// message or the assistant header; loss_on "all" labels every token; truncation cuts and counts.
import { readdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadModel, type LoadedModel } from "../../electron/engine/engine.js";
import { boundedText } from "../../electron/text/bounded-text.js";
import { prepareSamples } from "../../electron/train/data.js";
import { MODELS } from "./fixtures.js";

const names = readdirSync(MODELS).filter((n) => existsSync(join(MODELS, n, "config.json"))).sort();
afterAll(async () => { await boundedText().close(); });

const CONV = [
  { role: "user" as const, content: "First question here" },
  { role: "assistant" as const, content: "Alpha answer one" },
  { role: "user" as const, content: "Second question now" },
  { role: "assistant" as const, content: "Bravo answer two" },
];

function runs(labels: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (let t = 0; t < labels.length; t++) {
    if (labels[t] === -100) continue;
    if (out.length && out[out.length - 1][1] === t) out[out.length - 1][1] = t + 1;
    else out.push([t, t + 1]);
  }
  return out;
}

describe.each(names)("assistant spans: %s", (name) => {
  it("two replies, two labelled runs, nothing else", async () => {
    const m: LoadedModel = await loadModel(join(MODELS, name), { threads: 1 });
    try {
      expect(m.template, "every fixture has a chat template").not.toBeNull();
      const r = await prepareSamples(m, [CONV], { maxLen: 4096, lossOn: "assistant" });
      expect(r.unaligned).toBe(0);
      expect(r.samples.length).toBe(1);
      const { ids, labels } = r.samples[0];
      const rs = runs(labels);
      expect(rs.length).toBe(2);
      const text = rs.map(([a, b]) => m.tokenizer.decode(ids.slice(a, b), { skipSpecialTokens: true }));
      expect(text[0]).toContain("Alpha answer one");
      expect(text[1]).toContain("Bravo answer two");
      for (const t of text) {
        expect(t).not.toMatch(/question|assistant/i);
        // what is left besides the reply is markup only (think tags, whitespace)
        expect(t.replace(/Alpha answer one|Bravo answer two/, "").replace(/<\/?think>/g, "").trim()).toBe("");
      }
      for (let t = 0; t < ids.length; t++) if (labels[t] !== -100) expect(labels[t]).toBe(ids[t]);
      const all = await prepareSamples(m, [CONV], { maxLen: 4096, lossOn: "all" });
      expect(all.samples[0].labels).toEqual(all.samples[0].ids);
      const cut = await prepareSamples(m, [CONV], { maxLen: rs[1][0] + 2, lossOn: "assistant" });
      expect(cut.truncated).toBe(1);
      expect(cut.samples[0].ids.length).toBe(rs[1][0] + 2);
    } finally {
      m.close();
    }
  }, 60_000);
});
