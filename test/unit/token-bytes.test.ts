// token-bytes.ts against the tokenizers library (@huggingface/tokenizers, the port of Rust tokenizers): the bytes of
// a text's tokens, concatenated, must be the text's UTF-8 — for byte-level BPE exactly, for SentencePiece with the
// space Metaspace puts in front — and each whole-UTF-8 token's bytes must be what decode([id]) says.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decoderKind, tokenBytes } from "../../electron/text/token-bytes.js";
import { TextTokenizer } from "../../electron/text/tokenizer.js";
import { fixtureNames, MODELS } from "../native/fixtures.js";

const TEXT = 'Hello, world! {"city": "Paris", "n": [1, 2.5e3]}\n\t你好，世界 😀 naïve café';
const bytesOf = (t: { data: Uint8Array; offsets: Uint32Array }, id: number) => t.data.subarray(t.offsets[id], t.offsets[id + 1]);

describe("token bytes", () => {
  for (const name of fixtureNames()) {
    it(`${name}: a text's tokens spell its bytes`, () => {
      const tok = TextTokenizer.fromFolder(join(MODELS, name));
      const vocab = tok.tokenizer.get_vocab(true).size + 5; // the model's embedding may have padding rows past the tokenizer
      const t = tokenBytes(tok, vocab);
      expect(t.offsets.length).toBe(vocab + 1);
      const ids = tok.encode(TEXT, { addSpecialTokens: false });
      const joined = Buffer.concat(ids.map((id) => bytesOf(t, id)));
      const kind = decoderKind(tok.decoder);
      const expected = kind === "metaspace" ? " " + TEXT : TEXT; // prepend_scheme "first": ▁ before the first word
      expect(joined.toString("utf8")).toBe(expected);
      for (let id = 0; id < vocab; id++) {
        const b = bytesOf(t, id);
        if (tok.specialIds.has(id) || id >= vocab - 5) {
          expect(b.length, `special / padding id ${id}`).toBe(0);
          continue;
        }
        const text = tok.decode([id]);
        if (!text.includes("\uFFFD") && kind === "byte-level") expect(Buffer.from(b).toString("utf8"), `id ${id}`).toBe(text);
      }
    });
  }

  it("knows the decoder kinds of real tokenizers", () => {
    expect(decoderKind({ type: "ByteLevel", add_prefix_space: false })).toBe("byte-level");
    // Mistral / Llama 2 (tokenizers >= 0.14): Replace ▁ -> " ", ByteFallback, Fuse, Strip
    expect(decoderKind({ type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] })).toBe("metaspace");
    expect(decoderKind({ type: "Metaspace", replacement: "▁" })).toBe("metaspace");
    expect(decoderKind({ type: "WordPiece" })).toBe("other");
    expect(decoderKind(null)).toBe("other");
  });

  it("reads <0xNN> byte-fallback tokens as the byte", () => {
    const tok = TextTokenizer.fromFolder(join(MODELS, "mixtral"));
    const t = tokenBytes(tok, tok.tokenizer.get_vocab(true).size);
    const id = tok.tokenToId("<0xE4>");
    expect(id).toBeDefined();
    expect([...bytesOf(t, id!)]).toEqual([0xe4]);
  });
});
