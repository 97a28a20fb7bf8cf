// Messages between bounded-text.ts (any thread that needs a chat template rendered or a prompt tokenized) and
// text-worker.ts (the worker thread that does it under limits).
import type { ChatMessage, RenderOptions } from "./chat-template.js";

/** What the worker needs to rebuild a ChatTemplate: its source and the special tokens it refers to by name. */
export interface TemplateSpec {
  source: string;
  file: string;
  dir?: string;
  specialTokens: Record<string, unknown>;
}

export type TextItem = { messages: ChatMessage[]; opts: RenderOptions } | { text: string; addSpecialTokens: boolean };

export interface TextJob {
  template: TemplateSpec | null;
  /** The model folder whose tokenizer.json encodes the text (output "ids" / "count"). */
  tokenizerDir: string | null;
  /** text: the rendered prompts; ids: their token ids; count: how many ids. */
  output: "text" | "ids" | "count";
  items: TextItem[];
  /** A rendered prompt longer than this is refused. */
  maxChars: number;
  /** The worker replies once this much time has gone into one message, with the items done so far. */
  sliceMs: number;
}

export interface TextRequest {
  seq: number;
  job: TextJob;
  /** Start at this item (the ones before were done by earlier slices). */
  from: number;
}

export type TextReply =
  | { seq: number; ok: true; results: Array<string | number[] | number> }
  | { seq: number; ok: false; kind: "output" | "recursion" | "error"; item: number; message: string };

/** The worker's current phase, in the shared cells the parent's watchdog reads. */
export const PHASE = { idle: 0, render: 1, load: 2, tokenize: 3 } as const;

export const TEMPLATE_CACHE = 8;
export const TOKENIZER_CACHE = 4;
