// The tokenizer as GGUF metadata (tokenizer.ggml.*), from tokenizer.json + tokenizer_config.json, the way
// llama.cpp's converter writes it:
// - byte-level BPE (GPT-2 style: Llama 3, Qwen, OLMoE, Hunyuan): tokenizer.ggml.model = "gpt2", the pre-tokenizer
//   name (.pre) llama.cpp knows for the split regex, the tokens in id order, their types and the merges.
// - SentencePiece-style BPE with byte fallback (Metaspace: Mistral/Mixtral): model = "llama", tokens with scores
//   and types (BYTE for <0xXX>). llama.cpp's SPM tokenizer merges the adjacent pair whose joined token has the
//   highest score, so a token's score is minus the rank of the merge that makes it: the same merge order as the
//   BPE merges list.
// Ids missing from the tokenizer up to config.vocab_size (padded embeddings) become "[PAD<id>]" tokens of type
// UNUSED, as convert_hf_to_gguf does.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { readJsonFile } from "../engine/model-folder.js";
import { tokenContent } from "../text/tokenizer.js";
import { kv, type GGUFKV } from "./format.js";

// gguf TokenType
const NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6;

// Split regexes of the pre-tokenizers llama.cpp implements (llama-vocab.cpp), as tokenizer.json writes them.
const GPT2_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const PRE_BY_REGEX: Record<string, string> = {
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "qwen2",
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "llama-bpe",
  [GPT2_REGEX]: "gpt-2",
};

type Json = Record<string, unknown>;

/** llama.cpp's pre-tokenizer name for a byte-level BPE tokenizer.json, or an error naming what is unknown. */
export function preTokenizerName(tj: Json, file: string): string {
  const pre = tj.pre_tokenizer as Json | null | undefined;
  if (pre && pre.type === "ByteLevel" && pre.use_regex !== false) return "gpt-2"; // ByteLevel's built-in regex is GPT-2's
  if (pre && pre.type === "Sequence" && Array.isArray(pre.pretokenizers)) {
    const parts = pre.pretokenizers as Json[];
    const split = parts.find((p) => p.type === "Split");
    const regex = (split?.pattern as Json | undefined)?.Regex;
    const byteLevel = parts.find((p) => p.type === "ByteLevel");
    if (typeof regex === "string" && byteLevel && PRE_BY_REGEX[regex]) return PRE_BY_REGEX[regex];
    if (typeof regex === "string") throw new Error(`${file}: pre_tokenizer split regex ${JSON.stringify(regex)} is not one llama.cpp implements (known: qwen2, llama-bpe, gpt-2)`);
  }
  throw new Error(`${file}: pre_tokenizer ${JSON.stringify(pre)?.slice(0, 120)} is not one llama.cpp implements for byte-level BPE`);
}

export interface VocabInfo {
  kvs: GGUFKV[];
  model: "gpt2" | "llama";
  tokenCount: number;
}

/**
 * Tokenizer metadata for a model folder. vocabSize: config.vocab_size (rows of the embedding), which the token list
 * is padded to; the tokenizer may not have more tokens than that.
 */
export function tokenizerKVs(dir: string, config: Json, vocabSize: number): VocabInfo {
  const tjPath = join(dir, "tokenizer.json");
  if (!existsSync(tjPath)) throw new Error(`${tjPath}: file not found (GGUF export needs the tokenizer)`);
  let tj: Json;
  try {
    tj = JSON.parse(readFileSync(tjPath, "utf8"));
  } catch (e) {
    throw new Error(`${tjPath}: invalid JSON (${(e as Error).message})`);
  }
  const tcPath = join(dir, "tokenizer_config.json");
  const tc = readJsonFile(tcPath, true) ?? {};
  const model = tj.model as Json;
  if (!model || model.type !== "BPE") throw new Error(`${tjPath}: model.type ${JSON.stringify(model?.type)}: only BPE tokenizers can be exported to GGUF here`);
  if (!model.vocab || typeof model.vocab !== "object" || Array.isArray(model.vocab)) throw new Error(`${tjPath}: model.vocab is missing or not an object`);
  const vocab = model.vocab as Record<string, number>;
  const added = (Array.isArray(tj.added_tokens) ? tj.added_tokens : []) as Array<{ id: number; content: string; special?: boolean }>;

  // Every id indexes the GGUF token list, which has one entry per embedding row: integers in [0, vocab_size).
  const checkId = (id: unknown, what: string) => {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) throw new Error(`${tjPath}: ${what} has id ${JSON.stringify(id)}, not a token id (a non-negative integer)`);
    if (id >= vocabSize) throw new Error(`${tjPath}: token id ${id} is outside config.json vocab_size ${vocabSize} (the embedding has ${vocabSize} rows)`);
  };
  const byId = new Map<number, string>();
  for (const [t, id] of Object.entries(vocab)) {
    checkId(id, `model.vocab token ${JSON.stringify(t.slice(0, 40))}`);
    byId.set(id, t);
  }
  const addedById = new Map<number, { content: string; special: boolean }>();
  for (const [i, a] of added.entries()) {
    if (!a || typeof a.content !== "string") throw new Error(`${tjPath}: added_tokens[${i}] has no "content" string`);
    checkId(a.id, `added_tokens[${i}]`);
    byId.set(a.id, a.content);
    addedById.set(a.id, { content: a.content, special: a.special === true });
  }
  if (byId.size === 0) throw new Error(`${tjPath}: the tokenizer has no tokens`);
  const idOf = (content: string | null): number | undefined => {
    if (content === null) return undefined;
    for (const a of added) if (a.content === content) return a.id;
    return vocab[content];
  };

  const rawMerges = (model.merges ?? []) as Array<string | [string, string]>;
  if (!Array.isArray(rawMerges)) throw new Error(`${tjPath}: model.merges is not a list`);
  const merges = rawMerges.map((m, i) => {
    if (typeof m === "string" && m.includes(" ")) return m;
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") return `${m[0]} ${m[1]}`;
    throw new Error(`${tjPath}: model.merges[${i}] is not "a b" or ["a", "b"]`);
  });

  const pre = tj.pre_tokenizer as Json | null | undefined;
  const isSpm = model.byte_fallback === true && pre?.type === "Metaspace";
  const tokens: string[] = new Array(vocabSize);
  const types = new Int32Array(vocabSize);
  const kvs: GGUFKV[] = [];
  if (isSpm) {
    const unk = typeof model.unk_token === "string" ? vocab[model.unk_token] : undefined;
    const scores = new Float32Array(vocabSize);
    const rank = new Map<string, number>();
    merges.forEach((m, r) => {
      const sp = m.indexOf(" ");
      const joined = m.slice(0, sp) + m.slice(sp + 1);
      if (!rank.has(joined)) rank.set(joined, r);
    });
    for (let i = 0; i < vocabSize; i++) {
      const t = byId.get(i);
      if (t === undefined) {
        tokens[i] = `[PAD${i}]`;
        types[i] = UNUSED;
        scores[i] = -1000;
        continue;
      }
      tokens[i] = t;
      const a = addedById.get(i);
      if (i === unk) types[i] = UNKNOWN;
      else if (a) types[i] = a.special ? CONTROL : USER_DEFINED;
      else if (/^<0x[0-9A-Fa-f]{2}>$/.test(t)) types[i] = BYTE;
      else types[i] = NORMAL;
      scores[i] = rank.has(t) ? -rank.get(t)! : 0;
    }
    kvs.push(kv.str("tokenizer.ggml.model", "llama"), kv.str("tokenizer.ggml.pre", "default"));
    kvs.push(kv.strs("tokenizer.ggml.tokens", tokens), kv.f32s("tokenizer.ggml.scores", scores), kv.i32s("tokenizer.ggml.token_type", types));
    kvs.push(kv.bool("tokenizer.ggml.add_space_prefix", pre!.prepend_scheme !== "never" && pre!.add_prefix_space !== false));
  } else {
    const preName = preTokenizerName(tj, tjPath);
    for (let i = 0; i < vocabSize; i++) {
      const t = byId.get(i);
      if (t === undefined) {
        tokens[i] = `[PAD${i}]`;
        types[i] = UNUSED;
        continue;
      }
      tokens[i] = t;
      const a = addedById.get(i);
      types[i] = a ? (a.special ? CONTROL : USER_DEFINED) : NORMAL;
    }
    kvs.push(kv.str("tokenizer.ggml.model", "gpt2"), kv.str("tokenizer.ggml.pre", preName));
    kvs.push(kv.strs("tokenizer.ggml.tokens", tokens), kv.i32s("tokenizer.ggml.token_type", types), kv.strs("tokenizer.ggml.merges", merges));
  }

  // Special ids: tokenizer_config.json's tokens first (what transformers uses), config.json's *_token_id second.
  const firstId = (v: unknown): number | undefined => (typeof v === "number" ? v : Array.isArray(v) && typeof v[0] === "number" ? v[0] : undefined);
  const special = (name: "bos" | "eos" | "unk" | "pad", key: string) => {
    const id = idOf(tokenContent(tc[`${name}_token`])) ?? firstId(config[`${name}_token_id`]);
    if (id !== undefined && id !== null && id >= 0 && id < vocabSize) kvs.push(kv.u32(key, id));
  };
  special("bos", "tokenizer.ggml.bos_token_id");
  special("eos", "tokenizer.ggml.eos_token_id");
  special("unk", "tokenizer.ggml.unknown_token_id");
  special("pad", "tokenizer.ggml.padding_token_id");

  // add_bos_token: tokenizer_config.json when it says; else whether the post-processor's template starts with the BOS.
  const bos = tokenContent(tc.bos_token);
  let addBos = typeof tc.add_bos_token === "boolean" ? tc.add_bos_token : false;
  if (typeof tc.add_bos_token !== "boolean") {
    const single = ((tj.post_processor as Json | null)?.single ?? []) as Array<{ SpecialToken?: { id: string } }>;
    addBos = bos !== null && single.some((p) => p.SpecialToken?.id === bos);
  }
  kvs.push(kv.bool("tokenizer.ggml.add_bos_token", addBos));
  if (typeof tc.add_eos_token === "boolean") kvs.push(kv.bool("tokenizer.ggml.add_eos_token", tc.add_eos_token));

  const template = chatTemplate(dir, tc);
  if (template !== null) kvs.push(kv.str("tokenizer.chat_template", template));
  return { kvs, model: isSpm ? "llama" : "gpt2", tokenCount: byId.size };
}

/** The chat template: tokenizer_config.json's chat_template (string, or the "default" of a named list), else chat_template.jinja / .json. */
function chatTemplate(dir: string, tc: Json): string | null {
  const t = tc.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const d = (t as Array<{ name?: string; template?: string }>).find((x) => x.name === "default");
    if (d && typeof d.template === "string") return d.template;
  }
  const jinja = join(dir, "chat_template.jinja");
  if (existsSync(jinja)) return readFileSync(jinja, "utf8");
  const json = readJsonFile(join(dir, "chat_template.json"), true);
  if (json && typeof json.chat_template === "string") return json.chat_template;
  return null;
}
