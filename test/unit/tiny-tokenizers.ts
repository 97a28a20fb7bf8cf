// Hand-built tokenizer.json objects for unit tests that must not depend on the fixture models:
// a byte-level BPE (GPT-2/Qwen style) and a Metaspace + byte-fallback BPE (Llama/Mistral style).
// Both have merges that cut multi-byte UTF-8 characters in the middle, which is what the detokenizer must survive.

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 + n. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out = new Array<string>(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i])));
  return out;
}

const enc = new TextEncoder();

/** Byte-level BPE: 256 byte tokens + merges for the first two bytes of 你, 好 and 😀 (so characters split 2+1, 2+2). */
export function byteLevelTokenizer(): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const b2u = bytesToUnicode();
  const vocab: Record<string, number> = {};
  b2u.forEach((c, b) => (vocab[c] = b));
  const merges: string[] = [];
  const mergeBytes = (bytes: number[]) => {
    const a = b2u[bytes[0]], b = b2u[bytes[1]];
    merges.push(`${a} ${b}`);
    vocab[a + b] = Object.keys(vocab).length;
  };
  for (const ch of ["你", "好", "😀"]) mergeBytes([...enc.encode(ch)]);
  // "He" "ll" "o" style merges for ASCII
  for (const [a, b] of [["H", "e"], ["l", "l"], ["Ġ", "w"]]) {
    merges.push(`${a} ${b}`);
    vocab[a + b] = Object.keys(vocab).length;
  }
  const n = Object.keys(vocab).length;
  const added = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map((content, i) => ({
    id: n + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: "NFC" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "", end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
  };
  const config = { bos_token: null, eos_token: "<|im_end|>", pad_token: "<|endoftext|>", clean_up_tokenization_spaces: false };
  return { json, config };
}

/** Metaspace + byte-fallback BPE with <s> BOS added by a TemplateProcessing post-processor (Llama style). */
export function byteFallbackTokenizer(): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`] = 3 + b;
  const pieces = ["▁", "H", "e", "l", "o", "w", "r", "d", "He", "ll", "▁w", "▁H", "你"];
  for (const p of pieces) vocab[p] = Object.keys(vocab).length;
  const merges = ["H e", "l l", "▁ w", "▁ H"];
  const json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [
      { id: 0, content: "<unk>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 1, content: "<s>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 2, content: "</s>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "▁" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges },
  };
  const config = { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", clean_up_tokenization_spaces: false, add_bos_token: true };
  return { json, config };
}
