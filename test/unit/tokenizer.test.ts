// Tokenizer + incremental detokenizer on hand-built tokenizers (no fixtures needed). Expected ids/text come from
// Python `tokenizers` 0.23 on the same tokenizer.json (printed once, pasted here).
import { describe, expect, it } from "vitest";
import { TextTokenizer } from "../../electron/text/tokenizer.js";
import { byteFallbackTokenizer, byteLevelTokenizer } from "./tiny-tokenizers.js";

const bl = (() => { const t = byteLevelTokenizer(); return new TextTokenizer(t.json, t.config); })();
const bf = (() => { const t = byteFallbackTokenizer(); return new TextTokenizer(t.json, t.config); })();

const PY_BYTE_LEVEL: Array<[string, number[]]> = [
  ["Hello world", [259, 260, 111, 261, 111, 114, 108, 100]],
  ["你好😀 world", [256, 160, 257, 189, 258, 152, 128, 261, 111, 114, 108, 100]],
  ["<|im_start|>user\nHi 你好<|im_end|>", [263, 117, 115, 101, 114, 10, 72, 105, 32, 256, 160, 257, 189, 264]],
  ["Hello 你好 wörld", [259, 260, 111, 32, 256, 160, 257, 189, 261, 195, 182, 114, 108, 100]],
];
const PY_BYTE_FALLBACK: Array<[string, number[], string]> = [
  ["Hello world", [1, 259, 267, 268, 263, 269, 263, 265, 262, 266], "<s> Hello world"],
  ["你好😀 world", [1, 259, 271, 232, 168, 192, 243, 162, 155, 131, 269, 263, 265, 262, 266], "<s> 你好😀 world"],
  ["Hello 你好 wörld", [1, 259, 267, 268, 263, 259, 271, 232, 168, 192, 269, 198, 185, 265, 262, 266], "<s> Hello 你好 wörld"],
];

describe("TextTokenizer matches Python tokenizers", () => {
  it.each(PY_BYTE_LEVEL)("byte-level BPE: %j", (text, ids) => {
    expect(bl.encode(text)).toEqual(ids);
    expect(bl.decode(ids)).toBe(text);
  });
  it.each(PY_BYTE_FALLBACK)("metaspace + byte fallback: %j", (text, ids, decoded) => {
    expect(bf.encode(text)).toEqual(ids);
    expect(bf.decode(ids)).toBe(decoded);
    expect(bf.decode(ids, { skipSpecialTokens: true })).toBe(text);
  });
  it("special tokens in text become their ids; addSpecialTokens only controls the post-processor", () => {
    expect(bf.encode("Hello", { addSpecialTokens: false })[0]).not.toBe(1);
    expect(bf.encode("<s>Hello", { addSpecialTokens: false })[0]).toBe(1);
    expect(bl.encodeChat("<|im_start|>user")[0]).toBe(bl.tokenToId("<|im_start|>"));
  });
  it("decode([]) is empty instead of throwing", () => {
    expect(bl.decode([])).toBe("");
    expect(bl.encode("")).toEqual([]);
  });
});

/** Feed ids one by one; check the deltas are whole characters and add up to decode(all). */
function stream(tok: TextTokenizer, ids: number[], skip = true): string[] {
  const d = tok.detokenizer({ skipSpecialTokens: skip });
  const deltas: string[] = [];
  for (const id of ids) {
    const s = d.push(id);
    if (s) deltas.push(s);
  }
  const tail = d.flush();
  if (tail) deltas.push(tail);
  return deltas;
}

describe("IncrementalDetokenizer", () => {
  const cases: Array<[string, TextTokenizer, string]> = [
    ["byte-level", bl, "Hello 你好😀 wörld, 你好!"],
    ["byte-fallback", bf, "Hello 你好😀 wörld 你"],
  ];
  it.each(cases)("%s: Chinese and emoji split across tokens arrive whole", (_name, tok, text) => {
    const ids = tok.encode(text, { addSpecialTokens: false });
    const deltas = stream(tok, ids);
    for (const d of deltas) {
      expect(d).not.toContain("\uFFFD");
      // no lone surrogate halves (an emoji is two UTF-16 units)
      expect(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(d)).toBe(false);
    }
    expect(deltas.join("")).toBe(tok.decode(ids, { skipSpecialTokens: true }));
    expect(deltas.join("")).toBe(text);
  });
  it("holds back a partial character until its last byte arrives", () => {
    const ids = bl.encode("你", { addSpecialTokens: false }); // [256 (2 bytes), 160 (1 byte)]
    expect(ids.length).toBe(2);
    const d = bl.detokenizer();
    expect(d.push(ids[0])).toBe("");
    expect(d.push(ids[1])).toBe("你");
    const f = bf.detokenizer();
    // 好 = E5 A5 BD: not in the vocab, so three byte-fallback tokens <0xE5><0xA5><0xBD>
    const fids = ["<0xE5>", "<0xA5>", "<0xBD>"].map((t) => bf.tokenToId(t)!);
    expect(bf.encode("好", { addSpecialTokens: false }).slice(-3)).toEqual(fids);
    expect(bf.decode(fids)).toBe("好");
    expect(f.push(fids[0])).toBe("");
    expect(f.push(fids[1])).toBe("");
    expect(f.push(fids[2])).toBe("好");
  });
  it("metaspace: the leading space of later words is kept, the first is stripped like decode()", () => {
    const ids = bf.encode("Hello world", { addSpecialTokens: false });
    const deltas = stream(bf, ids);
    expect(deltas.join("")).toBe("Hello world");
    expect(deltas.some((d) => d.startsWith(" "))).toBe(true);
  });
  it("special tokens are skipped by default and kept on request", () => {
    const ids = bl.encode("<|im_start|>Hi<|im_end|>", { addSpecialTokens: false });
    expect(stream(bl, ids).join("")).toBe("Hi");
    expect(stream(bl, ids, false).join("")).toBe("<|im_start|>Hi<|im_end|>");
  });
  it("an incomplete character at the end is flushed as U+FFFD, as Python decodes it", () => {
    const d = bl.detokenizer();
    expect(d.push(256)).toBe("");
    expect(d.flush()).toBe("\uFFFD");
  });
});
