// The open conversation: its settings and messages. Replies stream in as chat.delta events (appended to the
// message) and end with chat.done (the final message with its stats). Events can overtake the call's own response,
// so deltas for a message the store has not seen yet are kept and applied when the message arrives.
import { create } from "zustand";
import { api } from "../api/index.js";
import type { CallInput, Conversation, EventPayload, Message, ModelCard } from "../api/types.js";
import { useConversations } from "./conversations.js";
import { useModels } from "./models.js";
import { bannerForError, useUi } from "./ui.js";

// ---------- pure reducers (tested directly) ----------

/** Appends a delta to its message; null when the message is not in the list. */
export function appendDelta(messages: Message[], messageId: string, delta: string): Message[] | null {
  const i = messages.findIndex((m) => m.id === messageId);
  if (i < 0) return null;
  const m = messages[i];
  if (m.status !== "streaming") return messages; // a late delta after done changes nothing
  const next = messages.slice();
  next[i] = { ...m, content: m.content + delta };
  return next;
}

/** Replaces a message with its final version from chat.done; null when the message is not in the list. */
export function applyDone(messages: Message[], message: Message): Message[] | null {
  const i = messages.findIndex((m) => m.id === message.id);
  if (i < 0) return null;
  const next = messages.slice();
  next[i] = message;
  return next;
}

/** Editing a user message: it gets the new text and every later message goes. */
export function truncateAfter(messages: Message[], messageId: string, content: string): Message[] {
  const i = messages.findIndex((m) => m.id === messageId);
  if (i < 0) return messages;
  return [...messages.slice(0, i), { ...messages[i], content }];
}

/** Regenerate: the last reply goes, or both replies of a compared turn (a new one will stream in their place). */
export function dropLastAssistant(messages: Message[]): Message[] {
  let end = messages.length;
  while (end > 0 && messages[end - 1].role === "assistant") end--;
  return end === messages.length ? messages : messages.slice(0, end);
}

/** A message list in display rows: a compared turn's base and adapter replies share one row, side by side. */
export type MessageRow = { kind: "one"; message: Message } | { kind: "compare"; base: Message; adapter: Message };
export function messageRows(messages: Message[]): MessageRow[] {
  const rows: MessageRow[] = [];
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    const next = messages[i + 1];
    if (m.compare === "base" && next?.compare === "adapter") {
      rows.push({ kind: "compare", base: m, adapter: next });
      i++;
    } else rows.push({ kind: "one", message: m });
  }
  return rows;
}

export function isStreaming(messages: Message[]): boolean {
  return messages.some((m) => m.status === "streaming");
}

/** The context this conversation occupies: from the newest reply that has stats. */
export function contextUsed(messages: Message[]): { used: number; total: number } | null {
  for (let i = messages.length - 1; i >= 0; i--) {
    const s = messages[i].stats;
    if (s) return { used: s.contextTokens, total: s.contextLength };
  }
  return null;
}

/**
 * The header's meter: tokens used (from the newest reply) out of the context a chat session gets with the loaded
 * model (its card's sessionContextLength), so the total is the same before the first reply and after it. Without
 * a model (e.g. while the engine restarts) the last reply's own total stands in.
 */
export function contextMeter(messages: Message[], card: Pick<ModelCard, "sessionContextLength"> | null): { used: number; total: number } | null {
  const ctx = contextUsed(messages);
  const total = card?.sessionContextLength ?? ctx?.total;
  return total ? { used: ctx?.used ?? 0, total } : null;
}

// ---------- the store ----------

interface Early {
  text: string;
  tokens: number;
  done: Message | null;
}

interface ChatState {
  conversation: Conversation | null;
  messages: Message[];
  /** Tokens received so far per streaming message (from chat.delta). */
  liveTokens: Record<string, number>;
  loading: boolean;
  /** A send/regenerate/edit call is in flight. */
  sending: boolean;
  /** "Compare with base" is on: sends answer with the base and with the conversation's adapter (chat.compare). */
  compareMode: boolean;
  setCompareMode(on: boolean): void;
  stopping: boolean;
  load(id: string | null): Promise<void>;
  setConversation(conversation: Conversation | null, messages: Message[]): void;
  patchConversation(conversation: Conversation): void;
  updateConversation(patch: Omit<CallInput<"conversations.update">, "id">): Promise<void>;
  send(content: string): Promise<boolean>;
  stop(): Promise<void>;
  regenerate(): Promise<void>;
  edit(messageId: string, content: string): Promise<boolean>;
  onDelta(e: EventPayload<"chat.delta">): void;
  /** Applies the deltas received since the last flush (done on a short timer, and before chat.done). */
  flush(): void;
  onDone(e: EventPayload<"chat.done">): void;
}

const early = new Map<string, Early>();
/** Deltas not yet in the state: a fast model sends ~2000 a second, the UI takes them a few dozen times a second. */
const incoming = new Map<string, { text: string; tokens: number }>();
let flushTimer: ReturnType<typeof setTimeout> | null = null;

/** Longer replies cost more to re-render (Markdown), so they are refreshed less often: 30 ms … 250 ms. */
export function flushDelayMs(contentLength: number): number {
  return Math.min(250, 30 + Math.floor(contentLength / 400));
}
let loadSeq = 0;
let tempSeq = 0;

function tempUserMessage(conversationId: string, content: string): Message {
  return {
    id: `pending-${++tempSeq}`,
    conversationId,
    role: "user",
    content,
    createdAt: Date.now(),
    status: "complete",
    error: null,
    stats: null,
    compare: null,
  };
}

export const useChat = create<ChatState>((set, get) => {
  /** Adds a message from a call's response, applying whatever events already arrived for it. */
  function withEarly(m: Message): Message {
    const e = early.get(m.id);
    if (!e) return m;
    early.delete(m.id);
    if (e.done) return e.done;
    if (e.tokens) set({ liveTokens: { ...get().liveTokens, [m.id]: e.tokens } });
    return m.status === "streaming" ? { ...m, content: m.content + e.text } : m;
  }

  function afterDone(message: Message): void {
    const { [message.id]: _gone, ...rest } = get().liveTokens;
    set({ liveTokens: rest, stopping: isStreaming(get().messages) ? get().stopping : false });
    // A failed reply is reported once, by its own note (MessageItem); no banner repeats it. A dead engine worker
    // has the engine banner besides ("restarting", until it is ready), which says what happens next, not what failed.
    if (message.status === "complete") useUi.getState().dismissSource("chat");
  }

  return {
    conversation: null,
    messages: [],
    liveTokens: {},
    loading: false,
    sending: false,
    stopping: false,
    compareMode: false,

    setCompareMode: (on) => set({ compareMode: on }),

    load: async (id) => {
      const seq = ++loadSeq;
      early.clear();
      incoming.clear();
      if (!id) {
        set({ conversation: null, messages: [], liveTokens: {}, loading: false, stopping: false, compareMode: false });
        return;
      }
      set({ loading: true });
      try {
        const { conversation, messages } = await api().call("conversations.get", { id });
        if (seq !== loadSeq) return;
        set({ conversation, messages, liveTokens: {}, loading: false, stopping: false, compareMode: false });
      } catch (e) {
        if (seq !== loadSeq) return;
        set({ conversation: null, messages: [], loading: false });
        useUi.getState().notifyError(e);
      }
    },

    setConversation: (conversation, messages) => {
      ++loadSeq;
      early.clear();
      incoming.clear();
      set({ conversation, messages, liveTokens: {}, loading: false, stopping: false });
    },

    patchConversation: (conversation) => {
      if (get().conversation?.id === conversation.id) set({ conversation });
    },

    updateConversation: async (patch) => {
      const conv = get().conversation;
      if (!conv) return;
      const optimistic: Conversation = {
        ...conv,
        ...(patch.systemPrompt !== undefined ? { systemPrompt: patch.systemPrompt } : {}),
        ...(patch.presetId !== undefined ? { presetId: patch.presetId } : {}),
        ...(patch.sampling ? { sampling: { ...conv.sampling, ...patch.sampling } } : {}),
      };
      set({ conversation: optimistic });
      try {
        const saved = await api().call("conversations.update", { id: conv.id, ...patch });
        get().patchConversation(saved);
      } catch (e) {
        get().patchConversation(conv);
        useUi.getState().notifyError(e);
      }
    },

    send: async (content) => {
      const text = content.trim();
      if (!text || get().sending || isStreaming(get().messages)) return false;
      // Like LM Studio: with no model (and none loading or restarting) nothing is created, the text stays in the
      // composer (send answers false) and the banner says to load a model; it goes once one is loaded.
      // (a conversation answered by a remote endpoint needs no local model)
      const engine = useModels.getState().status;
      if (!get().conversation?.endpointId && !engine.model && engine.state !== "loading" && engine.state !== "crashed") {
        useUi.getState().notify(bannerForError({ code: "no_model" }));
        return false;
      }
      let conv = get().conversation;
      let created = false;
      if (!conv) {
        const id = await useConversations.getState().create();
        conv = get().conversation;
        if (!id || !conv) return false;
        created = true;
      }
      const temp = tempUserMessage(conv.id, content);
      set({ messages: [...get().messages, temp], sending: true });
      try {
        const comparing = get().compareMode && conv.adapterDir !== null;
        const { userMessage, replies } = comparing
          ? await api().call("chat.compare", { conversationId: conv.id, content }).then((r) => ({ userMessage: r.userMessage, replies: [r.baseMessage, r.adapterMessage] }))
          : await api().call("chat.send", { conversationId: conv.id, content }).then((r) => ({ userMessage: r.userMessage, replies: [r.assistantMessage] }));
        if (get().conversation?.id === conv.id) {
          const msgs = get().messages.map((m) => (m.id === temp.id ? userMessage : m));
          const got = replies.map(withEarly);
          set({ messages: [...msgs, ...got] });
          for (const reply of got) if (reply.status !== "streaming") afterDone(reply);
        }
        return true;
      } catch (e) {
        set({ messages: get().messages.filter((m) => m.id !== temp.id) });
        useUi.getState().notifyError(e);
        // the server saved nothing; a conversation opened just for this message would be left empty
        if (created && get().conversation?.id === conv.id && get().messages.length === 0) await useConversations.getState().remove(conv.id);
        return false;
      } finally {
        set({ sending: false });
        void useConversations.getState().refresh();
      }
    },

    stop: async () => {
      const conv = get().conversation;
      if (!conv || !isStreaming(get().messages)) return;
      set({ stopping: true });
      try {
        await api().call("chat.stop", { conversationId: conv.id });
      } catch (e) {
        set({ stopping: false });
        useUi.getState().notifyError(e);
      }
    },

    regenerate: async () => {
      const conv = get().conversation;
      const before = get().messages;
      if (!conv || get().sending || isStreaming(before) || before.at(-1)?.role !== "assistant") return;
      set({ messages: dropLastAssistant(before), sending: true });
      try {
        const { assistantMessage } = await api().call("chat.regenerate", { conversationId: conv.id });
        if (get().conversation?.id === conv.id) {
          const reply = withEarly(assistantMessage);
          set({ messages: [...get().messages, reply] });
          if (reply.status !== "streaming") afterDone(reply);
        }
      } catch (e) {
        if (get().conversation?.id === conv.id) set({ messages: before });
        useUi.getState().notifyError(e);
      } finally {
        set({ sending: false });
      }
    },

    edit: async (messageId, content) => {
      const conv = get().conversation;
      const before = get().messages;
      const text = content.trim();
      if (!conv || !text || get().sending || isStreaming(before)) return false;
      set({ messages: truncateAfter(before, messageId, content), sending: true });
      try {
        const { userMessage, assistantMessage } = await api().call("chat.edit", { conversationId: conv.id, messageId, content });
        if (get().conversation?.id === conv.id) {
          const msgs = get().messages.map((m) => (m.id === messageId ? userMessage : m));
          const reply = withEarly(assistantMessage);
          set({ messages: [...msgs, reply] });
          if (reply.status !== "streaming") afterDone(reply);
        }
        return true;
      } catch (e) {
        if (get().conversation?.id === conv.id) set({ messages: before });
        useUi.getState().notifyError(e);
        return false;
      } finally {
        set({ sending: false });
        void useConversations.getState().refresh();
      }
    },

    onDelta: (e) => {
      if (get().conversation?.id !== e.conversationId) return;
      const buf = incoming.get(e.messageId) ?? { text: "", tokens: 0 };
      buf.text += e.delta;
      buf.tokens = e.tokens;
      incoming.set(e.messageId, buf);
      if (!flushTimer) {
        const len = get().messages.at(-1)?.content.length ?? 0;
        flushTimer = setTimeout(() => get().flush(), flushDelayMs(len));
      }
    },

    flush: () => {
      if (flushTimer) clearTimeout(flushTimer);
      flushTimer = null;
      if (incoming.size === 0) return;
      let messages = get().messages;
      const liveTokens = { ...get().liveTokens };
      for (const [id, d] of incoming) {
        const next = appendDelta(messages, id, d.text);
        if (next) {
          messages = next;
          liveTokens[id] = d.tokens;
        } else {
          const buf = early.get(id) ?? { text: "", tokens: 0, done: null };
          buf.text += d.text;
          buf.tokens = d.tokens;
          early.set(id, buf);
        }
      }
      incoming.clear();
      set({ messages, liveTokens });
    },

    onDone: (e) => {
      get().flush();
      if (get().conversation?.id === e.conversationId) {
        const next = applyDone(get().messages, e.message);
        if (next) {
          set({ messages: next });
          afterDone(e.message);
        } else {
          const buf = early.get(e.message.id) ?? { text: "", tokens: 0, done: null };
          buf.done = e.message;
          early.set(e.message.id, buf);
        }
      }
      void useConversations.getState().refresh();
    },
  };
});
