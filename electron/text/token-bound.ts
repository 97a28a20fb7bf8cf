// A lower bound on how many tokens a text encodes to, without tokenizing it: what lets the app refuse a message that
// cannot fit the context (1M characters take a minute to tokenize) in a millisecond.
//
// A BPE token's string is never shorter in UTF-8 than the normalized bytes it covers: byte-level BPE writes each
// byte as one character of 1 or 2 UTF-8 bytes (every byte >= 0x80 as 2 bytes >= 0x80), Metaspace writes a space as
// "▁" (3 bytes), and a byte-fallback token "<0xE4>" covers exactly one byte. So on the normalized text,
//   tokens >= bytes / (the longest token's bytes)   and   tokens >= non-ASCII bytes / (the most non-ASCII bytes in a token),
// the second being what makes the bound useful for Chinese: a vocabulary's longest entries are runs of ASCII
// ("--------..."), its CJK entries are a few characters long. The normalizer is applied first with the JavaScript
// equivalent of each step (String.prototype.normalize, toLowerCase, literal replace, ...); a tokenizer whose
// normalizer has no such equivalent (a regex Replace, a precompiled charsmap), whose unknown token covers a whole
// word (WordPiece, WordLevel, Unigram, BPE with fused <unk>), or whose added tokens swallow whitespace
// (lstrip/rstrip) has no bound.

export interface TokenBound {
  /** The most UTF-8 bytes of normalized text one token covers. */
  maxBytes: number;
  /** The most bytes >= 0x80 of normalized text one token covers. */
  maxHighBytes: number;
  normalize: (s: string) => string;
  minTokens(text: string): number;
}

type Normalize = (s: string) => string;

const utf8Length = (s: string) => Buffer.byteLength(s, "utf8");

/** UTF-8 bytes >= 0x80 in s: 2 per code point below U+0800, 3 below U+10000 (surrogate pairs: 4 per pair). */
function highBytes(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    n += c < 0x800 ? 2 : c >= 0xd800 && c <= 0xdfff ? 2 : 3;
  }
  return n;
}

/** The normalizer of tokenizer.json as a JavaScript function, or null when it has none we can trust. */
function normalizerFn(n: unknown): Normalize | null {
  if (n === null || n === undefined) return (s) => s;
  const node = n as { type?: string; normalizers?: unknown[]; pattern?: { String?: unknown }; content?: unknown; prepend?: unknown; left?: unknown; right?: unknown };
  switch (node.type) {
    case "NFC": case "NFD": case "NFKC": case "NFKD": {
      const form = node.type;
      return (s) => s.normalize(form);
    }
    case "Lowercase":
      return (s) => s.toLowerCase();
    case "Prepend": {
      const p = node.prepend;
      return typeof p === "string" ? (s) => (s.length > 0 ? p + s : s) : null;
    }
    case "Replace": {
      const from = node.pattern?.String;
      const to = node.content;
      if (typeof from !== "string" || from.length === 0 || typeof to !== "string") return null;
      return (s) => s.split(from).join(to);
    }
    case "Strip": {
      const left = node.left !== false, right = node.right !== false;
      return (s) => (left && right ? s.trim() : left ? s.trimStart() : right ? s.trimEnd() : s);
    }
    case "StripAccents":
      return (s) => s.replace(/\p{Mn}/gu, "");
    case "Sequence": {
      const steps = (node.normalizers ?? []).map(normalizerFn);
      if (steps.some((f) => f === null)) return null;
      return (s) => (steps as Normalize[]).reduce((t, f) => f(t), s);
    }
    default:
      return null;
  }
}

const BYTE_FALLBACK = /^<0x[0-9A-Fa-f]{2}>$/;

export function tokenBound(tokenizerJson: Record<string, unknown>): TokenBound | null {
  const model = tokenizerJson.model as { type?: string; vocab?: unknown; unk_token?: unknown; fuse_unk?: unknown; byte_fallback?: unknown } | undefined;
  if (!model || model.type !== "BPE" || !model.vocab || typeof model.vocab !== "object") return null;
  if (model.unk_token !== null && model.unk_token !== undefined && model.fuse_unk === true && model.byte_fallback !== true) return null;
  const normalize = normalizerFn(tokenizerJson.normalizer);
  if (!normalize) return null;
  // An unknown character (no byte fallback) is one token of up to 4 bytes, whatever the unk token's spelling.
  let maxBytes = 4;
  let maxHighBytes = 4;
  const consider = (token: string) => {
    if (BYTE_FALLBACK.test(token)) return; // one byte: within the 4 above
    maxBytes = Math.max(maxBytes, utf8Length(token));
    maxHighBytes = Math.max(maxHighBytes, highBytes(token));
  };
  for (const token of Object.keys(model.vocab as Record<string, unknown>)) consider(token);
  for (const t of (tokenizerJson.added_tokens as Array<{ content?: unknown; lstrip?: unknown; rstrip?: unknown }> | undefined) ?? []) {
    if (t.lstrip === true || t.rstrip === true) return null;
    if (typeof t.content === "string") consider(t.content);
  }
  return {
    maxBytes,
    maxHighBytes,
    normalize,
    minTokens(text: string): number {
      const s = normalize(text);
      return Math.max(Math.ceil(utf8Length(s) / maxBytes), Math.ceil(highBytes(s) / maxHighBytes));
    },
  };
}
