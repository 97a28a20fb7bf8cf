// Training samples: jsonl records (any format of electron/datasets/formats.ts) → token ids and labels.
//
// Rendering: each conversation goes through the model's own chat template in the bounded text process
// (electron/text/bounded-text.ts), with the same default system prompt as `generate` / chat (so what is trained is
// what inference sees), and is tokenized like chat prompts (tokenizer.encodeChat).
//
// Which tokens carry loss (loss_on "assistant"): for assistant message i, render
//   P_i = messages[0..i)   with the generation prompt (…the assistant header)
//   Q_i = messages[0..i]   without it (…the reply and the template's end-of-turn)
// and tokenize both. When the tokens of P_i and Q_i are prefixes of the full conversation's tokens, the reply's span
// is [len(P_i), len(Q_i)): the reply and the template's end-of-turn tokens (as trl's assistant-only loss), never the
// header. A template whose prefixes do not tokenize as prefixes of the whole (rewriting earlier turns) leaves the
// sample out with a counted reason rather than guess.
import { readFileSync } from "node:fs";
import { parseRecord } from "../datasets/formats.js";
import type { LoadedModel } from "../engine/engine.js";
import type { NativeTrainSeq } from "../engine/addon.js";
import { boundedText } from "../text/bounded-text.js";
import type { ChatMessage } from "../text/chat-template.js";

export interface PreparedData {
  samples: NativeTrainSeq[];
  lines: number;
  rejected: number;         // not a sample (bad JSON, unknown shape, ...)
  truncated: number;        // over max_seq_length: cut to it
  tooLong: number;          // nothing left to learn after the cut: left out
  unaligned: number;        // assistant spans not found as token prefixes: left out
  firstError?: string;
}

export function readJsonl(path: string): { messages: ChatMessage[][]; lines: number; rejected: number; firstError?: string } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseJsonl(text);
}

/** jsonl text (a file's, or a library dataset's export) → conversations, with rejected lines counted. */
export function parseJsonl(text: string): { messages: ChatMessage[][]; lines: number; rejected: number; firstError?: string } {
  const out: ChatMessage[][] = [];
  let lines = 0, rejected = 0;
  let firstError: string | undefined;
  const enc = new TextEncoder();
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    lines++;
    const r = parseRecord(enc.encode(line));
    if (!r.ok) {
      rejected++;
      firstError ??= `line ${i + 1}: ${r.error}`;
      return;
    }
    out.push(r.messages.map((m) => ({ role: m.role, content: m.content })) as ChatMessage[]);
  });
  return { messages: out, lines, rejected, firstError };
}

function isPrefix(p: number[], of: number[]): boolean {
  if (p.length > of.length) return false;
  for (let i = 0; i < p.length; i++) if (p[i] !== of[i]) return false;
  return true;
}

/** Conversations → ids/labels (loss on assistant spans or all tokens), cut to maxLen. */
export async function prepareSamples(model: LoadedModel, convs: ChatMessage[][], opts: { maxLen: number; lossOn: "assistant" | "all" }): Promise<Omit<PreparedData, "lines" | "rejected">> {
  const template = model.template;
  if (!template) throw new Error(`${model.info.dir}: the model has no chat template (tokenizer_config.json "chat_template" or chat_template.jinja): training renders every sample with it`);
  // one render job for every text needed: the full conversation, then P_i and Q_i per assistant message
  const items: { messages: ChatMessage[]; opts: { addGenerationPrompt: boolean } }[] = [];
  const plan: { full: number; spans: [number, number][] }[] = [];
  for (const m of convs) {
    const full = items.length;
    items.push({ messages: m, opts: { addGenerationPrompt: false } });
    const spans: [number, number][] = [];
    if (opts.lossOn === "assistant")
      m.forEach((msg, i) => {
        if (msg.role !== "assistant") return;
        spans.push([items.length, items.length + 1]);
        items.push({ messages: m.slice(0, i), opts: { addGenerationPrompt: true } });
        items.push({ messages: m.slice(0, i + 1), opts: { addGenerationPrompt: false } });
      });
    plan.push({ full, spans });
  }
  const texts = items.length ? await boundedText().render(template, items) : [];
  const ids = texts.map((t) => model.tokenizer.encodeChat(t));
  const samples: NativeTrainSeq[] = [];
  let truncated = 0, tooLong = 0, unaligned = 0;
  for (const p of plan) {
    const full = ids[p.full];
    let labels: number[];
    if (opts.lossOn === "all") {
      labels = [...full];
    } else {
      labels = full.map(() => -100);
      let ok = true;
      for (const [a, b] of p.spans) {
        const P = ids[a], Q = ids[b];
        if (!isPrefix(P, full) || !isPrefix(Q, full) || Q.length < P.length) { ok = false; break; }
        for (let t = P.length; t < Q.length; t++) labels[t] = full[t];
      }
      if (!ok) { unaligned++; continue; }
    }
    let seqIds = full;
    if (full.length > opts.maxLen) {
      truncated++;
      seqIds = full.slice(0, opts.maxLen);
      labels = labels.slice(0, opts.maxLen);
    }
    // position t learns labels[t + 1]: a sample needs a target after its first token
    if (!labels.slice(1).some((l) => l !== -100)) {
      if (full.length > opts.maxLen) tooLong++;
      else unaligned++;
      continue;
    }
    samples.push({ ids: seqIds, labels });
  }
  return { samples, truncated, tooLong, unaligned };
}

/** mulberry32: the per-epoch shuffle's generator (seeded from seed and epoch, so any step's batch is known). */
function mulberry32(a: number): () => number {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher–Yates permutation of [0, n) for (seed, epoch). */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  const r = mulberry32((Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b) ^ Math.floor(seed / 4294967296)) | 0);
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}
