// The bytes each token id stands for, for constrained generation (native/runtime/json_constraint.h): the grammar
// runs on bytes, the model draws ids, so the engine needs every id's bytes once per model.
//
// Per id this runs the tokenizer's decoder on that id alone, the way Hugging Face tokenizers does:
//   * ByteLevel (GPT-2, Qwen, Llama 3, Hunyuan, OLMoE): each character of the token is one byte through the inverse
//     of GPT-2's bytes_to_unicode table; a token with a character outside the table (an added token such as
//     "<think>") is its own UTF-8, as tokenizers' ByteLevel decoder does.
//   * Metaspace / Replace("▁" -> " ") + ByteFallback (SentencePiece: Llama 2, Mistral, Mixtral): "<0xNN>" is the byte
//     NN, otherwise the token's UTF-8 with "▁" as a space. The decoder's strip of the very first space is not applied
//     (a constraint never starts the text).
//   * any other decoder: decode([id]), kept only when it is whole UTF-8 (no U+FFFD).
// Special tokens have no bytes: a constraint never allows them. Ids past the tokenizer's vocabulary (embedding rows
// padded for speed) have none either.
import type { TextTokenizer } from "./tokenizer.js";

export interface TokenBytesTable {
  /** Token i is data[offsets[i], offsets[i + 1]). */
  data: Uint8Array;
  offsets: Uint32Array;
}

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upwards in byte order. */
function byteLevelInverse(): Map<string, number> {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const inv = new Map<string, number>();
  let next = 0;
  for (let b = 0; b < 256; b++) {
    inv.set(String.fromCodePoint(printable(b) ? b : 256 + next++), b);
  }
  return inv;
}

type DecoderKind = "byte-level" | "metaspace" | "other";

function decoderTypes(d: unknown): string[] {
  if (!d || typeof d !== "object") return [];
  const o = d as { type?: unknown; decoders?: unknown };
  const own = typeof o.type === "string" ? [o.type] : [];
  return Array.isArray(o.decoders) ? [...own, ...o.decoders.flatMap(decoderTypes)] : own;
}

export function decoderKind(decoder: unknown): DecoderKind {
  const types = decoderTypes(decoder);
  if (types.includes("ByteLevel")) return "byte-level";
  if (types.includes("Metaspace") || (types.includes("Replace") && types.includes("ByteFallback"))) return "metaspace";
  return "other";
}

const utf8 = new TextEncoder();

/** Bytes of every id in [0, vocabSize) (the model's vocabulary, which may be larger than the tokenizer's). */
export function tokenBytes(tok: TextTokenizer, vocabSize: number): TokenBytesTable {
  const kind = decoderKind(tok.decoder);
  const inverse = kind === "byte-level" ? byteLevelInverse() : null;
  const parts: Uint8Array[] = [];
  const offsets = new Uint32Array(vocabSize + 1);
  let total = 0;
  const none = new Uint8Array(0);
  for (let id = 0; id < vocabSize; id++) {
    let bytes = none;
    const token = tok.specialIds.has(id) ? undefined : tok.idToToken(id);
    if (token !== undefined && token.length > 0) {
      if (inverse) {
        const out: number[] = [];
        for (const ch of token) {
          const b = inverse.get(ch);
          if (b === undefined) { out.length = 0; break; }
          out.push(b);
        }
        bytes = out.length ? Uint8Array.from(out) : utf8.encode(token);
      } else if (kind === "metaspace") {
        const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(token);
        bytes = m ? Uint8Array.of(parseInt(m[1], 16)) : utf8.encode(token.replaceAll("\u2581", " "));
      } else {
        const text = tok.decode([id]);
        if (!text.includes("\uFFFD")) bytes = utf8.encode(text);
      }
    }
    parts.push(bytes);
    total += bytes.length;
    offsets[id + 1] = total;
  }
  const data = new Uint8Array(total);
  for (let id = 0; id < vocabSize; id++) data.set(parts[id], offsets[id]);
  return { data, offsets };
}
