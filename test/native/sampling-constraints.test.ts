// The sampling controls the OpenAI API adds, through the real addon on fixture models:
//   * presence / frequency penalties and logit_bias: native greedy ids == a plain JS reference that takes the
//     addon's own logits (session.logits, full prefill each step) and applies OpenAI's formulas;
//   * the JSON-object constraint: every constrained reply is a oneOf prefix and then text JSON.parse reads as an
//     object once the generation says "eos"; the token bytes behind it come from text/token-bytes.ts;
//   * bad parameters are refused with the field's name.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type LoadedModel } from "../../electron/engine/engine.js";
import { MODELS } from "./fixtures.js";

let qwen: LoadedModel;
let mixtral: LoadedModel;
beforeAll(async () => {
  [qwen, mixtral] = await Promise.all([loadModel(join(MODELS, "qwen3_moe"), { threads: 1 }), loadModel(join(MODELS, "mixtral"), { threads: 1 })]);
});
afterAll(() => {
  qwen?.native.close();
  mixtral?.native.close();
});

/** Greedy, by hand: logits of the whole sequence each step, then OpenAI's penalties and bias on the last row. */
async function referenceGreedy(m: LoadedModel, prompt: number[], steps: number, presence: number, frequency: number, bias: Record<number, number>): Promise<number[]> {
  const s = m.native.createSession({ contextLength: 128 });
  const V = m.info.vocabSize;
  const ids = [...prompt];
  const out: number[] = [];
  for (let i = 0; i < steps; i++) {
    const all = await s.logits(ids);
    const l = Array.from(all.subarray((ids.length - 1) * V, ids.length * V));
    const count = new Map<number, number>();
    for (const id of out) count.set(id, (count.get(id) ?? 0) + 1);
    for (const [id, c] of count) l[id] -= c * frequency + presence;
    for (const [id, b] of Object.entries(bias)) l[Number(id)] += b;
    let best = 0;
    for (let j = 1; j < V; j++) if (l[j] > l[best]) best = j;
    out.push(best);
    ids.push(best);
  }
  s.dispose();
  return out;
}

describe("penalties and logit bias", () => {
  const prompt = [5, 17, 42, 99, 7, 7, 300];
  for (const [presence, frequency, bias] of [[0, 1.5, {}], [1.2, 0, {}], [0.4, 0.8, { 42: 3, 7: -100 }], [-1, 0, {}]] as Array<[number, number, Record<number, number>]>) {
    it(`presence ${presence}, frequency ${frequency}, bias ${JSON.stringify(bias)}: native == reference`, async () => {
      const want = await referenceGreedy(qwen, prompt, 12, presence, frequency, bias);
      const s = qwen.chat({ contextLength: 128 });
      const r = await s.generate({ ids: prompt }, { maxTokens: 12, temperature: 0, repetitionPenalty: 1, eosIds: [], presencePenalty: presence, frequencyPenalty: frequency, logitBias: bias }).result;
      expect(r.ids).toEqual(want);
    });
  }

  it("a penalty changes the greedy reply (the test above is not comparing two no-ops)", async () => {
    const s = qwen.chat({ contextLength: 128 });
    const a = await s.generate({ ids: prompt }, { maxTokens: 24, temperature: 0, repetitionPenalty: 1, eosIds: [] }).result;
    const b = await s.generate({ ids: prompt }, { maxTokens: 24, temperature: 0, repetitionPenalty: 1, eosIds: [], frequencyPenalty: 2 }).result;
    expect(b.ids).not.toEqual(a.ids);
    const banned = a.ids[0];
    const c = await s.generate({ ids: prompt }, { maxTokens: 24, temperature: 0, repetitionPenalty: 1, eosIds: [], logitBias: { [banned]: -100 } }).result;
    expect(c.ids).not.toContain(banned);
  });
});

describe("the JSON-object constraint", () => {
  for (const name of ["qwen3_moe", "mixtral"]) {
    it(`${name}: replies are a oneOf prefix, then one object`, async () => {
      const m = name === "qwen3_moe" ? qwen : mixtral;
      const oneOf = ['get_weather", "arguments": ', 'search", "arguments": '];
      const close = m.tokenizer.tokenToId("}")!;
      let complete = 0;
      for (let seed = 1; seed <= 8; seed++) {
        const s = m.chat({ contextLength: 256 });
        // a bias towards "}" so the random model closes its objects within the budget
        const r = await s.generate({ prompt: "call a tool" }, { maxTokens: 40, temperature: 1, seed, constraint: { jsonObject: true, oneOf }, logitBias: { [close]: 2 } }).result;
        const head = oneOf.find((p) => r.text.startsWith(p));
        expect(head, r.text).toBeDefined();
        const body = r.text.slice(head!.length);
        expect(body.startsWith("{"), r.text).toBe(true);
        if (r.stats.stopReason === "eos") {
          complete++;
          const v = JSON.parse(body);
          expect(typeof v === "object" && v !== null && !Array.isArray(v)).toBe(true);
        } else {
          expect(r.stats.stopReason).toBe("length");
        }
        s.dispose();
      }
      expect(complete).toBeGreaterThanOrEqual(4);
    });
  }

  it("greedy json_object without a prefix starts with the object and never emits a special token", async () => {
    const s = qwen.chat({ contextLength: 256 });
    const r = await s.generate({ prompt: "json" }, { maxTokens: 30, temperature: 0, constraint: { jsonObject: true }, skipSpecialTokens: false }).result;
    expect(r.text.startsWith("{")).toBe(true);
    for (const id of r.ids) expect(qwen.tokenizer.specialIds.has(id)).toBe(false);
  });

  it("refuses bad parameters, naming them", async () => {
    const s = qwen.native.createSession({ contextLength: 64 });
    const base = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0, maxTokens: 2, eosIds: [] };
    await expect(s.generate([1, 2], { ...base, presencePenalty: 3 }, () => {})).rejects.toThrow(/presencePenalty and params.frequencyPenalty must be in \[-2, 2\]/);
    await expect(s.generate([1, 2], { ...base, logitBias: { 99999: 1 } }, () => {})).rejects.toThrow(/logitBias: '99999' is not a token id/);
    await expect(s.generate([1, 2], { ...base, logitBias: { 3: 101 } }, () => {})).rejects.toThrow(/logitBias\[3\] must be a number in \[-100, 100\]/);
    await expect(s.generate([1, 2], { ...base, constraint: { jsonObject: true, oneOf: Array(65).fill("a") } }, () => {})).rejects.toThrow(/constraint.oneOf has more than 64/);
    await expect(s.generate([1, 2], { ...base, constraint: { jsonObject: false } as never }, () => {})).rejects.toThrow(/constraint.jsonObject must be true/);
    expect(() => qwen.native.setTokenBytes(new Uint8Array(4), new Uint32Array(3))).toThrow(/offsets has 3 entries, the vocabulary needs/);
    const off = new Uint32Array(qwen.info.vocabSize + 1);
    off[5] = 99;
    expect(() => qwen.native.setTokenBytes(new Uint8Array(4), off)).toThrow(/offsets\[5\] is out of order or past the data/);
    s.dispose();
  });

  it("needs the token bytes first (the engine sends them before the first constrained generation)", async () => {
    const fresh = await loadModel(join(MODELS, "qwen2_moe"), { threads: 1 });
    const s = fresh.native.createSession({ contextLength: 64 });
    const base = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, seed: 0, maxTokens: 2, eosIds: [] };
    await expect(s.generate([1, 2], { ...base, constraint: { jsonObject: true } }, () => {})).rejects.toThrow(/call model.setTokenBytes first/);
    s.dispose();
    const r = await fresh.chat({ contextLength: 64 }).generate({ ids: [1, 2] }, { maxTokens: 3, temperature: 0, constraint: { jsonObject: true } }).result;
    expect(r.text.startsWith("{")).toBe(true);
    fresh.native.close();
  });
});
