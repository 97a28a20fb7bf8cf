// The worker thread that runs chat templates and the tokenizer under limits, and its watchdog. It lives in the
// text process (text-process.ts), not in the app's process: resourceLimits stops a heap that grows step by step,
// but one huge allocation (a 268M-character string upper-cased) aborts the whole process V8 runs in, so the app
// keeps it at arm's length (bounded-text.ts). Here:
//   - a heap limit (resourceLimits): a runaway allocation kills the worker thread;
//   - a deadline per phase (rendering one prompt, tokenizing one prompt), watched through shared memory and
//     enforced with worker.terminate(): a stuck template costs its caller one error;
//   - a cap on the rendered length.
// The worker is started once and reused; parsed templates and loaded tokenizers are cached there, and many samples
// travel in one message (the worker answers in time slices of sliceMs).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { DEFAULT_TEXT_LIMITS, PHASE, TextLimitError, type JobInput, type JobResult, type TextJob, type TextLimits, type TextReply } from "./text-protocol.js";

/** How often the deadline is checked while a job runs. */
const WATCH_MS = 20;

/** Where the compiled module `name` (text-worker.js, text-process.js) is, whether this module runs compiled or from source. */
export function compiledTextModule(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, name), join(here, "../../out/electron/text", name)];
  for (const p of candidates) if (existsSync(p)) return p;
  throw new Error(`the text worker is not built: none of ${candidates.join(", ")} exists; run "npm run build:ts"`);
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

interface Pending {
  job: TextJob;
  results: JobResult;
  resolve: (r: JobResult) => void;
  reject: (e: Error) => void;
  /** The caller's name for the job (the text process's request number), given back in SlowPhase. */
  tag: number;
}

/** A phase that has run longer than SLOW_PHASE_MS: what the text process tells its parent, in case it dies in it. */
export interface SlowPhase {
  tag: number;
  phase: number;
  item: number;
}
const SLOW_PHASE_MS = 100;

export class TextThread {
  readonly limits: TextLimits;
  private worker: Worker | null = null;
  private phase = new SharedArrayBuffer(16);
  private seq = 0;
  private queue: Pending[] = [];
  private current: { pending: Pending; seq: number; sentAt: number } | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private closed = false;
  private reported: { seq: number; phase: number } | null = null;

  constructor(limits: Partial<TextLimits> = {}, private readonly onSlowPhase: (p: SlowPhase) => void = () => {}) {
    this.limits = { ...DEFAULT_TEXT_LIMITS, ...limits };
  }

  /** Stop the worker; later calls are refused. */
  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.kill(new Error("the text worker was closed"));
    for (const p of this.queue.splice(0)) p.reject(new Error("the text worker was closed"));
    if (w) await w.terminate();
  }

  run(job: JobInput, tag = 0): Promise<JobResult> {
    if (this.closed) return Promise.reject(new Error("the text worker was closed"));
    if (job.items.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.queue.push({ job: { ...job, maxChars: this.limits.maxChars, sliceMs: this.limits.sliceMs } as TextJob, results: [], resolve, reject, tag });
      if (!this.current) this.next();
    });
  }

  private spawn(): Worker {
    const w = new Worker(compiledTextModule("text-worker.js"), {
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
    if (limit === null || since < cur.sentAt) return;
    if (now - since > limit) return this.kill(new TextLimitError(this.describe("time")));
    if (now - since > SLOW_PHASE_MS && (this.reported?.seq !== cur.seq || this.reported.phase !== phase)) {
      this.reported = { seq: cur.seq, phase };
      this.onSlowPhase({ tag: cur.pending.tag, phase, item: Atomics.load(cells, 1) });
    }
  }

  /** What the current job was doing when it was stopped, with the limit it hit. */
  private describe(what: "time" | "memory"): string {
    const cur = this.current;
    const cells = new Int32Array(this.phase, 0, 2);
    return describeLimit(this.limits, what, cur ? cur.pending.job : null, Atomics.load(cells, 0), Atomics.load(cells, 1));
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

export function templateLabel(job: JobInput): string {
  return job.template?.dir ?? job.template?.file ?? job.tokenizerDir ?? "?";
}

/** The sentence for a job stopped by a limit: what it was doing (the phase), for which folder, and the limit. */
export function describeLimit(limits: TextLimits, what: "time" | "memory", job: JobInput | null, phase: number, item: number): string {
  const of = job ? templateLabel(job) : "?";
  const many = job && job.items.length > 1 ? ` (item ${item + 1} of ${job.items.length})` : "";
  const memory = `used more than ${limits.heapMb} MB of memory`;
  if (phase === PHASE.render) {
    return what === "time" ? `chat template of ${of} did not finish within ${seconds(limits.renderMs)}${many}` : `chat template of ${of} ${memory}${many}`;
  }
  const dir = job?.tokenizerDir ?? of;
  if (phase === PHASE.load) {
    return what === "time" ? `loading the tokenizer of ${dir} did not finish within ${seconds(limits.loadMs)}` : `loading the tokenizer of ${dir} ${memory}`;
  }
  return what === "time"
    ? `tokenizing with the tokenizer of ${dir} did not finish within ${seconds(limits.tokenizeMs)}${many}`
    : `tokenizing with the tokenizer of ${dir} ${memory}${many}`;
}
