// The worker thread behind bounded-text.ts: runs chat templates (untrusted code from the model folder) and the
// tokenizer on text that may be huge, where a runaway loop or allocation costs only this thread. The parent gives
// it a heap limit (resourceLimits), watches a deadline through the shared phase cells below and terminates it when
// one phase runs too long. Jobs come in slices: a reply carries the results of the items done within sliceMs, and
// the parent sends the rest again, so one message never holds the thread for long.
import { statSync } from "node:fs";
import { join } from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { ChatTemplate } from "./chat-template.js";
import { TextTokenizer } from "./tokenizer.js";
import type { TextJob, TextReply, TextRequest, TemplateSpec } from "./text-protocol.js";
import { PHASE, TEMPLATE_CACHE, TOKENIZER_CACHE } from "./text-protocol.js";

const { phase: phaseBuffer } = workerData as { phase: SharedArrayBuffer };
const phaseCell = new Int32Array(phaseBuffer, 0, 2);     // [phase, item]
const phaseStart = new Float64Array(phaseBuffer, 8, 1);   // Date.now() when the phase began

function enter(phase: number, item: number): void {
  phaseStart[0] = Date.now();
  Atomics.store(phaseCell, 1, item);
  Atomics.store(phaseCell, 0, phase);
}

const templates = new Map<string, ChatTemplate>();
function templateFor(spec: TemplateSpec): ChatTemplate {
  const key = `${spec.file}\0${spec.source}\0${JSON.stringify(spec.specialTokens)}`;
  let t = templates.get(key);
  if (!t) {
    t = new ChatTemplate({ source: spec.source, file: spec.file, ...(spec.dir ? { dir: spec.dir } : {}) }, spec.specialTokens);
    if (templates.size >= TEMPLATE_CACHE) templates.delete(templates.keys().next().value!);
    templates.set(key, t);
  }
  return t;
}

// Loaded once per folder and reused while tokenizer.json is unchanged (loading a 150k-entry vocabulary takes ~1 s).
const tokenizers = new Map<string, { stamp: string; tokenizer: TextTokenizer }>();
function tokenizerFor(dir: string): TextTokenizer {
  const st = statSync(join(dir, "tokenizer.json"), { throwIfNoEntry: false });
  const stamp = st ? `${st.mtimeMs}:${st.size}` : "missing";
  const hit = tokenizers.get(dir);
  if (hit && hit.stamp === stamp) return hit.tokenizer;
  const tokenizer = TextTokenizer.fromFolder(dir);
  tokenizers.delete(dir);
  if (tokenizers.size >= TOKENIZER_CACHE) tokenizers.delete(tokenizers.keys().next().value!);
  tokenizers.set(dir, { stamp, tokenizer });
  return tokenizer;
}

class LimitFailure extends Error {
  constructor(readonly kind: "output" | "recursion", message: string) {
    super(message);
  }
}

function runItem(job: TextJob, index: number): string | number[] | number {
  const item = job.items[index];
  let text: string;
  if ("messages" in item) {
    if (!job.template) throw new Error("a chat job needs a template");
    const template = templateFor(job.template);
    enter(PHASE.render, index);
    try {
      text = template.render(item.messages, item.opts);
    } catch (e) {
      // ChatTemplate.render wraps the RangeError of a template that recurses without end; say what it is.
      if (/Maximum call stack size exceeded/.test((e as Error).message)) throw new LimitFailure("recursion", (e as Error).message);
      throw e;
    }
    if (text.length > job.maxChars) throw new LimitFailure("output", `${text.length} characters`);
    if (job.output === "text") return text;
  } else {
    text = item.text;
  }
  if (!job.tokenizerDir) throw new Error("a tokenize job needs a tokenizer folder");
  enter(PHASE.load, index);
  const tokenizer = tokenizerFor(job.tokenizerDir);
  enter(PHASE.tokenize, index);
  const ids = "messages" in item ? tokenizer.encodeChat(text) : tokenizer.encode(text, { addSpecialTokens: item.addSpecialTokens });
  return job.output === "count" ? ids.length : ids;
}

parentPort!.on("message", (req: TextRequest) => {
  const started = performance.now();
  const results: Array<string | number[] | number> = [];
  let reply: TextReply;
  try {
    for (let i = req.from; i < req.job.items.length; i++) {
      results.push(runItem(req.job, i));
      if (performance.now() - started > req.job.sliceMs) break;
    }
    reply = { seq: req.seq, ok: true, results };
  } catch (e) {
    const kind = e instanceof LimitFailure ? e.kind : "error";
    reply = { seq: req.seq, ok: false, kind, item: req.from + results.length, message: e instanceof Error ? e.message : String(e) };
  }
  enter(PHASE.idle, 0);
  parentPort!.postMessage(reply);
});
