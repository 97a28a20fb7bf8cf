// Tool calls out of replies (electron/server/openai/tool-parse.ts), and the one generation slot the chat UI and the
// API share (electron/services/generation-queue.ts). The texts are replies in the formats Qwen2.5 / Qwen3 / Hermes
// write (hermes) and Qwen's ReAct prompt asks for.
import { describe, expect, it } from "vitest";
import { hermesSegments, jsonValueEnd, parseToolCalls, ToolCallStream, type ToolSyntax } from "../../electron/server/openai/tool-parse.js";
import { GenerationQueue, QueueFullError } from "../../electron/services/generation-queue.js";

const HERMES_TWO = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n{"name": "search", "arguments": {"q": "a } and </tool_call> in a string"}}\n</tool_call>';
const REACT = 'Thought: I should search.\nAction: search\nAction Input: {"q": "MoE"}\nObservation:';

/** Cuts text into pieces of pseudo-random sizes 1..7 (a fixed LCG: the same cuts every run). */
function pieces(text: string, seed: number): string[] {
  const out: string[] = [];
  let x = seed;
  for (let i = 0; i < text.length; ) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const n = 1 + (x % 7);
    out.push(text.slice(i, i + n));
    i += n;
  }
  return out;
}

function streamed(text: string, syntax: ToolSyntax, seed: number) {
  const s = new ToolCallStream(syntax);
  let content = "";
  const calls = [];
  for (const p of pieces(text, seed)) {
    const o = s.push(p);
    content += o.content;
    calls.push(...o.calls);
  }
  const o = s.end();
  return { content: (content + o.content).trim() || null, calls: [...calls, ...o.calls] };
}

describe("hermes tool calls", () => {
  it("parses calls and keeps the text around them", () => {
    const r = parseToolCalls(HERMES_TWO, "hermes");
    expect(r.content).toBe("Let me check.");
    expect(r.calls).toEqual([
      { name: "get_weather", arguments: '{"city":"Paris"}' },
      { name: "search", arguments: '{"q":"a } and </tool_call> in a string"}' },
    ]);
  });

  it("streams to the same result however the text is cut", () => {
    const whole = parseToolCalls(HERMES_TWO, "hermes");
    for (let seed = 1; seed <= 20; seed++) expect(streamed(HERMES_TWO, "hermes", seed)).toEqual(whole);
  });

  it("holds back a tag that is still arriving, and never shows a call as text", () => {
    const s = new ToolCallStream("hermes");
    expect(s.push("Hi <tool")).toEqual({ content: "Hi ", calls: [] });
    expect(s.push('_call>\n{"name": "f", "argu')).toEqual({ content: "", calls: [] });
    expect(s.push('ments": {}}\n</tool_')).toEqual({ content: "", calls: [] });
    expect(s.push("call> done")).toEqual({ content: " done", calls: [{ name: "f", arguments: "{}" }] });
  });

  it("accepts what models write in the wild: string arguments, 'parameters', a missing closing tag at the end", () => {
    expect(parseToolCalls('<tool_call>\n{"name": "f", "arguments": "{\\"a\\": 1}"}\n</tool_call>', "hermes").calls).toEqual([{ name: "f", arguments: '{"a": 1}' }]);
    expect(parseToolCalls('<tool_call>{"name": "f", "parameters": {"a": 1}}</tool_call>', "hermes").calls).toEqual([{ name: "f", arguments: '{"a":1}' }]);
    expect(parseToolCalls('<tool_call>\n{"name": "f", "arguments": {}}', "hermes")).toEqual({ content: null, calls: [{ name: "f", arguments: "{}" }] });
  });

  it("gives back what is not a call as text, losing nothing", () => {
    for (const t of ['<tool_call>\n{"name": "f", "arguments": {', '<tool_call> not json </tool_call>', '<tool_call>{"arguments": {}}</tool_call>', "a <tool_call", '<tool_call>{"name": "f"} trailing']) {
      const r = parseToolCalls(t, "hermes");
      expect(r.calls).toEqual([]);
      expect(r.content).toBe(t.trim());
    }
  });

  it("finds where a JSON value ends, strings and escapes included", () => {
    expect(jsonValueEnd('  {"a": "}\\""} x', 0)).toBe(14);
    expect(jsonValueEnd('[1, {"b": []}]', 0)).toBe(14);
    expect(jsonValueEnd('{"a": 1', 0)).toBe(-1);
    expect(jsonValueEnd("x{}", 0)).toBe(-1);
  });

  it("cuts a reply into text and call blocks for the chat view", () => {
    expect(hermesSegments('A\n<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\nB')).toEqual([
      { kind: "text", text: "A\n" },
      { kind: "call", call: { name: "f", arguments: "{}" }, raw: '{"name": "f", "arguments": {}}', complete: true },
      { kind: "text", text: "\nB" },
    ]);
    expect(hermesSegments('A<tool_call>\n{"name": "f", "argu')).toEqual([
      { kind: "text", text: "A" },
      { kind: "call", call: null, raw: '{"name": "f", "argu', complete: false },
    ]);
  });
});

describe("ReAct tool calls", () => {
  it("parses the Action and its input, the thought is content", () => {
    expect(parseToolCalls(REACT, "react")).toEqual({ content: "Thought: I should search.", calls: [{ name: "search", arguments: '{"q": "MoE"}' }] });
    for (let seed = 1; seed <= 20; seed++) expect(streamed(REACT, "react", seed)).toEqual(parseToolCalls(REACT, "react"));
  });

  it("a reply with no Action, or an Action with no input, is text", () => {
    expect(parseToolCalls("Thought: no tool needed.\nFinal Answer: 42", "react")).toEqual({ content: "Thought: no tool needed.\nFinal Answer: 42", calls: [] });
    expect(parseToolCalls("Action: search", "react")).toEqual({ content: "Action: search", calls: [] });
  });

  it("plain-text input becomes a JSON string", () => {
    expect(parseToolCalls("Action: search\nAction Input: MoE models", "react").calls).toEqual([{ name: "search", arguments: '"MoE models"' }]);
  });
});

describe("the generation slot", () => {
  it("is first come, first served, and tryAcquire never jumps the line", async () => {
    const q = new GenerationQueue();
    const first = q.tryAcquire("chat")!;
    expect(q.busyWith).toBe("chat");
    const order: string[] = [];
    const a = q.acquire(undefined, "api").then((r) => (order.push("a"), r));
    const b = q.acquire(undefined, "api").then((r) => (order.push("b"), r));
    expect(q.waitingCount).toBe(2);
    first();
    first(); // releasing twice is harmless
    const ra = await a;
    expect(q.tryAcquire("chat")).toBeNull(); // b is waiting
    ra();
    (await b)();
    expect(order).toEqual(["a", "b"]);
    expect(q.busyWith).toBeNull();
  });

  it("a request aborted while it waits leaves the line", async () => {
    const q = new GenerationQueue();
    const held = q.tryAcquire("api")!;
    const ac = new AbortController();
    const gone = q.acquire(ac.signal, "api");
    const next = q.acquire(undefined, "chat");
    ac.abort();
    await expect(gone).rejects.toMatchObject({ name: "AbortError" });
    held();
    const r = await next;
    expect(q.busyWith).toBe("chat");
    r();
  });

  it("refuses a request past the waiting limit", async () => {
    const q = new GenerationQueue(2);
    const held = q.tryAcquire("api")!;
    const w = [q.acquire(undefined, "api"), q.acquire(undefined, "api")];
    await expect(q.acquire(undefined, "api")).rejects.toBeInstanceOf(QueueFullError);
    held();
    (await w[0])();
    (await w[1])();
  });
});
