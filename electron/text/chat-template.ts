// The model's own chat template, found where transformers looks for it and rendered with @huggingface/jinja
// the way transformers' apply_chat_template renders it (trim_blocks + lstrip_blocks, the special tokens by
// name, add_generation_prompt). The result must be byte-identical to Python's: the goldens check it.
import { Template } from "@huggingface/jinja";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tokenContent } from "./tokenizer.js";

export const DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant.";

export type ChatRole = "system" | "user" | "assistant" | "tool";
export interface ChatMessage {
  role: ChatRole | string;
  content: string;
  /**
   * An assistant turn's tool calls, shaped as transformers' chat templates read them (OpenAI's shape with arguments
   * as an object: Qwen2.5's template writes `tool_call.arguments | tojson`; Qwen3's accepts a string too).
   */
  tool_calls?: Array<{ id?: string; type: "function"; function: { name: string; arguments: unknown } }>;
  /** A tool turn: which call it answers and the tool's name. */
  tool_call_id?: string;
  name?: string;
}

export interface ChatTemplateSource {
  source: string;        // the Jinja text
  file: string;          // where it came from (for error messages)
  dir?: string;          // the model folder it belongs to (limit errors name it)
}

/**
 * Where transformers finds the template, in its order of preference:
 *   chat_template.jinja (transformers >= 4.5x writes it there), chat_template.json {"chat_template": ...},
 *   tokenizer_config.json "chat_template" as a string or as a list of {name, template} (pick "default").
 * Returns null when the folder has none.
 */
export function findChatTemplate(dir: string, name = "default"): ChatTemplateSource | null {
  const jinjaPath = join(dir, "chat_template.jinja");
  if (existsSync(jinjaPath)) return { source: readFileSync(jinjaPath, "utf8"), file: jinjaPath, dir };
  for (const file of ["chat_template.json", "tokenizer_config.json"]) {
    const path = join(dir, file);
    if (!existsSync(path)) continue;
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      throw new Error(`${path}: invalid JSON (${(e as Error).message})`);
    }
    const t = json.chat_template;
    if (t === undefined || t === null) continue;
    if (typeof t === "string") return { source: t, file: path, dir };
    if (Array.isArray(t)) {
      const entries = t as Array<{ name?: unknown; template?: unknown }>;
      const pick = entries.find((e) => e?.name === name) ?? entries.find((e) => e?.name === "default") ?? entries[0];
      if (pick && typeof pick.template === "string") return { source: pick.template, file: `${path} (chat_template "${String(pick.name)}")`, dir };
    }
    throw new Error(`${path}: field "chat_template" must be a string or a list of {name, template}`);
  }
  return null;
}

export interface RenderOptions {
  /** Append the assistant header so the model answers (default true). */
  addGenerationPrompt?: boolean;
  /**
   * System prompt to prepend when messages has no system message. Default DEFAULT_SYSTEM_PROMPT;
   * null means "add none" (render the messages exactly as given, as the goldens do).
   */
  systemPrompt?: string | null;
  /** Extra template variables (e.g. enable_thinking, tools). */
  extra?: Record<string, unknown>;
}

/**
 * A chat template comes from a model folder, which comes from the hub: it is untrusted code. render() here runs it
 * with no limits, so the app never calls it on its own thread: electron/text/bounded-text.ts runs it in a worker
 * thread with a deadline, an output cap and a heap limit. Parsing stays here (it is linear in the source and its
 * errors belong to loading the folder).
 */
export class ChatTemplate {
  private readonly template: Template;

  /** specialTokens: tokenizer_config.json's bos_token, eos_token, ... (strings or {content}). */
  constructor(readonly src: ChatTemplateSource, readonly specialTokens: Record<string, unknown> = {}) {
    try {
      this.template = new Template(src.source);
    } catch (e) {
      throw new Error(`${src.file}: cannot parse the chat template (${(e as Error).message})`);
    }
  }

  static fromFolder(dir: string): ChatTemplate | null {
    const src = findChatTemplate(dir);
    if (!src) return null;
    const tcPath = join(dir, "tokenizer_config.json");
    const tc = existsSync(tcPath) ? (JSON.parse(readFileSync(tcPath, "utf8")) as Record<string, unknown>) : {};
    return new ChatTemplate(src, tc);
  }

  /** The messages the template sees: a system message prepended unless one is present or systemPrompt is null. */
  static withSystem(messages: readonly ChatMessage[], systemPrompt: string | null | undefined): ChatMessage[] {
    const sys = systemPrompt === undefined ? DEFAULT_SYSTEM_PROMPT : systemPrompt;
    if (sys === null || messages[0]?.role === "system") return [...messages];
    return [{ role: "system", content: sys }, ...messages];
  }

  render(messages: readonly ChatMessage[], opts: RenderOptions = {}): string {
    // transformers always passes tools and documents (None when absent): templates test `tools is not none`.
    const vars: Record<string, unknown> = { tools: null, documents: null };
    // transformers passes tokenizer.special_tokens_map: the string content of each special token.
    for (const key of ["bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"]) {
      const v = tokenContent(this.specialTokens[key]);
      if (v !== null) vars[key] = v;
    }
    const extraSpecial = this.specialTokens.additional_special_tokens;
    if (Array.isArray(extraSpecial)) vars.additional_special_tokens = extraSpecial.map(tokenContent).filter((t) => t !== null);
    Object.assign(vars, opts.extra ?? {});
    vars.messages = ChatTemplate.withSystem(messages, opts.systemPrompt);
    vars.add_generation_prompt = opts.addGenerationPrompt ?? true;
    try {
      return this.template.render(vars);
    } catch (e) {
      throw new Error(`${this.src.file}: chat template failed to render (${(e as Error).message})`);
    }
  }
}
