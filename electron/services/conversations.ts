// Conversations: list (with search over titles and message content), create, rename, update the system prompt,
// preset and sampling overrides, delete (messages go with it: ON DELETE CASCADE), get with its messages.
import { randomUUID } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import type { CallOutput, Conversation, Message } from "../contract.js";
import type { HandlerInput } from "../rpc.js";
import { NO_SAMPLING, type Repositories } from "../store/repositories.js";
import { notFound } from "./errors.js";
import { RpcError } from "../contract.js";
import { DEFAULT_SYSTEM_PROMPT } from "../text/chat-template.js";

/**
 * An adapter folder a conversation may run with: a folder holding adapter_config.json (what peft writes). Whether it
 * fits the model is the engine's to say, on the first reply (its error names the file and tensor).
 */
export function checkAdapterFolder(dir: string): string {
  const abs = resolve(dir);
  if (!existsSync(abs)) throw new RpcError("invalid_input", `The adapter folder ${abs} does not exist.`);
  if (!statSync(abs).isDirectory()) throw new RpcError("invalid_input", `${abs} is a file, not an adapter folder.`);
  if (!existsSync(join(abs, "adapter_config.json"))) {
    throw new RpcError("invalid_input", `${basename(abs)} is not a PEFT adapter folder: ${join(abs, "adapter_config.json")} is missing.`);
  }
  return abs;
}

/** A new conversation's system prompt: the one chat templates fall back to (text/chat-template.ts). */
export { DEFAULT_SYSTEM_PROMPT };
export const DEFAULT_TITLE = "New chat";
const TITLE_FROM_MESSAGE_CHARS = 60;

export class ConversationService {
  constructor(private readonly repos: Repositories) {}

  list(input: HandlerInput<"conversations.list">): CallOutput<"conversations.list"> {
    return this.repos.conversations.list(input.search);
  }

  require(id: string): Conversation {
    const c = this.repos.conversations.get(id);
    if (!c) throw notFound(`Conversation ${id} does not exist (it may have been deleted).`);
    return c;
  }

  get(input: { id: string }): { conversation: Conversation; messages: Message[] } {
    return { conversation: this.require(input.id), messages: this.repos.messages.list(input.id) };
  }

  /** modelDir: the loaded model's folder, unless the input names one (a checkpoint's base). */
  create(input: HandlerInput<"conversations.create">, modelDir: string | null = null): Conversation {
    const adapterDir = input.adapterDir ? checkAdapterFolder(input.adapterDir) : null;
    let systemPrompt = input.systemPrompt;
    const presetId = input.presetId ?? null;
    if (systemPrompt === undefined && presetId) systemPrompt = this.repos.presets.get(presetId)?.content;
    const now = Date.now();
    const c: Conversation = {
      id: randomUUID(),
      title: input.title?.trim() || DEFAULT_TITLE,
      createdAt: now,
      updatedAt: now,
      systemPrompt: systemPrompt ?? DEFAULT_SYSTEM_PROMPT,
      presetId,
      sampling: { ...NO_SAMPLING },
      modelDir: input.modelDir ? resolve(input.modelDir) : modelDir,
      adapterDir,
      endpointId: input.endpointId ? this.requireEndpoint(input.endpointId) : null,
    };
    this.repos.conversations.insert(c);
    return c;
  }

  rename(input: HandlerInput<"conversations.rename">): Conversation {
    const title = input.title.trim() || input.title;
    const c = { ...this.require(input.id), title, updatedAt: Date.now() };
    this.repos.conversations.update(c);
    return c;
  }

  update(input: HandlerInput<"conversations.update">): Conversation {
    const old = this.require(input.id);
    const c: Conversation = {
      ...old,
      ...(input.systemPrompt !== undefined ? { systemPrompt: input.systemPrompt } : {}),
      ...(input.presetId !== undefined ? { presetId: input.presetId } : {}),
      ...(input.adapterDir !== undefined ? { adapterDir: input.adapterDir ? checkAdapterFolder(input.adapterDir) : null } : {}),
      ...(input.endpointId !== undefined ? { endpointId: input.endpointId ? this.requireEndpoint(input.endpointId) : null } : {}),
      sampling: { ...old.sampling, ...(input.sampling ?? {}) },
      updatedAt: Date.now(),
    };
    this.repos.conversations.update(c);
    return c;
  }

  private requireEndpoint(id: string): string {
    if (!this.repos.endpoints.get(id)) throw notFound(`Endpoint ${id} does not exist (it may have been removed).`);
    return id;
  }

  delete(input: { id: string }): { ok: true } {
    if (!this.repos.conversations.delete(input.id)) throw notFound(`Conversation ${input.id} does not exist.`);
    return { ok: true };
  }

  /** A conversation still called "New chat" takes its title from its first message. */
  titleFromFirstMessage(c: Conversation, content: string): Conversation {
    if (c.title !== DEFAULT_TITLE || this.repos.messages.list(c.id).length > 1) return c;
    const flat = content.replace(/\s+/g, " ").trim();
    if (!flat) return c;
    const chars = Array.from(flat);
    const title = chars.length > TITLE_FROM_MESSAGE_CHARS ? `${chars.slice(0, TITLE_FROM_MESSAGE_CHARS).join("")}…` : flat;
    const updated = { ...c, title, updatedAt: Date.now() };
    this.repos.conversations.update(updated);
    return updated;
  }
}
