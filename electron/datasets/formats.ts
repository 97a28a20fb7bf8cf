// One record (a jsonl line or a JSON array element) → one sample in the messages form, or the reason it is not one.
// Detection is per record, so a file may mix formats:
//   {"messages": [{role, content}, ...]}                           messages (OpenAI / Hunyuan finetuning)
//   {"conversations": [{from, value}, ...], "system"?: "..."}      conversations (Qwen / ShareGPT)
//   {"instruction", "input"?, "output", "system"?}                 instruction (Alpaca)
// The same validation rules apply to imported records and to samples edited in the app (validateMessages).
import type { DatasetFormat, RejectReason, SampleMessage } from "../contract.js";

export type Role = SampleMessage["role"];

export interface Parsed {
  ok: true;
  format: DatasetFormat;
  messages: SampleMessage[];
}

export interface Rejected {
  ok: false;
  reason: RejectReason;
  error: string;
}

const ROLES: readonly Role[] = ["system", "user", "assistant"];
/** ShareGPT's speaker names → roles. */
const FROM: Record<string, Role> = { system: "system", user: "user", human: "user", assistant: "assistant", gpt: "assistant" };

/** How a reason reads at the start of an error: "wrong role order: messages[2] is ...". */
export const REASON_LABEL: Record<RejectReason, string> = {
  not_json: "not JSON",
  unknown_shape: "unknown shape",
  empty_content: "empty content",
  wrong_role_order: "wrong role order",
  no_assistant_turn: "no assistant turn",
};

const reject = (reason: RejectReason, detail: string): Rejected => ({ ok: false, reason, error: `${REASON_LABEL[reason]}: ${detail}` });

/** A short JSON rendering of a bad value for an error message. */
function show(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    // JSON.parse takes any depth, JSON.stringify recurses: a value nested 100k deep overflows the stack
    s = Array.isArray(v) ? "an array nested too deeply to show" : "an object nested too deeply to show";
  }
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

/** Sample text may not hold NUL (the contract refuses it in the editor too); the error names the field. */
function nulIn(field: string, text: string): Rejected | null {
  const at = text.indexOf("\0");
  return at < 0 ? null : reject("unknown_shape", `${field} contains a NUL character (\\u0000) at character ${at}; sample text may not hold one`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The rules a sample obeys (reason codes as the issue lists them). `name(i)` names message i in errors, e.g.
 * "messages[2]" or "conversations[3]". Checks in this order: empty content, no assistant turn, role order.
 */
export function validateMessages(messages: readonly SampleMessage[], name: (i: number) => string = (i) => `messages[${i}]`): Rejected | null {
  if (messages.length === 0) return reject("no_assistant_turn", "the sample has no messages");
  for (let i = 0; i < messages.length; i++) {
    const nul = nulIn(`${name(i)}.content`, messages[i].content);
    if (nul) return nul;
    if (messages[i].content.trim() === "") return reject("empty_content", `${name(i)} (${messages[i].role}) has empty content`);
  }
  if (!messages.some((m) => m.role === "assistant")) return reject("no_assistant_turn", "the sample has no assistant message");
  let expected: Role = "user";
  for (let i = 0; i < messages.length; i++) {
    const role = messages[i].role;
    if (role === "system") {
      if (i === 0) continue;
      return reject("wrong_role_order", `${name(i)} is a system message; only the first message may be one`);
    }
    if (role !== expected) {
      const prev = i > 0 ? messages[i - 1].role : null;
      return reject(
        "wrong_role_order",
        prev === role
          ? `${name(i)} is a second "${role}" message in a row (user and assistant must alternate)`
          : `${name(i)} is "${role}" but the conversation must start with "user" (after an optional system message)`,
      );
    }
    expected = role === "user" ? "assistant" : "user";
  }
  const last = messages[messages.length - 1];
  if (last.role !== "assistant") {
    return reject("wrong_role_order", `the last message, ${name(messages.length - 1)}, is "${last.role}": a sample must end with the assistant's reply`);
  }
  return null;
}

function fromMessages(list: unknown): Parsed | Rejected {
  if (!Array.isArray(list)) return reject("unknown_shape", `"messages" must be an array, got ${show(list)}`);
  const messages: SampleMessage[] = [];
  for (let i = 0; i < list.length; i++) {
    const m = list[i];
    if (!isObject(m)) return reject("unknown_shape", `messages[${i}] must be an object with "role" and "content"`);
    if (typeof m.role !== "string" || !ROLES.includes(m.role as Role)) {
      return reject("unknown_shape", `messages[${i}].role ${show(m.role)} is not "system", "user" or "assistant"`);
    }
    if (typeof m.content !== "string") return reject("unknown_shape", `messages[${i}].content must be a string, got ${show(m.content)}`);
    const nul = nulIn(`messages[${i}].content`, m.content);
    if (nul) return nul;
    messages.push({ role: m.role as Role, content: m.content });
  }
  return validateMessages(messages) ?? { ok: true, format: "messages", messages };
}

function fromConversations(obj: Record<string, unknown>): Parsed | Rejected {
  const list = obj.conversations;
  if (!Array.isArray(list)) return reject("unknown_shape", `"conversations" must be an array, got ${show(list)}`);
  const messages: SampleMessage[] = [];
  let offset = 0;   // messages[i] is conversations[i - offset]
  if (obj.system !== undefined && obj.system !== null) {
    if (typeof obj.system !== "string") return reject("unknown_shape", `"system" must be a string, got ${show(obj.system)}`);
    const nul = nulIn(`"system"`, obj.system);
    if (nul) return nul;
    if (obj.system.trim() !== "") {
      messages.push({ role: "system", content: obj.system });
      offset = 1;
    }
  }
  for (let i = 0; i < list.length; i++) {
    const m = list[i];
    if (!isObject(m)) return reject("unknown_shape", `conversations[${i}] must be an object with "from" and "value"`);
    const role = typeof m.from === "string" ? FROM[m.from] : undefined;
    if (!role) return reject("unknown_shape", `conversations[${i}].from ${show(m.from)} is not one of "system", "user", "human", "assistant", "gpt"`);
    if (typeof m.value !== "string") return reject("unknown_shape", `conversations[${i}].value must be a string, got ${show(m.value)}`);
    const nul = nulIn(`conversations[${i}].value`, m.value);
    if (nul) return nul;
    messages.push({ role, content: m.value });
  }
  const bad = validateMessages(messages, (i) => (i < offset ? `"system"` : `conversations[${i - offset}]`));
  return bad ?? { ok: true, format: "conversations", messages };
}

function fromInstruction(obj: Record<string, unknown>): Parsed | Rejected {
  for (const key of ["instruction", "input", "output", "system"] as const) {
    const v = obj[key];
    if (v !== undefined && v !== null && typeof v !== "string") return reject("unknown_shape", `"${key}" must be a string, got ${show(v)}`);
    const nul = typeof v === "string" ? nulIn(`"${key}"`, v) : null;
    if (nul) return nul;
  }
  if (typeof obj.instruction !== "string") return reject("unknown_shape", `"instruction" must be a string, got ${show(obj.instruction)}`);
  const instruction = obj.instruction;
  const input = (obj.input as string | undefined | null) ?? "";
  const output = obj.output as string | undefined | null;
  const system = (obj.system as string | undefined | null) ?? "";
  if (output === undefined || output === null) return reject("no_assistant_turn", `the instruction has no "output"`);
  if (instruction.trim() === "") return reject("empty_content", `"instruction" is empty`);
  if (output.trim() === "") return reject("empty_content", `"output" is empty`);
  // Alpaca's own prompt puts the input after the instruction; an empty input adds nothing.
  const user = input.trim() === "" ? instruction : `${instruction}\n\n${input}`;
  const messages: SampleMessage[] = [];
  if (system.trim() !== "") messages.push({ role: "system", content: system });
  messages.push({ role: "user", content: user }, { role: "assistant", content: output });
  return { ok: true, format: "instruction", messages };
}

/** A parsed JSON value → sample. */
export function normalizeRecord(value: unknown): Parsed | Rejected {
  if (!isObject(value)) return reject("unknown_shape", `a sample must be a JSON object, got ${Array.isArray(value) ? "an array" : show(value)}`);
  if ("messages" in value) return fromMessages(value.messages);
  if ("conversations" in value) return fromConversations(value);
  if ("instruction" in value) return fromInstruction(value);
  const keys = Object.keys(value);
  return reject(
    "unknown_shape",
    `expected "messages", "conversations" or "instruction"/"output"; the object has ${keys.length ? keys.slice(0, 6).map(show).join(", ") : "no keys"}`,
  );
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Record bytes → sample: UTF-8 (strict), JSON, then the format rules. */
export function parseRecord(bytes: Uint8Array): Parsed | Rejected {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    return reject("not_json", "the line is not valid UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return reject("not_json", (e as Error).message.split("\n")[0]);
  }
  return normalizeRecord(value);
}
