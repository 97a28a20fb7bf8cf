// The engine's TypeScript logic over a fake native session: streaming deltas, stop strings (not emitted, native
// loop cancelled), AbortSignal, multi-turn prefix reuse, and the input errors.
import { describe, expect, it } from "vitest";
import { CHAT_CONTEXT_CAP, ChatSession, LoadedModel, sessionContextLength, stopHoldback, type ModelInfo } from "../../electron/engine/engine.js";
import { FALLBACK_SAMPLING } from "../../electron/engine/model-folder.js";
import { ChatTemplate } from "../../electron/text/chat-template.js";
import { TextTokenizer } from "../../electron/text/tokenizer.js";
import { FakeModel, FakeSession } from "./fake-native.js";
import { byteLevelTokenizer } from "./tiny-tokenizers.js";

const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const t = byteLevelTokenizer();
const tok = new TextTokenizer(t.json, t.config);
const EOS = tok.tokenToId("<|im_end|>")!;
const V = 270;

function model(replyText: string, ctx = 256): { m: LoadedModel; fake: FakeModel } {
  const script = [...tok.encode(replyText, { addSpecialTokens: false }), EOS];
  const fake = new FakeModel(script, V, ctx);
  const info: ModelInfo = { ...fake.info(), dir: "/fake", eosIds: [EOS], sampling: { ...FALLBACK_SAMPLING, temperature: 0 }, hasChatTemplate: true, sessionContextLength: ctx, estimatedMemoryBytes: 0 };
  const m = new LoadedModel(info, fake, tok, new ChatTemplate({ source: CHATML, file: "fake" }, t.config), {} as never);
  return { m, fake };
}

async function collect(gen: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const d of gen) out.push(d);
  return out;
}

describe("ChatSession.generate", () => {
  it("streams deltas that add up to the text and stops on eos", async () => {
    const { m } = model("Hello 你好😀 world");
    const gen = m.chat().generate([{ role: "user", content: "Hi" }]);
    const deltas = await collect(gen);
    const r = await gen.result;
    expect(deltas.join("")).toBe("Hello 你好😀 world");
    expect(r.text).toBe("Hello 你好😀 world");
    expect(r.stats.stopReason).toBe("eos");
    expect(r.stats.completionTokens).toBe(r.ids.length);
    expect(deltas.every((d) => !d.includes("\uFFFD"))).toBe(true);
    // default system prompt was rendered into the prompt
    expect(tok.decode(r.promptIds)).toContain("You are a helpful assistant.");
  });

  it("max tokens gives stopReason length", async () => {
    const { m } = model("Hello world");
    const r = await m.chat().generate({ ids: [1, 2, 3] }, { maxTokens: 2 }).result;
    expect(r.ids.length).toBe(2);
    expect(r.stats.stopReason).toBe("length");
  });

  it("stop strings: stops, does not emit the stop string, cancels the native loop", async () => {
    const { m, fake } = model("Hello world, Hello again world");
    const gen = m.chat().generate({ ids: [5] }, { stop: ["again"] });
    const deltas = await collect(gen);
    const r = await gen.result;
    expect(r.stats.stopReason).toBe("stop");
    expect(r.text).toBe("Hello world, Hello ");
    expect(deltas.join("")).toBe("Hello world, Hello ");
    expect(fake.sessions[0].cancelled).toBe(true);
    // a stop string that never completes is emitted in full at the end
    const r2 = await m.chat().generate({ ids: [5] }, { stop: ["worldX"] }).result;
    expect(r2.text).toBe("Hello world, Hello again world");
    expect(r2.stats.stopReason).toBe("eos");
  });

  it("stop string spanning several tokens and held back while it could still match", async () => {
    const { m } = model("abc<stop>def");
    const gen = m.chat().generate({ ids: [5] }, { stop: ["<stop>"] });
    const deltas = await collect(gen);
    expect(deltas.join("")).toBe("abc");
    expect(deltas.some((d) => d.includes("<"))).toBe(false);
    expect(stopHoldback("abc<st", ["<stop>"])).toBe(3);
    expect(stopHoldback("abc", ["<stop>"])).toBe(0);
  });

  it("AbortSignal cancels within one token", async () => {
    const { m, fake } = model("a b c d e f g h i j k l m n o p q r s t u v w x y z");
    const ac = new AbortController();
    const gen = m.chat().generate({ ids: [5] }, { signal: ac.signal, maxTokens: 40 });
    let n = 0;
    for await (const _ of gen) if (++n === 3) ac.abort();
    const r = await gen.result;
    expect(r.stats.stopReason).toBe("cancelled");
    expect(r.ids.length).toBeLessThanOrEqual(4);
    expect(fake.sessions[0].cancelled).toBe(true);
    // an already-aborted signal generates nothing
    const r2 = await m.chat().generate({ ids: [5] }, { signal: AbortSignal.abort() }).result;
    expect(r2.stats.stopReason).toBe("cancelled");
    expect(r2.ids).toEqual([]);
  });

  it("multi-turn: the second turn reuses the first turn's cache", async () => {
    const { m } = model("Hi there");
    const chat = m.chat();
    const msgs = [{ role: "user", content: "Hello" }];
    const r1 = await chat.generate(msgs).result;
    const r2 = await chat.generate([...msgs, { role: "assistant", content: r1.text }, { role: "user", content: "More" }]).result;
    expect(r2.stats.reusedTokens).toBeGreaterThan(r1.stats.promptTokens - 2);
    expect(r2.text).toBe("Hi there");
  });

  it("one generation at a time per session", async () => {
    const { m } = model("Hello world");
    const chat = m.chat();
    const a = chat.generate({ ids: [5] });
    const b = chat.generate({ ids: [5] });
    await expect(b.result).rejects.toThrow(/already generating/);
    await a.result;
  });

  it("input errors: empty prompt, prompt longer than the context, ids outside the vocabulary", async () => {
    const { m } = model("x", 16);
    const chat = m.chat();
    await expect(chat.generate({ ids: [] }).result).rejects.toThrow("prompt is empty");
    await expect(chat.generate([]).result).rejects.toThrow("prompt is empty");
    await expect(chat.generate({ prompt: "" }).result).rejects.toThrow("prompt is empty");
    await expect(chat.generate({ ids: new Array(20).fill(5) }).result).rejects.toThrow(/20 tokens.*context of 16/);
    await expect(chat.generate({ ids: [V + 5] }).result).rejects.toThrow(/outside the vocabulary/);
    // the iterator rethrows the error too
    await expect(collect(chat.generate({ ids: [] }))).rejects.toThrow("prompt is empty");
    // and the session still works afterwards
    expect((await chat.generate({ ids: [5] }).result).text).toBe("x");
  });

  it("maxTokens is clamped to the room left in the context", async () => {
    const { m } = model("a b c d e f g h i j", 8);
    const r = await m.chat().generate({ ids: [5, 6, 7, 8, 9] }, { maxTokens: 100 }).result;
    expect(r.ids.length).toBe(3);
    expect(r.stats.stopReason).toBe("length");
  });
});

describe("ChatSession without the fake's internals", () => {
  it("is the class the model returns", () => {
    const { m } = model("x");
    expect(m.chat()).toBeInstanceOf(ChatSession);
    expect(m.chat().native).toBeInstanceOf(FakeSession);
  });

  it("a chat session gets info.sessionContextLength: the model's context capped at 8192, unless asked for another", () => {
    expect(CHAT_CONTEXT_CAP).toBe(8192);
    expect(sessionContextLength({ contextLength: 32768 })).toBe(8192);
    expect(sessionContextLength({ contextLength: 256 })).toBe(256);
    const { m } = model("x", 32768);
    const capped = new LoadedModel({ ...m.info, sessionContextLength: sessionContextLength(m.info) }, m.native, m.tokenizer, m.template, m.folder);
    expect(capped.chat().contextLength).toBe(8192); // what the model card promises is what the session has
    expect(capped.chat({ contextLength: 100 }).contextLength).toBe(100);
  });
});

describe("Generation iteration", () => {
  it("breaking out of the loop cancels the generation", async () => {
    const { m, fake } = model("a b c d e f g h i j k l m n o p q r s t u v w x y z");
    const gen = m.chat().generate({ ids: [5] }, { maxTokens: 40 });
    for await (const _ of gen) break;
    const r = await gen.result;
    expect(r.stats.stopReason).toBe("cancelled");
    expect(r.ids.length).toBeLessThanOrEqual(3);
    expect(fake.sessions[0].cancelled).toBe(true);
  });
});
