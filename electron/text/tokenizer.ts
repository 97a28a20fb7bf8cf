// Text <-> token ids for a Hugging Face model folder, on @huggingface/tokenizers (a JS port of the Rust
// `tokenizers` library that matches it on byte-level BPE and Metaspace/byte-fallback tokenizers).
//
// Special tokens written in text (e.g. "<|im_start|>") are split out before the model sees the text and become
// their own ids: the library does that for every entry of tokenizer.json's added_tokens, like Python's tokenizers.
// `addSpecialTokens` controls only the post-processor (e.g. Llama's BOS): transformers' apply_chat_template
// tokenizes the rendered prompt with add_special_tokens=False (the template writes the BOS itself), so that is
// what encodeChat() does.
import { Tokenizer } from "@huggingface/tokenizers";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** tokenizer_config.json writes special tokens as "<s>" or as {"content": "<s>", ...}. */
export function tokenContent(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return null;
}

export class TextTokenizer {
  readonly tokenizer: Tokenizer;
  readonly config: Record<string, unknown>;     // tokenizer_config.json (empty object when absent)
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly specialIds: Set<number>;
  /**
   * The most input bytes (UTF-8) one token can stand for, or null when this tokenizer has no such bound (a fused
   * unknown token, a normalizer that deletes text, added tokens that swallow whitespace). See maxInputBytesPerToken.
   */
  readonly maxInputBytesPerToken: number | null;

  constructor(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown> = {}) {
    // The library reads additional_special_tokens as strings; newer configs may write objects.
    const cfg: Record<string, unknown> = { ...tokenizerConfig };
    // transformers 5 leaves " ," / " ." alone unless the config asks for clean-up; the JS library defaults to true.
    cfg.clean_up_tokenization_spaces = tokenizerConfig.clean_up_tokenization_spaces === true;
    if (Array.isArray(cfg.additional_special_tokens)) {
      cfg.additional_special_tokens = cfg.additional_special_tokens.map(tokenContent).filter((t) => t !== null);
    }
    this.config = tokenizerConfig;
    this.tokenizer = new Tokenizer(tokenizerJson, cfg);
    this.bosToken = tokenContent(tokenizerConfig.bos_token);
    this.eosToken = tokenContent(tokenizerConfig.eos_token);
    this.specialIds = new Set();
    for (const [id, tok] of this.tokenizer.get_added_tokens_decoder()) if (tok.special) this.specialIds.add(id);
    this.maxInputBytesPerToken = maxInputBytesPerToken(tokenizerJson);
  }

  /**
   * A lower bound on the number of tokens `text` encodes to, without tokenizing it: its UTF-8 length divided by the
   * most bytes one token can stand for (0 when the tokenizer has no such bound). Costs one pass over the string.
   */
  minTokens(text: string): number {
    if (this.maxInputBytesPerToken === null || text.length === 0) return 0;
    return Math.ceil(Buffer.byteLength(text, "utf8") / this.maxInputBytesPerToken);
  }

  /** Load tokenizer.json (+ tokenizer_config.json when present) from a model folder. */
  static fromFolder(dir: string): TextTokenizer {
    const tjPath = join(dir, "tokenizer.json");
    if (!existsSync(tjPath)) throw new Error(`${tjPath}: file not found (the model folder needs a tokenizer.json)`);
    let tj: Record<string, unknown>;
    try {
      tj = JSON.parse(readFileSync(tjPath, "utf8"));
    } catch (e) {
      throw new Error(`${tjPath}: invalid JSON (${(e as Error).message})`);
    }
    const tcPath = join(dir, "tokenizer_config.json");
    let tc: Record<string, unknown> = {};
    if (existsSync(tcPath)) {
      try {
        tc = JSON.parse(readFileSync(tcPath, "utf8"));
      } catch (e) {
        throw new Error(`${tcPath}: invalid JSON (${(e as Error).message})`);
      }
    }
    try {
      return new TextTokenizer(tj, tc);
    } catch (e) {
      throw new Error(`${tjPath}: cannot build the tokenizer (${(e as Error).message})`);
    }
  }

  /** Like Python `tokenizer.encode(text, add_special_tokens=...)`; default true as in Python. */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    if (text.length === 0) return [];
    return this.tokenizer.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /** Tokenize a rendered chat prompt exactly like transformers' apply_chat_template(tokenize=True). */
  encodeChat(prompt: string): number[] {
    return this.encode(prompt, { addSpecialTokens: false });
  }

  /** Like Python `tokenizer.decode(ids, skip_special_tokens=...)`; decode([]) is "" (the library throws). */
  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return "";
    return this.tokenizer.decode(ids as number[], { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokenizer.id_to_token(id);
  }

  /** Special tokens the chat templates refer to by name (bos_token, eos_token, ...), as Python passes them. */
  specialTokensMap(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const key of ["bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"]) {
      const v = tokenContent(this.config[key]);
      if (v !== null) out[key] = v;
    }
    return out;
  }

  /** A fresh incremental detokenizer bound to this tokenizer. */
  detokenizer(opts: { skipSpecialTokens?: boolean } = {}): IncrementalDetokenizer {
    return new IncrementalDetokenizer(this, opts);
  }
}

const utf8Length = (s: string) => Buffer.byteLength(s, "utf8");

/**
 * How many input bytes a normalizer can turn into one byte of normalized text, or null when it can delete text
 * (nothing then bounds the input one token stands for). Unicode normal forms and lowercasing map one code point to
 * at least one code point and compose at most ~3 code points into one: a 4-byte character becoming 1 byte (NFKC of
 * U+1D400 is "A") is the worst case, hence 4.
 */
function normalizerShrink(n: unknown): number | null {
  if (n === null || n === undefined) return 1;
  const node = n as { type?: string; normalizers?: unknown[]; pattern?: { String?: string }; content?: string };
  switch (node.type) {
    case "NFC": case "NFD": case "NFKC": case "NFKD": case "Lowercase":
      return 4;
    case "Prepend": case "Append":
      return 1;
    case "Replace": {
      // A literal replacement shrinks text by at most |pattern| / |content|; a regex or an empty content can delete.
      const from = node.pattern?.String;
      if (typeof from !== "string" || typeof node.content !== "string" || node.content.length === 0) return null;
      return Math.max(1, utf8Length(from) / utf8Length(node.content));
    }
    case "Sequence": {
      let f = 1;
      for (const child of node.normalizers ?? []) {
        const c = normalizerShrink(child);
        if (c === null) return null;
        f *= c;
      }
      return f;
    }
    default:
      // Strip, StripAccents, Precompiled, BertNormalizer (clean_text drops control characters), unknown kinds.
      return null;
  }
}

/**
 * The most input bytes one token of this tokenizer.json can stand for, or null when there is no such bound.
 *
 * A BPE token's string is never shorter in UTF-8 than the bytes it covers: byte-level BPE writes each byte as one
 * character (of 1 or 2 UTF-8 bytes), Metaspace writes a space as "▁" (3 bytes), byte fallback writes a byte as
 * "<0xE4>". So the longest vocabulary entry (or added token) bounds the normalized bytes per token, and the
 * normalizer's shrink factor turns that into input bytes. Unknown words that become one fused <unk>, WordPiece /
 * WordLevel / Unigram models (their unknown token covers a whole word) and added tokens with lstrip/rstrip (they
 * swallow any run of whitespace) have no bound.
 */
export function maxInputBytesPerToken(tokenizerJson: Record<string, unknown>): number | null {
  const model = tokenizerJson.model as { type?: string; vocab?: unknown; unk_token?: unknown; fuse_unk?: unknown; byte_fallback?: unknown } | undefined;
  if (!model || model.type !== "BPE" || !model.vocab || typeof model.vocab !== "object") return null;
  if (model.unk_token !== null && model.unk_token !== undefined && model.fuse_unk === true && model.byte_fallback !== true) return null;
  const shrink = normalizerShrink(tokenizerJson.normalizer);
  if (shrink === null) return null;
  // An unknown character (no byte fallback) is one token of up to 4 bytes, whatever the unk token's spelling.
  let longest = 4;
  for (const token of Object.keys(model.vocab as Record<string, unknown>)) longest = Math.max(longest, utf8Length(token));
  for (const t of (tokenizerJson.added_tokens as Array<{ content?: unknown; lstrip?: unknown; rstrip?: unknown }> | undefined) ?? []) {
    if (t.lstrip === true || t.rstrip === true) return null;
    if (typeof t.content === "string") longest = Math.max(longest, utf8Length(t.content));
  }
  return longest * shrink;
}

/**
 * Turns ids arriving one at a time into text deltas whose concatenation equals decode(all ids), without ever
 * splitting a multi-byte UTF-8 character.
 *
 * Why a window and not per-token decode: decoders are not per-token maps. Byte-level BPE (GPT-2 style) maps a
 * character of 3 UTF-8 bytes to up to 3 tokens; byte-fallback tokenizers emit <0xE4><0xBD><0xA0>; Metaspace
 * decoders strip the leading space of the first token only. So we decode a short window
 *   prefix = decode(ids[p:r]),  full = decode(ids[p:])
 * and emit full.slice(prefix.length) — the same first token starts both strings, so any first-token
 * special-casing cancels out (the algorithm of vLLM / HF TextStreamer). While `full` ends in U+FFFD the last
 * character is still incomplete: hold it back until the next id completes it (or flush() gives up at the end).
 */
export class IncrementalDetokenizer {
  private ids: number[] = [];
  private prefixOffset = 0;   // p: window start
  private readOffset = 0;     // r: ids before r have been emitted
  private emitted = "";
  private readonly skip: boolean;

  constructor(private readonly tok: TextTokenizer, opts: { skipSpecialTokens?: boolean } = {}) {
    this.skip = opts.skipSpecialTokens ?? true;
  }

  /** Add one id; returns the text it completes ("" while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.decodeRange(this.prefixOffset, this.readOffset);
    const full = this.decodeRange(this.prefixOffset, this.ids.length);
    if (full.length > prefix.length && !full.endsWith("\uFFFD")) {
      const delta = full.slice(prefix.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      this.emitted += delta;
      return delta;
    }
    return "";
  }

  /** End of stream: emit whatever is held back (an incomplete character decodes to U+FFFD, as in Python). */
  flush(): string {
    if (this.readOffset === this.ids.length) return "";
    const prefix = this.decodeRange(this.prefixOffset, this.readOffset);
    const full = this.decodeRange(this.prefixOffset, this.ids.length);
    const delta = full.startsWith(prefix) ? full.slice(prefix.length) : "";
    this.prefixOffset = this.readOffset = this.ids.length;
    this.emitted += delta;
    return delta;
  }

  /** All text emitted so far. */
  get text(): string {
    return this.emitted;
  }

  get tokenIds(): readonly number[] {
    return this.ids;
  }

  private decodeRange(a: number, b: number): string {
    return this.tok.decode(this.ids.slice(a, b), { skipSpecialTokens: this.skip });
  }
}
