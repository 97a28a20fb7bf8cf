// Chat templates and tokenization of untrusted text, away from the calling thread and under limits.
//
// A model folder's chat template is code from the hub: `{% for i in range(100000000) %}` loops for minutes, and a
// string doubled in a loop exhausts memory. Huge messages are the same problem for the tokenizer (1M CJK characters
// take a minute). So every render in the app, and the tokenization of chat prompts and dataset samples, goes
// through here: one warm text process (text-process.ts) whose worker thread (text-thread.ts) runs them with a
// deadline per phase, a heap limit and a cap on the rendered length. Any of those ends the job in a TextLimitError
// naming the folder and the limit ("chat template of <dir> did not finish within 500 ms"); if V8 aborts the text
// process itself (one allocation beyond the heap), the job fails the same way and the next one starts a fresh
// process. The caller's thread only posts a message and waits.
//
// How the process is started is pluggable, like the engine worker's: child_process.fork by default (CLI, serve,
// tests); Electron passes its utilityProcess adapter (configureBoundedText in services/app.ts).
import { fork, type ChildProcess } from "node:child_process";
import type { ChatMessage, ChatTemplate, RenderOptions } from "./chat-template.js";
import {
  DEFAULT_TEXT_LIMITS,
  PHASE,
  TextLimitError,
  type JobInput,
  type JobResult,
  type ProcessReply,
  type ProcessRequest,
  type TemplateSpec,
  type TextLimits,
} from "./text-protocol.js";
import { compiledTextModule, describeLimit, templateLabel } from "./text-thread.js";

export { DEFAULT_TEXT_LIMITS, TextLimitError, type TextLimits } from "./text-protocol.js";

/** A started text process, whatever started it (the shape of EngineHost's WorkerProcess). */
export interface TextProcess {
  send(message: ProcessRequest): void;
  on(event: "message", listener: (message: ProcessReply) => void): unknown;
  on(event: "exit", listener: (code: number | null, signal: NodeJS.Signals | string | null) => void): unknown;
  kill(): void;
  /** Whether the process keeps this one alive (only while jobs are pending); absent where the host manages that. */
  setKeepAlive?(on: boolean): void;
}
export type TextProcessSpawner = (modulePath: string) => TextProcess;

function forkTextProcess(modulePath: string): TextProcess {
  // Its only output would be V8's fatal out-of-memory report; the job's error already says what happened, and a CLI
  // error stays one line.
  const child: ChildProcess = fork(modulePath, [], { stdio: ["ignore", "ignore", "ignore", "ipc"] });
  const channel = () => (child as unknown as { channel?: { ref(): void; unref(): void } }).channel;
  return {
    send: (m) => {
      if (child.connected) child.send(m);
    },
    on: (event: "message" | "exit", listener: (...args: never[]) => void) => child.on(event, listener as (...args: unknown[]) => void),
    kill: () => {
      child.kill("SIGKILL");
    },
    setKeepAlive(on) {
      if (on) {
        child.ref();
        channel()?.ref();
      } else {
        child.unref();
        channel()?.unref();
      }
    },
  };
}

const SPECIAL_KEYS = ["bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token", "additional_special_tokens"];

/** What the text process needs of a ChatTemplate: only the keys render() reads (tokenizer_config.json can be large). */
export function templateSpec(t: ChatTemplate): TemplateSpec {
  const specialTokens: Record<string, unknown> = {};
  for (const k of SPECIAL_KEYS) if (t.specialTokens[k] !== undefined) specialTokens[k] = t.specialTokens[k];
  return { source: t.src.source, file: t.src.file, ...(t.src.dir ? { dir: t.src.dir } : {}), specialTokens };
}

interface Pending {
  job: JobInput;
  resolve: (r: JobResult) => void;
  reject: (e: Error) => void;
  /** The phase the text process last reported as slow for this job. */
  slow: { phase: number; item: number } | null;
}

export class BoundedText {
  readonly limits: TextLimits;
  private proc: TextProcess | null = null;
  private seq = 0;
  private pending = new Map<number, Pending>();
  private closed = false;

  constructor(limits: Partial<TextLimits> = {}, private readonly spawner: TextProcessSpawner = forkTextProcess) {
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

  /** Token counts of many conversations rendered with the template (dataset samples): one job, sliced in the worker. */
  async chatCounts(template: ChatTemplate, tokenizerDir: string, conversations: ReadonlyArray<readonly ChatMessage[]>, opts: RenderOptions = {}): Promise<number[]> {
    const r = await this.run({ template: templateSpec(template), tokenizerDir, output: "count", items: conversations.map((m) => ({ messages: [...m], opts })) });
    return r as number[];
  }

  /** Plain text tokenized with the folder's tokenizer (like TextTokenizer.encode). */
  async encode(tokenizerDir: string, text: string, opts: { addSpecialTokens?: boolean } = {}): Promise<number[]> {
    const r = await this.run({ template: null, tokenizerDir, output: "ids", items: [{ text, addSpecialTokens: opts.addSpecialTokens ?? true }] });
    return r[0] as number[];
  }

  /** Stop the text process; later calls are refused. */
  async close(): Promise<void> {
    this.closed = true;
    const p = this.proc;
    this.proc = null;
    p?.kill();
    this.failAll(new Error("the text worker was closed"));
  }

  private run(job: JobInput): Promise<JobResult> {
    if (this.closed) return Promise.reject(new Error("the text worker was closed"));
    if (job.items.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const seq = ++this.seq;
      this.pending.set(seq, { job, resolve, reject, slow: null });
      const proc = this.process();
      proc.setKeepAlive?.(true);
      proc.send({ type: "run", seq, job });
    });
  }

  private process(): TextProcess {
    if (this.proc) return this.proc;
    const proc = this.spawner(compiledTextModule("text-process.js"));
    this.proc = proc;
    proc.on("message", (m: ProcessReply) => {
      if (this.proc !== proc) return;
      const p = this.pending.get(m.seq);
      if (!p) return;
      if (m.type === "slow") {
        p.slow = { phase: m.phase, item: m.item };
        return;
      }
      this.pending.delete(m.seq);
      if (m.ok) p.resolve(m.result);
      else p.reject(m.limit ? new TextLimitError(m.message) : new Error(m.message));
      if (this.pending.size === 0) proc.setKeepAlive?.(false);
    });
    proc.on("exit", (code, signal) => {
      if (this.proc !== proc) return;
      this.proc = null;
      // V8 aborts (SIGABRT, exit code 134) when one allocation overshoots the heap limit.
      const oom = signal === "SIGABRT" || code === 134;
      for (const [seq, p] of this.pending) {
        this.pending.delete(seq);
        if (oom) {
          // Where it was: the phase it reported as slow, else (a single huge allocation) the template if it has one.
          const at = p.slow ?? { phase: p.job.template ? PHASE.render : PHASE.tokenize, item: 0 };
          p.reject(new TextLimitError(describeLimit(this.limits, "memory", p.job, at.phase, at.item)));
        } else {
          p.reject(new Error(`the text worker stopped (${signal ? `signal ${signal}` : `code ${code}`}) while working for ${templateLabel(p.job)}`));
        }
      }
    });
    proc.send({ type: "config", limits: this.limits });
    proc.setKeepAlive?.(false);
    return proc;
  }

  private failAll(e: Error): void {
    for (const [seq, p] of this.pending) {
      this.pending.delete(seq);
      p.reject(e);
    }
  }
}

let shared: BoundedText | null = null;
let sharedSpawner: TextProcessSpawner | undefined;

/** How the app's text process is started (Electron: its utilityProcess); call before the first use. */
export function configureBoundedText(opts: { spawn?: TextProcessSpawner }): void {
  sharedSpawner = opts.spawn;
}

/** The process's text worker: started on first use, kept warm, replaced after a limit kills it. */
export function boundedText(): BoundedText {
  if (!shared) shared = new BoundedText({}, sharedSpawner);
  return shared;
}
