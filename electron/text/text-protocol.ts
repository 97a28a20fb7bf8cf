// Messages of the text side's two hops: bounded-text.ts (the app) <-> text-process.ts (the text process), and
// text-thread.ts (in that process) <-> text-worker.ts (the worker thread that renders and tokenizes under limits).
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

export type JobInput = Omit<TextJob, "maxChars" | "sliceMs">;
export type JobResult = Array<string | number[] | number>;

export interface TextLimits {
  /** Rendering one prompt. */
  renderMs: number;
  /** Tokenizing one rendered prompt or message. */
  tokenizeMs: number;
  /** Loading a tokenizer.json in the worker (once per folder). */
  loadMs: number;
  /** The longest rendered prompt, in UTF-16 code units. */
  maxChars: number;
  /** The worker thread's old-generation heap. */
  heapMb: number;
  sliceMs: number;
}

export const DEFAULT_TEXT_LIMITS: TextLimits = {
  // Real templates render a long conversation in a few milliseconds; half a second is a loop gone wild.
  renderMs: 500,
  tokenizeMs: 10_000,
  loadMs: 60_000,
  // Far beyond any context (a 128k-token prompt is ~500k characters), far below what exhausts the heap.
  maxChars: 8_000_000,
  heapMb: 1024,
  sliceMs: 50,
};

/** A template or text that hit one of the limits; the message names the folder and the limit. */
export class TextLimitError extends Error {}

/** Between bounded-text.ts (the app) and text-process.ts (the text process). */
export type ProcessRequest = { type: "config"; limits: TextLimits } | { type: "run"; seq: number; job: JobInput };
export type ProcessReply =
  | { type: "done"; seq: number; ok: true; result: JobResult }
  | { type: "done"; seq: number; ok: false; limit: boolean; message: string }
  | { type: "slow"; seq: number; phase: number; item: number };

/** The worker's current phase, in the shared cells the parent's watchdog reads. */
export const PHASE = { idle: 0, render: 1, load: 2, tokenize: 3 } as const;

export const TEMPLATE_CACHE = 8;
export const TOKENIZER_CACHE = 4;
