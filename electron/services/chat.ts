// Chat: send / stop / regenerate / edit. The user's message is saved first, then the reply is generated in the
// background: the conversation (system prompt + history) is rendered through the model's chat template and
// tokenized here, the engine worker generates from those ids, text deltas go out as chat.delta events, and the
// finished reply is saved with its statistics and announced with chat.done. One engine session is kept across
// turns, so each turn prefills only what its KV cache lacks. If the worker dies mid-reply, the reply is saved with
// status "error" and a message saying the engine was restarted (ModelService reloads the model).
// stats.contextLength is the session's context, the model card's sessionContextLength (the engine caps a chat session
// at 8192 tokens), which can be less than the card's contextLength (config max_position_embeddings).
//
// Adapters: a conversation with adapterDir (a PEFT folder, e.g. a run's checkpoint-200) runs every reply with that
// adapter applied unmerged on the loaded base; the worker reads an adapter once per (model, folder) and shares it, so
// the base is never loaded twice. One session is kept per adapter (the base is one more), the least recently used
// dropped beyond SESSIONS_KEPT. "Compare with base" (compare) answers one user message twice, base then adapter, into
// two messages marked compare "base" / "adapter"; later turns continue from the adapter's reply.
//
// Remote endpoints: a conversation with endpointId is answered by that OpenAI-compatible server (a vLLM cluster,
// another MoE Studio) instead of the local engine, with the same lifecycle: deltas, Stop, regenerate, edit, the text
// saved as it streams. It needs no local model and takes no engine slot; one reply at a time in the chat all the same.
// A remote that breaks off mid-reply ends it with status "error" naming the endpoint, and the text so far is kept.
import { randomUUID } from "node:crypto";
import { resolve } from "node:path";
import type { CallOutput, Conversation, GenerationStats, Message } from "../contract.js";
import type { HandlerInput } from "../rpc.js";
import type { GenerateOptions } from "../engine/engine.js";
import type { ChatMessage } from "../text/chat-template.js";
import type { Repositories } from "../store/repositories.js";
import type { ConversationService } from "./conversations.js";
import { workerExitReason, type Emit, type LoadedModel, type ModelService } from "./models.js";
import { busy, engineMessages, noModel, notFound } from "./errors.js";
import { boundedText } from "../text/bounded-text.js";
import { RpcError } from "../contract.js";
import { SessionPool } from "./session-pool.js";
import { GenerationQueue } from "./generation-queue.js";
import type { EndpointService } from "./endpoints.js";
import { streamChat, type RemoteSampling, type RemoteTarget } from "./remote/openai-stream.js";

/** Engine sessions the chat keeps (each holds a KV cache): the base and an adapter side by side for Compare with base. */
export const SESSIONS_KEPT = 2;

/** How often a streaming reply's text is written to the database (so a killed app keeps most of it). */
const SAVE_EVERY_MS = 1000;

/** One reply to write: its message and the adapter it runs with (undefined: the model as loaded; null: the bare base). */
interface Reply {
  assistant: Message;
  adapter: string | null | undefined;
}

/** A reply's text as it streams: what has arrived, and push(), which emits each delta and saves now and then. */
interface StreamWriter {
  text: string;
  push(delta: string, tokens: number): void;
}

/** An error's first line, as a message shows it. */
function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

interface Running {
  conversationId: string;
  messageId: string;
  abort: AbortController;
  done: Promise<void>;
}

export function crashMessage(reason: string): string {
  return engineMessages.replyCrashed(reason);
}

export class ChatService {
  private running: Running | null = null;
  private starting = false;

  /**
   * sessions: shared with the API (the chat's sessions are keyed "chat"); queue: the one generation slot, shared with
   * the API too. A send while the API answers is refused as busy, never queued behind it without a word.
   */
  constructor(
    private readonly repos: Repositories,
    private readonly conversations: ConversationService,
    private readonly models: ModelService,
    private readonly emit: Emit,
    private readonly sessions: SessionPool = new SessionPool(SESSIONS_KEPT),
    private readonly queue: GenerationQueue = new GenerationQueue(),
    private readonly endpoints: EndpointService | null = null,
  ) {
    models.beforeUnload = () => this.stopAll();
  }

  /** The reply being written, if any. */
  runningReply(): { conversationId: string; messageId: string } | null {
    return this.running ? { conversationId: this.running.conversationId, messageId: this.running.messageId } : null;
  }

  /** Reserve the single generation slot, wait for the model, then run `prepare` (database changes) and generate. */
  private async begin<T>(conversationId: string, prepare: (conv: Conversation, model: LoadedModel | null) => { result: T; replies: Reply[] }): Promise<T> {
    const conv = this.conversations.require(conversationId);
    if (this.running || this.starting) {
      const here = this.running?.conversationId === conversationId;
      throw busy(here ? engineMessages.busyHere() : engineMessages.busyOther());
    }
    if (conv.endpointId) {
      // a remote answers: no local model, no engine slot (its key is checked now, before anything is saved)
      if (!this.endpoints) throw new RpcError("invalid_input", "This app has no remote endpoints.");
      const target = this.endpoints.target(conv.endpointId);
      const { result, replies } = this.repos.db.transaction(() => prepare(conv, null))();
      this.start(this.conversations.require(conv.id), replies, target, () => {});
      return result;
    }
    const slot = this.queue.tryAcquire("chat");
    if (!slot) throw busy(engineMessages.busyApi());
    this.starting = true;
    let started = false;
    try {
      // A conversation with an adapter belongs to the base it was trained on: open that base if another (or none)
      // is loaded, so "Chat with checkpoint N" works from the Finetune view whatever Chat had open.
      const base = conv.adapterDir && conv.modelDir ? resolve(conv.modelDir) : null;
      let model = base ? await this.models.ready().catch(() => null) : await this.models.ready();
      if (base && (!model || resolve(model.dir) !== base)) {
        await this.models.open(base);
        model = await this.models.ready();
      }
      if (!model) throw noModel();
      const { result, replies } = this.repos.db.transaction(() => prepare(this.conversations.require(conv.id), model))();
      this.start(this.conversations.require(conv.id), replies, model, slot);
      started = true;
      return result;
    } finally {
      this.starting = false;
      if (!started) slot();
    }
  }

  private newAssistant(conversationId: string, compare: Message["compare"] = null): Message {
    const m: Message = { id: randomUUID(), conversationId, role: "assistant", content: "", createdAt: Date.now(), status: "streaming", error: null, stats: null, compare };
    this.repos.messages.append(m);
    return m;
  }

  private touch(conv: Conversation, model: LoadedModel | null): void {
    this.repos.conversations.update({ ...conv, ...(model ? { modelDir: model.dir } : {}), updatedAt: Date.now() });
  }

  /** The replies of one ordinary turn: the conversation's adapter (or the model as loaded). */
  private reply(conv: Conversation): Reply[] {
    return [{ assistant: this.newAssistant(conv.id), adapter: conv.adapterDir ?? undefined }];
  }

  private userMessage(conv: Conversation, content: string): Message {
    const user: Message = { id: randomUUID(), conversationId: conv.id, role: "user", content, createdAt: Date.now(), status: "complete", error: null, stats: null, compare: null };
    this.repos.messages.append(user);
    return user;
  }

  /**
   * A message that cannot fit the session's context even by the cheap lower bound is refused before anything is
   * saved: storing (and indexing) a 1M-character paste would cost the server a second for a reply that cannot be.
   */
  private refuseHopeless(content: string, conv: Conversation, model: LoadedModel | null): void {
    if (!model) return; // a remote knows its own context and says so
    const ctx = model.card.sessionContextLength;
    const atLeast = model.tokenizer.minTokens(content) + (conv.systemPrompt.trim() ? model.tokenizer.minTokens(conv.systemPrompt) : 0);
    if (atLeast >= ctx) throw new RpcError("invalid_input", engineMessages.promptTooLongAtLeast(content.length, atLeast, ctx));
  }

  async send(input: HandlerInput<"chat.send">): Promise<CallOutput<"chat.send">> {
    return this.begin(input.conversationId, (conv, model) => {
      this.refuseHopeless(input.content, conv, model);
      const user = this.userMessage(conv, input.content);
      const titled = this.conversations.titleFromFirstMessage(conv, input.content);
      this.touch(titled, model);
      const replies = this.reply(conv);
      return { result: { userMessage: user, assistantMessage: replies[0].assistant }, replies };
    });
  }

  /** Compare with base: the user's message answered by the bare base, then by the conversation's adapter. */
  async compare(input: HandlerInput<"chat.compare">): Promise<CallOutput<"chat.compare">> {
    const conv = this.conversations.require(input.conversationId);
    if (!conv.adapterDir) throw new RpcError("invalid_input", "This conversation runs on the base model: there is no adapter to compare it with.");
    if (conv.endpointId) throw new RpcError("invalid_input", "This conversation is answered by a remote endpoint: Compare with base runs a local adapter and its base.");
    return this.begin(input.conversationId, (conv, model) => {
      this.refuseHopeless(input.content, conv, model);
      const user = this.userMessage(conv, input.content);
      this.touch(this.conversations.titleFromFirstMessage(conv, input.content), model);
      const base = this.newAssistant(conv.id, "base");
      const adapted = this.newAssistant(conv.id, "adapter");
      return {
        result: { userMessage: user, baseMessage: base, adapterMessage: adapted },
        // null: the bare base, even when the model was loaded with an adapter of its own (serve --adapter)
        replies: [{ assistant: base, adapter: null }, { assistant: adapted, adapter: conv.adapterDir }],
      };
    });
  }

  async regenerate(input: HandlerInput<"chat.regenerate">): Promise<CallOutput<"chat.regenerate">> {
    return this.begin(input.conversationId, (conv, model) => {
      const msgs = this.repos.messages.list(conv.id);
      // the last reply, or both replies of a compared turn
      while (msgs[msgs.length - 1]?.role === "assistant") this.repos.messages.delete(msgs.pop()!.id);
      const last = msgs[msgs.length - 1];
      if (!last || last.role !== "user") throw new RpcError("invalid_input", "There is no message to reply to in this conversation.");
      this.touch(conv, model);
      const replies = this.reply(conv);
      return { result: { assistantMessage: replies[0].assistant }, replies };
    });
  }

  async edit(input: HandlerInput<"chat.edit">): Promise<CallOutput<"chat.edit">> {
    return this.begin(input.conversationId, (conv, model) => {
      const m = this.repos.messages.get(input.messageId);
      if (!m || m.conversationId !== conv.id) throw notFound(`Message ${input.messageId} is not in this conversation.`);
      if (m.role !== "user") throw new RpcError("invalid_input", "Only your own messages can be edited.");
      this.refuseHopeless(input.content, conv, model);
      this.repos.messages.deleteAfter(m.id);
      this.repos.messages.setContent(m.id, input.content);
      this.touch(conv, model);
      const replies = this.reply(conv);
      return { result: { userMessage: { ...m, content: input.content }, assistantMessage: replies[0].assistant }, replies };
    });
  }

  /** Stop the running reply of a conversation; resolves once it is saved (chat.done has been emitted). */
  async stop(input: HandlerInput<"chat.stop">): Promise<{ ok: true }> {
    const r = this.running;
    if (r && r.conversationId === input.conversationId) {
      r.abort.abort();
      await r.done;
    }
    return { ok: true };
  }

  async stopAll(): Promise<void> {
    const r = this.running;
    if (r) {
      r.abort.abort();
      await r.done;
    }
  }

  /** Write the replies one after the other (a stop ends them all); one generation slot for the whole turn. */
  /** engine: the loaded model, or the remote endpoint (RemoteTarget) that answers this conversation. */
  private start(conv: Conversation, replies: Reply[], engine: LoadedModel | RemoteTarget, slot: () => void): void {
    const abort = new AbortController();
    const running: Running = { conversationId: conv.id, messageId: replies[0].assistant.id, abort, done: Promise.resolve() };
    this.running = running;
    const skip = new Set(replies.map((r) => r.assistant.id));
    // The slot is free before the turn's last chat.done goes out: a client may send again the moment it sees it.
    const release = () => {
      if (this.running === running) this.running = null;
      slot();
    };
    running.done = (async () => {
      for (const [i, r] of replies.entries()) {
        running.messageId = r.assistant.id;
        const last = i === replies.length - 1 ? release : undefined;
        if (abort.signal.aborted) this.finish(conv.id, { ...r.assistant, status: "stopped" }, last);  // Stop ends the turn
        else if ("baseUrl" in engine) await this.generateRemote(conv, r.assistant, engine, abort.signal, skip, last);
        else await this.generate(conv, r.assistant, engine, abort.signal, r.adapter, skip, last);
      }
    })().finally(release);
  }

  /** The turns a reply continues: failed replies, the replies being written and the base side of a compare left out. */
  private history(conversationId: string, skip: ReadonlySet<string>): ChatMessage[] {
    return this.repos.messages
      .list(conversationId)
      .filter((m) => !skip.has(m.id) && m.content.length > 0 && !(m.role === "assistant" && (m.status === "error" || m.compare === "base")))
      .map((m) => ({ role: m.role, content: m.content }));
  }

  /**
   * Prompt ids for the conversation, dropping the oldest turns when it does not fit the context with `reserve` tokens
   * to spare. The template and the tokenizer run in the text worker (electron/text/bounded-text.ts), never on this
   * thread: a hostile template or a huge message costs this request an error, not the server. Before anything is
   * rendered, a cheap lower bound on each turn's tokens (its UTF-8 length over the longest token's) drops turns that
   * cannot fit and refuses a last message that cannot, so a 1M-character paste is never tokenized.
   */
  async promptIds(conv: Conversation, history: ChatMessage[], model: LoadedModel, contextLength: number, reserve: number): Promise<number[]> {
    const system = conv.systemPrompt.trim() ? conv.systemPrompt : null;
    const text = boundedText();
    const render = (msgs: ChatMessage[]): Promise<number[]> => {
      if (model.template) return text.chatIds(model.template, model.dir, msgs, { systemPrompt: system, addGenerationPrompt: true });
      // No chat template: a plain transcript the model can continue.
      const lines = [...(system ? [`System: ${system}`] : []), ...msgs.map((m) => `${m.role === "user" ? "User" : "Assistant"}: ${m.content}`), "Assistant:"];
      return text.encode(model.dir, lines.join("\n\n"), { addSpecialTokens: true });
    };
    // Where a shorter prompt may start: the first message, or any later user message.
    const starts = history.flatMap((m, i) => (i === 0 || m.role === "user" ? [i] : []));
    const least = new Array<number>(history.length + 1).fill(0);
    for (let i = history.length - 1; i >= 0; i--) least[i] = least[i + 1] + model.tokenizer.minTokens(history[i].content);
    const floor = model.tokenizer.minTokens(system ?? "");
    let first = 0;
    while (first < starts.length - 1 && floor + least[starts[first]] + reserve > contextLength) first++;
    let msgs = history.slice(starts[first] ?? 0);
    const atLeast = floor + least[starts[first] ?? 0];
    if (atLeast >= contextLength) {
      const chars = msgs.reduce((n, m) => n + m.content.length, 0);
      throw new Error(engineMessages.promptTooLongAtLeast(chars, atLeast, contextLength));
    }
    for (;;) {
      const ids = await render(msgs);
      if (ids.length + reserve <= contextLength) return ids;
      // Drop the oldest turn (through the next user message) and try again.
      const next = msgs.findIndex((m, i) => i > 0 && m.role === "user");
      if (next <= 0) {
        if (ids.length < contextLength) return ids;
        throw new Error(engineMessages.promptTooLong(ids.length, contextLength));
      }
      msgs = msgs.slice(next);
    }
  }

  /**
   * The text of a reply as it streams, local or remote: each delta goes out as chat.delta and the text so far is
   * written to the database every SAVE_EVERY_MS (so a killed app keeps most of it).
   */
  private streamWriter(conversationId: string, messageId: string): StreamWriter {
    let lastSave = Date.now();
    const w = {
      text: "",
      push: (delta: string, tokens: number) => {
        w.text += delta;
        this.emit("chat.delta", { conversationId, messageId, delta, tokens });
        if (Date.now() - lastSave > SAVE_EVERY_MS) {
          this.repos.messages.setContent(messageId, w.text);
          lastSave = Date.now();
        }
      },
    };
    return w;
  }

  /**
   * One reply's frame, local or remote: the text streams into the message; what `produce` returns is saved, or, when it
   * throws, the text that had arrived with the error `describe` names.
   */
  private async runReply(conv: Conversation, assistant: Message, beforeDone: (() => void) | undefined,
    produce: (w: StreamWriter) => Promise<{ content: string; status: Message["status"]; stats: GenerationStats }>,
    describe: (e: unknown) => string): Promise<void> {
    const w = this.streamWriter(conv.id, assistant.id);
    let done: Pick<Message, "content" | "status" | "error" | "stats">;
    try {
      done = { ...(await produce(w)), error: null };
    } catch (e) {
      done = { content: w.text, status: "error", error: describe(e), stats: null };
    }
    this.finish(conv.id, { ...assistant, ...done }, beforeDone);
  }

  private async generate(conv: Conversation, assistant: Message, model: LoadedModel, signal: AbortSignal, adapter: string | null | undefined,
    skip: ReadonlySet<string>, beforeDone?: () => void): Promise<void> {
    await this.runReply(conv, assistant, beforeDone, async (w) => {
      const session = await this.sessions.get("chat", model.model, adapter);
      const d = model.card.sampling;
      const s = conv.sampling;
      const maxTokens = s.maxTokens ?? d.maxTokens;
      const ctx = session.contextLength;
      const reserve = Math.max(1, Math.min(maxTokens, Math.floor(ctx / 4)));
      const ids = await this.promptIds(conv, this.history(conv.id, skip), model, ctx, reserve);
      const options: GenerateOptions = {
        maxTokens,
        temperature: s.temperature ?? d.temperature,
        topP: s.topP ?? d.topP,
        topK: s.topK ?? d.topK,
        repetitionPenalty: s.repetitionPenalty ?? d.repetitionPenalty,
        minP: d.minP,
        ...(s.seed !== null ? { seed: s.seed } : {}),
        signal,
      };
      const gen = session.generate({ ids }, options);
      for await (const delta of gen) w.push(delta, gen.tokens);
      const r = await gen.result;
      return {
        content: r.text,
        status: r.stats.stopReason === "cancelled" ? "stopped" : "complete",
        stats: {
          promptTokens: r.stats.promptTokens,
          reusedTokens: r.stats.reusedTokens,
          completionTokens: r.stats.completionTokens,
          prefillTokensPerSecond: r.stats.prefillTokensPerSecond,
          decodeTokensPerSecond: r.stats.decodeTokensPerSecond,
          stopReason: r.stats.stopReason,
          contextTokens: r.stats.promptTokens + r.stats.completionTokens,
          contextLength: ctx,
        },
      };
    }, (e) => {
      const why = workerExitReason(e);
      if (why) this.sessions.forget(model.model);
      return why ? crashMessage(why) : firstLine(e);
    });
  }

  /** A reply from the conversation's remote endpoint, streamed like a local one. */
  private async generateRemote(conv: Conversation, assistant: Message, target: RemoteTarget, signal: AbortSignal, skip: ReadonlySet<string>,
    beforeDone?: () => void): Promise<void> {
    await this.runReply(conv, assistant, beforeDone, async (w) => {
      const system = conv.systemPrompt.trim() ? [{ role: "system", content: conv.systemPrompt }] : [];
      const s = conv.sampling;
      // only what the user set: the remote's own defaults (its generation_config) stand for the rest
      const sampling: RemoteSampling = {
        ...(s.temperature !== null ? { temperature: s.temperature } : {}),
        ...(s.topP !== null ? { top_p: s.topP } : {}),
        ...(s.topK !== null ? { top_k: s.topK } : {}),
        ...(s.repetitionPenalty !== null ? { repetition_penalty: s.repetitionPenalty } : {}),
        ...(s.maxTokens !== null ? { max_tokens: s.maxTokens } : {}),
        ...(s.seed !== null ? { seed: s.seed } : {}),
      };
      const r = await streamChat(target, [...system, ...this.history(conv.id, skip)], sampling, signal, (delta, chunks) => w.push(delta, chunks));
      const prompt = r.usage?.promptTokens ?? 0;
      const completion = r.usage?.completionTokens ?? r.chunks;
      const decodeMs = r.totalMs - r.firstTextMs;
      return {
        content: r.text,
        status: r.stopped ? "stopped" : "complete",
        stats: {
          promptTokens: prompt,
          reusedTokens: 0,
          completionTokens: completion,
          // as seen from here: the time to the first text includes the network and the remote's queue
          prefillTokensPerSecond: r.firstTextMs > 0 ? (prompt * 1000) / r.firstTextMs : 0,
          decodeTokensPerSecond: decodeMs > 0 && completion > 1 ? ((completion - 1) * 1000) / decodeMs : 0,
          stopReason: r.stopped ? "cancelled" : r.finishReason === "length" ? "length" : "eos",
          contextTokens: prompt + completion,
          contextLength: 0, // the remote does not say
        },
      };
    }, firstLine);
  }

  private finish(conversationId: string, message: Message, beforeDone?: () => void): void {
    try {
      this.repos.messages.finish(message);
    } catch {
      // the conversation was deleted while the reply was being written: nothing to save
    }
    beforeDone?.();
    this.emit("chat.done", { conversationId, message });
  }

  async dispose(): Promise<void> {
    await this.stopAll();
    await this.sessions.dispose();
  }
}
