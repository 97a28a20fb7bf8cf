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
import { tokenBound, type TokenBound } from "./token-bound.js";

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
  /** How few tokens a text can possibly encode to, from its length (null: this tokenizer has no such bound). */
  readonly bound: TokenBound | null;
  /** tokenizer.json's "decoder" (token-bytes.ts reads which kind it is). */
  readonly decoder: unknown;

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
    this.bound = tokenBound(tokenizerJson);
    this.decoder = tokenizerJson.decoder ?? null;
  }

  /**
   * A lower bound on the number of tokens `text` encodes to, without tokenizing it (0 when the tokenizer has no
   * bound): see token-bound.ts. Costs a normalization and one pass over the string.
   */
  minTokens(text: string): number {
    return this.bound && text.length > 0 ? this.bound.minTokens(text) : 0;
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
