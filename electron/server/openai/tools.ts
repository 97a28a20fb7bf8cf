// Tool calling for the OpenAI-compatible API: how tool definitions reach the model and how its calls come back.
//
// Two syntaxes, chosen per model by what its chat template does with `tools`:
//   hermes: the template renders the tools itself (Qwen2.5/Qwen3, Hermes, Hunyuan-style templates that take `tools`)
//           and the model answers   <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>   one block per call;
//   react:  the template ignores `tools`, so the tools go into the system prompt in the ReAct format Qwen documents
//           for models without native function calling, and the model answers
//           Thought: ...\nAction: f\nAction Input: {...}   (generation stops at "Observation:").
// The model's text is split as it streams (ToolCallStream, tool-parse.ts): what cannot be part of a call goes out as content at once;
// a call goes out whole the moment its block closes. Streaming and non-streaming replies share that one parser.
//
// Forcing a call (tool_choice "required" or a named function) does not trust the model to start one: the prompt ends
// with the call's opening ("<tool_call>\n{\"name\": \"" / "Action: "), the engine's constraint lets the model write
// only one of the tool names and then a JSON object (the arguments), and the closing is appended (forcedCall).
import { randomBytes } from "node:crypto";
import type { ChatMessage } from "../../text/chat-template.js";
import { REACT_STOP, type ToolSyntax } from "./tool-parse.js";

export { parseToolCalls, ToolCallStream, REACT_STOP, type ParsedCall, type ToolSyntax } from "./tool-parse.js";

export interface ToolDef {
  type: "function";
  function: { name: string; description?: string | undefined; parameters?: Record<string, unknown> | undefined; strict?: boolean | null | undefined };
}

export function newCallId(): string {
  return "call_" + randomBytes(12).toString("hex");
}

// ---------------------------------------------------------------- the prompt side

/**
 * Qwen's ReAct instruction for models whose template takes no tools: the tool list, then the format the model is
 * to follow. Qwen's examples (QwenLM/Qwen, examples/react_prompt.md) put it in the user turn; it goes into the
 * system message here so every later turn keeps it.
 */
export function reactInstruction(tools: readonly ToolDef[]): string {
  const lines = tools.map((t) => {
    const f = t.function;
    const desc = f.description?.trim() ? ` ${f.description.trim()}` : "";
    return `${f.name}: Call this tool to interact with the ${f.name} API. What is the ${f.name} API useful for?${desc} Parameters: ${JSON.stringify(f.parameters ?? {})} Format the arguments as a JSON object.`;
  });
  const names = tools.map((t) => t.function.name).join(",");
  return [
    "Answer the following questions as best you can. You have access to the following tools:",
    "",
    lines.join("\n\n"),
    "",
    "Use the following format:",
    "",
    "Question: the input question you must answer",
    "Thought: you should always think about what to do",
    `Action: the action to take, should be one of [${names}]`,
    "Action Input: the input to the action",
    "Observation: the result of the action",
    "... (this Thought/Action/Action Input/Observation can be repeated zero or more times)",
    "Thought: I now know the final answer",
    "Final Answer: the final answer to the original input question",
    "",
    "Begin!",
  ].join("\n");
}

/**
 * Messages for a template that ignores tools: the ReAct instruction joins the system prompt, an assistant turn's
 * calls become its Action lines, and a tool's answer becomes an "Observation:" user turn.
 */
export function reactMessages(messages: readonly ChatMessage[], tools: readonly ToolDef[]): ChatMessage[] {
  const instruction = reactInstruction(tools);
  const out: ChatMessage[] = [];
  const first = messages[0];
  if (first?.role === "system") out.push({ role: "system", content: `${first.content}\n\n${instruction}` });
  else out.push({ role: "system", content: instruction });
  for (const m of first?.role === "system" ? messages.slice(1) : messages) {
    if (m.role === "assistant" && m.tool_calls?.length) {
      const actions = m.tool_calls.map((c) => `Action: ${c.function.name}\nAction Input: ${typeof c.function.arguments === "string" ? c.function.arguments : JSON.stringify(c.function.arguments)}`);
      out.push({ role: "assistant", content: [m.content.trim(), ...actions].filter((s) => s).join("\n") });
    } else if (m.role === "tool") out.push({ role: "user", content: `${REACT_STOP} ${m.content}` });
    else out.push({ role: m.role, content: m.content });
  }
  return out;
}

/** JSON string contents (without the quotes) of s, as json.dumps writes it: the way the name appears in a call. */
function jsonInner(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}

/**
 * A forced call: the text the prompt ends with, the alternatives the model must pick one of (a tool's name and what
 * follows it up to the arguments), and the text that closes the call after the arguments' JSON object.
 */
export function forcedCall(syntax: ToolSyntax, names: readonly string[]): { prefix: string; oneOf: string[]; suffix: string } {
  if (syntax === "hermes") return { prefix: '<tool_call>\n{"name": "', oneOf: names.map((n) => `${jsonInner(n)}", "arguments": `), suffix: "}\n</tool_call>" };
  return { prefix: "Action: ", oneOf: names.map((n) => `${n}\nAction Input: `), suffix: "" };
}
