// Chat templates and tokenization of untrusted text, off the calling thread and under limits.
//
// A model folder's chat template is code from the hub: `{% for i in range(100000000) %}` loops for minutes and a
// string doubled in a loop exhausts memory. Huge messages are the same problem for the tokenizer (1M CJK characters
// take a minute). So every render, and the tokenization of chat prompts and dataset samples, goes through one warm
// worker thread (text-worker.ts) with
//   - a heap limit (resourceLimits): a runaway allocation kills the worker, never the app;
//   - a deadline per phase (rendering one prompt, tokenizing one prompt), watched from here through shared memory
//     and enforced with worker.terminate(): a stuck template costs the caller one error, not a frozen server;
//   - a cap on the rendered length.
// Normal use stays cheap: the worker is started once and reused, parsed templates and loaded tokenizers are cached
// there, and many samples travel in one message (the worker answers in time slices of sliceMs).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { ChatMessage, ChatTemplate, RenderOptions } from "./chat-template.js";
import { PHASE, type TemplateSpec, type TextItem, type TextJob, type TextReply } from "./text-protocol.js";

export interface TextLimits {
  /** Rendering one prompt. */
  renderMs: number;
  /** Tokenizing one rendered prompt or message. */
  tokenizeMs: number;
  /** Loading a tokenizer.json in the worker (once per folder). */
  loadMs: number;
  /** The longest rendered prompt, in UTF-16 code units. */
  maxChars: number;
  /** The worker's old-generation heap. */
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

/** How often the deadline is checked while a job runs. */
const WATCH_MS = 20;

/** A template or text that hit one of the limits; the message names the folder and the limit. */
export class TextLimitError extends Error {}

export function textWorkerPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, "text-worker.js"), join(here, "../../out/electron/text/text-worker.js")];
  for (const p of candidates) if (existsSync(p)) return p;
  throw new Error(`the text worker is not built: none of ${candidates.join(", ")} exists; run "npm run build:ts"`);
}

const SPECIAL_KEYS = ["bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token", "additional_special_tokens"];

/** Only the keys render() reads: tokenizer_config.json can be large and travels with every job. */
export function templateSpec(t: ChatTemplate): TemplateSpec {
  const specialTokens: Record<string, unknown> = {};
  for (const k of SPECIAL_KEYS) if (t.specialTokens[k] !== undefined) specialTokens[k] = t.specialTokens[k];
  return { source: t.src.source, file: t.src.file, ...(t.src.dir ? { dir: t.src.dir } : {}), specialTokens };
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

interface Pending {
  job: TextJob;
  results: Array<string | number[] | number>;
  resolve: (r: Array<string | number[] | number>) => void;
  reject: (e: Error) => void;
}

export class BoundedText {
  readonly limits: TextLimits;
  private worker: Worker | null = null;
  private phase = new SharedArrayBuffer(16);
  private seq = 0;
  private queue: Pending[] = [];
  private current: { pending: Pending; seq: number; sentAt: number } | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(limits: Partial<TextLimits> = {}) {
    this.limits = { ...DEFAULT_TEXT_LIMITS, ...limits };
  }

  /** Render prompts with a chat template (the text, not tokenized). */
  async render(template: ChatTemplate, items: ReadonlyArray<{ messages: readonly ChatMessage[]; opts?: RenderOptions }>): Promise<string[]> {
    const r = await this.run({ template: templateSpec(template), tokenizerDir: null, output: "text", items: items.map((i) => ({ messages: [...i.messages], opts: i.opts ?? {} })) });
    return r as string[];
  }

  /** One chat prompt rendered and tokenized like transformers' apply_chat_template(tokenize=True). */
  async chatIds(template: ChatTemplate, tokenizerDir: string, messages: readonly ChatMessage[], opts: RenderOptions = {}): Promise<number[]> {
    const r = await this.run({ template: templateSpec(template), tokenizerDir, output: "ids", items: [{ messages: [...messages], opts }] });
    return r[0] as number[];
  }

  /** Token counts of many conversations rendered with the template (dataset samples). */
  async chatCounts(template: ChatTemplate, tokenizerDir: string, conversations: ReadonlyArray<readonly ChatMessage[]>, opts: RenderOptions = {}): Promise<number[]> {
    const r = await this.run({ template: templateSpec(template), tokenizerDir, output: "count", items: conversations.map((m) => ({ messages: [...m], opts })) });
    return r as number[];
  }

  /** Plain text tokenized with the folder's tokenizer (like TextTokenizer.encode). */
  async encode(tokenizerDir: string, text: string, opts: { addSpecialTokens?: boolean } = {}): Promise<number[]> {
    const r = await this.run({ template: null, tokenizerDir, output: "ids", items: [{ text, addSpecialTokens: opts.addSpecialTokens ?? true }] });
    return r[0] as number[];
  }

  /** Stop the worker; later calls are refused. */
  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.kill(new Error("the text worker was closed"));
    for (const p of this.queue.splice(0)) p.reject(new Error("the text worker was closed"));
    if (w) await w.terminate();
  }

  private run(job: Omit<TextJob, "maxChars" | "sliceMs">): Promise<Array<string | number[] | number>> {
    if (this.closed) return Promise.reject(new Error("the text worker was closed"));
    if (job.items.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.queue.push({ job: { ...job, maxChars: this.limits.maxChars, sliceMs: this.limits.sliceMs } as TextJob, results: [], resolve, reject });
      if (!this.current) this.next();
    });
  }

  private spawn(): Worker {
    const w = new Worker(textWorkerPath(), {
      workerData: { phase: this.phase },
      resourceLimits: { maxOldGenerationSizeMb: this.limits.heapMb, maxYoungGenerationSizeMb: 32, stackSizeMb: 4 },
    });
    // The worker never keeps the process alive: while a job runs, the watchdog interval does.
    w.unref();
    w.on("message", (reply: TextReply) => this.onReply(w, reply));
    w.on("error", (e: Error & { code?: string }) => {
      if (this.worker !== w) return;
      const oom = e.code === "ERR_WORKER_OUT_OF_MEMORY";
      this.kill(oom ? new TextLimitError(this.describe("memory")) : new Error(`the text worker failed: ${e.message}`));
    });
    w.on("exit", (code) => {
      if (this.worker !== w) return;
      this.kill(new Error(`the text worker stopped (code ${code})`));
    });
    return w;
  }

  private next(): void {
    const pending = this.queue.shift();
    if (!pending) {
      this.stopWatchdog();
      return;
    }
    this.send(pending);
  }

  private send(pending: Pending): void {
    if (!this.worker) {
      // Fresh cells per worker: a terminated one may still write its phase into the old ones.
      this.phase = new SharedArrayBuffer(16);
      this.worker = this.spawn();
    }
    const seq = ++this.seq;
    this.current = { pending, seq, sentAt: Date.now() };
    this.worker.postMessage({ seq, job: pending.job, from: pending.results.length });
    if (!this.watchdog) this.watchdog = setInterval(() => this.watch(), WATCH_MS);
  }

  private onReply(w: Worker, reply: TextReply): void {
    const cur = this.current;
    if (this.worker !== w || !cur || reply.seq !== cur.seq) return;
    const p = cur.pending;
    this.current = null;
    if (!reply.ok) {
      p.reject(this.failure(p.job, reply));
    } else {
      p.results.push(...reply.results);
      if (p.results.length < p.job.items.length) {
        this.send(p);
        return;
      }
      p.resolve(p.results);
    }
    this.next();
  }

  private failure(job: TextJob, reply: Extract<TextReply, { ok: false }>): Error {
    const of = templateLabel(job);
    if (reply.kind === "output") return new TextLimitError(`chat template of ${of} produced more than ${this.limits.maxChars} characters (${reply.message})`);
    if (reply.kind === "recursion") return new TextLimitError(`chat template of ${of} recursed too deeply (${reply.message})`);
    return new Error(reply.message);
  }

  /** The watchdog: terminate the worker when its current phase has run past its limit. */
  private watch(): void {
    const cur = this.current;
    if (!cur) return;
    const cells = new Int32Array(this.phase, 0, 2);
    const phase = Atomics.load(cells, 0);
    const since = new Float64Array(this.phase, 8, 1)[0];
    const now = Date.now();
    const limit = phase === PHASE.render ? this.limits.renderMs : phase === PHASE.tokenize ? this.limits.tokenizeMs : phase === PHASE.load ? this.limits.loadMs : null;
    if (limit !== null && since >= cur.sentAt && now - since > limit) this.kill(new TextLimitError(this.describe("time")));
  }

  /** What the current job was doing when it was stopped, with the limit it hit. */
  private describe(what: "time" | "memory"): string {
    const cur = this.current;
    const job = cur?.pending.job;
    const phase = Atomics.load(new Int32Array(this.phase, 0, 2), 0);
    const item = Atomics.load(new Int32Array(this.phase, 0, 2), 1);
    const of = job ? templateLabel(job) : "?";
    const many = job && job.items.length > 1 ? ` (item ${item + 1} of ${job.items.length})` : "";
    if (phase === PHASE.render) {
      return what === "time"
        ? `chat template of ${of} did not finish within ${seconds(this.limits.renderMs)}${many}`
        : `chat template of ${of} used more than ${this.limits.heapMb} MB of memory${many}`;
    }
    const dir = job?.tokenizerDir ?? of;
    if (phase === PHASE.load) {
      return what === "time"
        ? `loading the tokenizer of ${dir} did not finish within ${seconds(this.limits.loadMs)}`
        : `loading the tokenizer of ${dir} used more than ${this.limits.heapMb} MB of memory`;
    }
    return what === "time"
      ? `tokenizing with the tokenizer of ${dir} did not finish within ${seconds(this.limits.tokenizeMs)}${many}`
      : `tokenizing with the tokenizer of ${dir} used more than ${this.limits.heapMb} MB of memory${many}`;
  }

  /** Fail the job in flight with `error`, drop the worker (a fresh one serves the next job), go on with the queue. */
  private kill(error: Error): void {
    const w = this.worker;
    const cur = this.current;
    this.worker = null;
    this.current = null;
    if (w) void w.terminate().catch(() => undefined);
    if (cur) cur.pending.reject(error);
    if (!this.closed) this.next();
    else this.stopWatchdog();
  }

  private stopWatchdog(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
  }
}

function templateLabel(job: TextJob): string {
  return job.template?.dir ?? job.template?.file ?? job.tokenizerDir ?? "?";
}

let shared: BoundedText | null = null;

/** The process's text worker: started on first use, kept warm, replaced after a limit kills it. */
export function boundedText(): BoundedText {
  if (!shared) shared = new BoundedText();
  return shared;
}
