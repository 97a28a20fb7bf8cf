// Untrusted chat templates and text under limits (electron/text/bounded-text.ts): hostile templates written here
// end in a clear error naming the folder and the limit, in well under a second, while this thread keeps ticking;
// the worker is replaced and the next render works; real templates render byte for byte as ChatTemplate.render
// does (the fixture goldens), fast; the token lower bound never exceeds the real count. Needs `npm run build:ts`
// (the worker runs the compiled out/electron/text/text-worker.js).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BoundedText, TextLimitError } from "../../electron/text/bounded-text.js";
import { ChatTemplate } from "../../electron/text/chat-template.js";
import { tokenBound } from "../../electron/text/token-bound.js";
import { TextTokenizer } from "../../electron/text/tokenizer.js";
import { fixtureNames, golden, modelDir } from "../native/fixtures.js";
import { byteLevelTokenizer, byteFallbackTokenizer } from "./tiny-tokenizers.js";

const names = fixtureNames();
const DIR = "/models/hostile-model";
const hi = [{ role: "user", content: "hi" }];
/** One prompt of one user message, rendered as given (no default system prompt). */
const one = (content: string) => [{ messages: [{ role: "user", content }], opts: { systemPrompt: null } }];
const NORMAL = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
const tpl = (source: string) => new ChatTemplate({ source, file: join(DIR, "chat_template.jinja"), dir: DIR }, {});

/** Run `f` while a 10 ms interval counts how often this thread got to run; returns the wall time and the ticks. */
async function timed<T>(f: () => Promise<T>): Promise<{ error: Error | null; ms: number; ticks: number }> {
  let ticks = 0;
  const iv = setInterval(() => ticks++, 10);
  const t0 = performance.now();
  let error: Error | null = null;
  try {
    await f();
  } catch (e) {
    error = e as Error;
  }
  const ms = performance.now() - t0;
  clearInterval(iv);
  return { error, ms, ticks };
}

describe("hostile chat templates", () => {
  const text = new BoundedText();
  beforeAll(async () => {
    // Warm: the first render starts the worker (~0.5 s of module loading, not counted against any limit).
    expect(await text.render(tpl(NORMAL), one("hi"))).toEqual(["<|user|>hi\n<|assistant|>"]);
  });
  afterAll(() => text.close());

  const cases: Array<[string, string, RegExp]> = [
    ["a loop of 100,000,000 iterations", "{% for i in range(100000000) %}x{% endfor %}", /^chat template of \/models\/hostile-model did not finish within 500 ms$/],
    [
      "a string doubled 28 times (268M characters)",
      "{% set ns = namespace(s='x') %}{% for i in range(28) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
      /^chat template of \/models\/hostile-model produced more than 8000000 characters \(268435456 characters\)$/,
    ],
    [
      "a list doubled 40 times",
      "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}",
      /^chat template of \/models\/hostile-model (did not finish within 500 ms|used more than 1024 MB of memory)$/,
    ],
    [
      "a macro that calls itself without end",
      "{% macro f(n) %}{% if n >= 0 %}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}",
      // Deep enough, the stack overflows inside @huggingface/jinja's name lookup and it reports the macro as undefined.
      /^(chat template of \/models\/hostile-model (did not finish within 500 ms|recursed too deeply .*)|\/models\/hostile-model\/chat_template.jinja: chat template failed to render \(.*\))$/,
    ],
  ];

  it.each(cases)("%s ends in a clear error within a second, this thread keeps ticking, the next render works", async (_, source, message) => {
    const r = await timed(() => text.render(tpl(source), [{ messages: hi }]));
    expect(r.error).toBeInstanceOf(Error);
    expect(r.error!.message).toMatch(message);
    if (/did not finish|produced more|used more/.test(r.error!.message)) expect(r.error).toBeInstanceOf(TextLimitError);
    expect(r.ms).toBeLessThan(1000);
    // A blocked thread would tick once at the end; a free one ticks every ~10 ms.
    expect(r.ticks).toBeGreaterThanOrEqual(Math.floor(r.ms / 40));
    expect(await text.render(tpl(NORMAL), one("again"))).toEqual(["<|user|>again\n<|assistant|>"]);
  });

  it("a template that throws keeps its own error (the file and the reason); parse errors stay at load", async () => {
    await expect(text.render(tpl("{{ raise_exception('no system role') }}"), [{ messages: hi }])).rejects.toThrow(
      /^\/models\/hostile-model\/chat_template.jinja: chat template failed to render \(.*no system role.*\)$/,
    );
    expect(() => tpl("{% for %}")).toThrow(/chat_template.jinja: cannot parse the chat template/);
  });

  it("the limits are the caller's: output length, heap, and a deadline per item of a batch", async () => {
    const small = new BoundedText({ maxChars: 1000, heapMb: 32, renderMs: 20_000 });
    try {
      await expect(small.render(tpl("{% for i in range(2000) %}x{% endfor %}"), [{ messages: hi }])).rejects.toThrow(
        /^chat template of \/models\/hostile-model produced more than 1000 characters \(2000 characters\)$/,
      );
      // 32 MB of heap and one 64 MB allocation (the doubled string upper-cased): V8 gives up (after ~2 s of GC) and
      // aborts the process it runs in.
      // That is the text process, not this one: the job fails naming the template, and a fresh process serves the next.
      const upper = "{% set ns = namespace(s='x') %}{% for i in range(26) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|upper }}";
      const oom = await timed(() => small.render(tpl(upper), [{ messages: hi }]));
      expect(oom.error).toBeInstanceOf(TextLimitError);
      expect(oom.error?.message).toBe("chat template of /models/hostile-model used more than 32 MB of memory");
      expect(oom.ms).toBeLessThan(8000);
      expect(await small.render(tpl(NORMAL), one("hi"))).toEqual(["<|user|>hi\n<|assistant|>"]);
    } finally {
      await small.close();
    }
    // In a batch, the deadline is per item (many fast items do not add up to a timeout); the error says which item.
    const quick = new BoundedText({ renderMs: 200 });
    try {
      const slow = "{% if messages[0].content == 'slow' %}{% for i in range(100000000) %}x{% endfor %}{% endif %}ok";
      const items = Array.from({ length: 400 }, (_, i) => one(i === 399 ? "slow" : `m${i}`)[0]);
      expect((await quick.render(tpl(slow), items.slice(0, 399))).every((s) => s === "ok")).toBe(true);
      await expect(quick.render(tpl(slow), items)).rejects.toThrow(/^chat template of \/models\/hostile-model did not finish within 200 ms \(item 400 of 400\)$/);
    } finally {
      await quick.close();
    }
  });

  it("a closed renderer refuses new work", async () => {
    const b = new BoundedText();
    await b.close();
    await expect(b.render(tpl(NORMAL), one("hi"))).rejects.toThrow(/closed/);
  });
});

describe("real templates and tokenizers through the worker", () => {
  const text = new BoundedText();
  afterAll(() => text.close());

  it.each(names)("%s: renders and tokenizes exactly like the in-thread ChatTemplate and tokenizer (the goldens)", async (name) => {
    const dir = modelDir(name);
    const g = golden(name);
    const t = ChatTemplate.fromFolder(dir)!;
    const [single, multi] = await text.render(t, [{ messages: g.messages, opts: { systemPrompt: null } }, { messages: g.multi_turn.messages, opts: { systemPrompt: null } }]);
    expect(single).toBe(g.chat_prompt);
    expect(multi).toBe(g.multi_turn.chat_prompt);
    expect(single).toBe(t.render(g.messages, { systemPrompt: null }));
    expect(await text.chatIds(t, dir, g.messages, { systemPrompt: null })).toEqual(g.prompt_ids);
    const tok = TextTokenizer.fromFolder(dir);
    expect(await text.encode(dir, "Hello, 世界 😀", { addSpecialTokens: true })).toEqual(tok.encode("Hello, 世界 😀"));
  });

  it("a normal render costs low milliseconds; a batch of 1000 samples is one job and matches counting one by one", async () => {
    const name = names.includes("qwen2") ? "qwen2" : names[0];
    const dir = modelDir(name);
    const t = ChatTemplate.fromFolder(dir)!;
    const tok = TextTokenizer.fromFolder(dir);
    await text.chatIds(t, dir, hi); // warm: worker, parsed template, loaded tokenizer
    const times: number[] = [];
    for (let i = 0; i < 100; i++) {
      const t0 = performance.now();
      await text.render(t, [{ messages: [{ role: "user", content: `question ${i}` }] }]);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    console.log(`bounded render: median ${times[50].toFixed(2)} ms, p95 ${times[95].toFixed(2)} ms`);
    expect(times[50]).toBeLessThan(5);

    const samples = Array.from({ length: 1000 }, (_, i) => [
      { role: "user", content: `sample ${i}: ${"hello 你好 ".repeat(i % 5)}` },
      { role: "assistant", content: `answer ${i}` },
    ]);
    const t0 = performance.now();
    const counts = await text.chatCounts(t, dir, samples, { systemPrompt: null, addGenerationPrompt: false });
    console.log(`1000 sample counts in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(counts).toEqual(samples.map((m) => tok.encodeChat(t.render(m, { systemPrompt: null, addGenerationPrompt: false })).length));
  });

  it("tokenizing a huge text is stopped at its deadline, naming the tokenizer's folder", async () => {
    const name = names.includes("qwen2") ? "qwen2" : names[0];
    const dir = modelDir(name);
    const quick = new BoundedText({ tokenizeMs: 200 });
    try {
      await quick.encode(dir, "warm");
      const r = await timed(() => quick.encode(dir, "你好世界".repeat(50_000)));
      expect(r.error?.message).toBe(`tokenizing with the tokenizer of ${dir} did not finish within 200 ms`);
      expect(r.ms).toBeLessThan(1000);
      expect(r.ticks).toBeGreaterThanOrEqual(Math.floor(r.ms / 40));
      expect(await quick.encode(dir, "hello")).toEqual(TextTokenizer.fromFolder(dir).encode("hello"));
    } finally {
      await quick.close();
    }
  });

  it("a missing tokenizer is named", async () => {
    const empty = mkdtempSync(join(tmpdir(), "moe-bounded-"));
    try {
      await expect(text.encode(empty, "x")).rejects.toThrow(`${join(empty, "tokenizer.json")}: file not found`);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe("token lower bound from the UTF-8 length (token-bound.ts)", () => {
  const texts = ["", "hello world", "你好世界".repeat(40), "😀 emoji 😀😀", " ".repeat(300) + "\n\n\n\t", "<|im_start|>user\nhi<|im_end|>", "a".repeat(5000), "naïve café Ωmega \u212A"];

  it.each(names)("%s: never more than the real count", (name) => {
    const tok = TextTokenizer.fromFolder(modelDir(name));
    expect(tok.bound).not.toBeNull();
    for (const s of texts) expect(tok.minTokens(s), s.slice(0, 20)).toBeLessThanOrEqual(tok.encode(s, { addSpecialTokens: false }).length);
    // and it is a real bound: a 1M-character CJK text is far over a 8192-token context
    expect(tok.minTokens("你".repeat(1_000_000))).toBeGreaterThan(8192);
  });

  it("hand-built byte-level and Metaspace tokenizers: the bound holds", () => {
    for (const { json, config } of [byteLevelTokenizer(), byteFallbackTokenizer()]) {
      const tok = new TextTokenizer(json, config);
      for (const s of texts) expect(tok.minTokens(s)).toBeLessThanOrEqual(tok.encode(s, { addSpecialTokens: false }).length);
    }
  });

  it("is tight for Chinese: non-ASCII bytes over the most non-ASCII bytes of a token", () => {
    const ascii = "x".repeat(60);
    const bound = tokenBound({ model: { type: "BPE", vocab: { [ascii]: 0, 你好: 1, a: 2 }, merges: [] } })!;
    expect([bound.maxBytes, bound.maxHighBytes]).toEqual([60, 6]);
    expect(bound.minTokens("你".repeat(1000))).toBe(500); // 3000 high bytes / 6, where 3000 / 60 would say 50
    expect(bound.minTokens(ascii.repeat(10))).toBe(10);
  });

  it("applies the normalizer first; is absent where one token can stand for unbounded input", () => {
    const bpe = { type: "BPE", vocab: { a: 0, abc: 1 }, merges: [] };
    const b = (json: Record<string, unknown>) => tokenBound(json);
    expect(b({ model: bpe })?.maxBytes).toBe(4); // an unknown character: up to 4 bytes
    expect(b({ model: { ...bpe, vocab: { ["x".repeat(40)]: 0 } } })?.maxBytes).toBe(40);
    // NFKC turns the 3-byte Kelvin sign into "K" and the 4-byte U+1D400 into "A": counted after normalizing.
    expect(b({ model: bpe, normalizer: { type: "NFKC" } })?.minTokens("\u212A".repeat(40) + "\u{1D400}".repeat(40))).toBe(20);
    expect(b({ model: bpe, normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] } })?.minTokens("a b")).toBe(2); // "▁a▁b": 8 bytes / 4
    expect(b({ model: bpe, normalizer: { type: "Strip" } })?.minTokens("   " + "a".repeat(8) + "   ")).toBe(2);
    expect(b({ model: { ...bpe, unk_token: "<unk>", fuse_unk: true } })).toBeNull();
    expect(b({ model: { ...bpe, unk_token: "<unk>", fuse_unk: true, byte_fallback: true, vocab: { ...bpe.vocab, "<0xE4>": 2 } } })?.maxBytes).toBe(4);
    expect(b({ model: { type: "WordPiece", vocab: { a: 0 } } })).toBeNull();
    expect(b({ model: bpe, normalizer: { type: "Replace", pattern: { Regex: "\\s+" }, content: " " } })).toBeNull();
    expect(b({ model: bpe, normalizer: { type: "Precompiled", precompiled_charsmap: "" } })).toBeNull();
    expect(b({ model: bpe, added_tokens: [{ content: "<mask>", lstrip: true }] })).toBeNull();
    expect(b({ model: bpe, added_tokens: [{ content: "<|reserved_special_token_250|>" }] })?.maxBytes).toBe(30);
  });
});
