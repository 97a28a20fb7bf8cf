// Tool calls out of a model's reply, as it streams: pure text processing (no Node, no DOM), shared by the API server
// (electron/server/openai/service.ts), which turns them into OpenAI's tool_calls, and the chat UI, which shows a
// call the model wrote as a collapsible block (renderer/src/components/ToolCallBlock.tsx).
//   hermes: <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>, one block per call (Qwen2.5/Qwen3, Hermes)
//   react:  Thought: ...\nAction: f\nAction Input: {...}  (Qwen's ReAct format; generation stops at "Observation:")

export type ToolSyntax = "hermes" | "react";

/** One parsed call: arguments is JSON text (OpenAI's shape), normally an object. */
export interface ParsedCall {
  name: string;
  arguments: string;
}

/** Where a ReAct reply must stop: the model would otherwise invent the tool's answer. */
export const REACT_STOP = "Observation:";

const OPEN = "<tool_call>";
const CLOSE = "</tool_call>";

/**
 * End (exclusive) of the JSON value that starts at s[from] (after whitespace), or -1 if it is not complete yet.
 * Braces and brackets inside strings do not count: arguments may well contain "}" or "</tool_call>".
 */
export function jsonValueEnd(s: string, from: number): number {
  let i = from;
  while (i < s.length && /\s/.test(s[i])) i++;
  if (i >= s.length || (s[i] !== "{" && s[i] !== "[")) return -1;
  let depth = 0;
  let inString = false;
  for (; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/** A call from the JSON a hermes block holds, or null when it is not one: {"name": string, "arguments": object|string}. */
function hermesCall(json: string): ParsedCall | null {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return null;
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  if (typeof o.name !== "string" || !o.name) return null;
  // some models write "parameters" (Llama 3.1's wording) for the arguments
  const args = o.arguments !== undefined ? o.arguments : o.parameters;
  return { name: o.name, arguments: argumentsText(args ?? {}) };
}

/** Arguments as OpenAI sends them: JSON text. A string that is itself JSON is kept as written. */
function argumentsText(args: unknown): string {
  if (typeof args === "string") {
    try {
      JSON.parse(args);
      return args;
    } catch {
      return JSON.stringify(args);
    }
  }
  return JSON.stringify(args);
}

/** Longest suffix of s that is a proper prefix of word: that much might still become word. */
function partialSuffix(s: string, word: string): number {
  for (let k = Math.min(word.length - 1, s.length); k > 0; k--) if (s.endsWith(word.slice(0, k))) return k;
  return 0;
}

export interface SplitOut {
  /** Text that is not part of a call: safe to show now. */
  content: string;
  /** Calls completed by this piece of text. */
  calls: ParsedCall[];
}

/**
 * Splits a reply into content and tool calls as it arrives. push() returns what may go out now; end() what is left
 * (a hermes block the model ended without "</tool_call>" counts if its JSON is complete; anything unparsable is
 * returned as content, never lost).
 */
export class ToolCallStream {
  private buf = "";
  private inCall = false;
  private done = false;

  constructor(private readonly syntax: ToolSyntax) {}

  push(delta: string): SplitOut {
    if (this.done) return { content: "", calls: [] };
    this.buf += delta;
    return this.syntax === "hermes" ? this.hermes(false) : this.react(false);
  }

  end(): SplitOut {
    if (this.done) return { content: "", calls: [] };
    const out = this.syntax === "hermes" ? this.hermes(true) : this.react(true);
    this.done = true;
    return out;
  }

  private hermes(final: boolean): SplitOut {
    let content = "";
    const calls: ParsedCall[] = [];
    for (;;) {
      if (!this.inCall) {
        const at = this.buf.indexOf(OPEN);
        if (at < 0) {
          const keep = final ? 0 : partialSuffix(this.buf, OPEN);
          content += this.buf.slice(0, this.buf.length - keep);
          this.buf = this.buf.slice(this.buf.length - keep);
          return { content, calls };
        }
        content += this.buf.slice(0, at);
        this.buf = this.buf.slice(at);
        this.inCall = true;
      }
      // buf starts with OPEN: the JSON object, then CLOSE
      const end = jsonValueEnd(this.buf, OPEN.length);
      if (end >= 0) {
        const rest = this.buf.slice(end);
        const close = rest.trimStart();
        if (close.startsWith(CLOSE) || (final && close === "")) {
          const call = hermesCall(this.buf.slice(OPEN.length, end));
          if (call) {
            calls.push(call);
            this.buf = close.slice(close.startsWith(CLOSE) ? CLOSE.length : 0);
            this.inCall = false;
            continue;
          }
        } else if (close.length < CLOSE.length && CLOSE.startsWith(close) && !final) {
          return { content, calls }; // the closing tag is on its way
        }
        // not a call after all (no closing tag, or JSON that is not {"name", "arguments"}): it is text
      } else if (!final) return { content, calls };
      // an unparsable block: give its opening tag back as text and look for the next block
      content += OPEN;
      this.buf = this.buf.slice(OPEN.length);
      this.inCall = false;
    }
  }

  private react(final: boolean): SplitOut {
    // Content runs up to the first "Action:" at the start of a line; from there the reply is the call.
    const calls: ParsedCall[] = [];
    if (!this.inCall) {
      const m = /(^|\n)[ \t]*Action:/.exec(this.buf);
      if (!m) {
        // hold back a line that may still turn into "Action:"
        const lastLine = this.buf.lastIndexOf("\n") + 1;
        const tail = this.buf.slice(lastLine).trimStart();
        const keep = !final && "Action:".startsWith(tail) ? this.buf.length - lastLine : 0;
        const content = this.buf.slice(0, this.buf.length - keep);
        this.buf = this.buf.slice(this.buf.length - keep);
        return { content, calls };
      }
      const at = m.index + m[1].length;
      const content = this.buf.slice(0, at);
      this.buf = this.buf.slice(at);
      this.inCall = true;
      if (!final) return { content, calls };
      return { content: content + this.reactEnd(calls), calls };
    }
    if (!final) return { content: "", calls };
    return { content: this.reactEnd(calls), calls };
  }

  /** At the end of a ReAct reply: the Action / Action Input pair in buf (what is not a call is content). */
  private reactEnd(calls: ParsedCall[]): string {
    const text = this.buf.split(`\n${REACT_STOP}`)[0];
    const m = /^[ \t]*Action:[ \t]*([^\n]+)\n[ \t]*Action Input:[ \t]*([\s\S]*)$/.exec(text);
    if (!m) return this.buf;
    const name = m[1].trim();
    let input = m[2].trim();
    const end = jsonValueEnd(input, 0);
    if (end > 0) input = input.slice(0, end);
    if (!name) return this.buf;
    calls.push({ name, arguments: argumentsText(input) });
    return "";
  }
}

/** The whole reply at once: the same split as streaming (content trimmed; null when only calls were written). */
export function parseToolCalls(text: string, syntax: ToolSyntax): { content: string | null; calls: ParsedCall[] } {
  const s = new ToolCallStream(syntax);
  const a = s.push(text);
  const b = s.end();
  const content = (a.content + b.content).trim();
  return { content: content ? content : null, calls: [...a.calls, ...b.calls] };
}

/** A reply cut into its text and the hermes calls in it, in order: how the chat UI shows a call the model wrote. */
export type ReplySegment = { kind: "text"; text: string } | { kind: "call"; call: ParsedCall | null; raw: string; complete: boolean };

export function hermesSegments(text: string): ReplySegment[] {
  const out: ReplySegment[] = [];
  const pushText = (t: string) => {
    if (t) out.push({ kind: "text", text: t });
  };
  for (let i = 0; ; ) {
    const at = text.indexOf(OPEN, i);
    if (at < 0) {
      pushText(text.slice(i));
      return out;
    }
    pushText(text.slice(i, at));
    const end = jsonValueEnd(text, at + OPEN.length);
    if (end < 0) {
      // still being written (or never closed): the block so far
      out.push({ kind: "call", call: null, raw: text.slice(at + OPEN.length).trim(), complete: false });
      return out;
    }
    const after = text.slice(end);
    const closeAt = end + (after.length - after.trimStart().length);
    const closed = text.startsWith(CLOSE, closeAt);
    out.push({ kind: "call", call: hermesCall(text.slice(at + OPEN.length, end)), raw: text.slice(at + OPEN.length, end).trim(), complete: closed });
    i = closed ? closeAt + CLOSE.length : end;
  }
}
