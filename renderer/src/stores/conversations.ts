// The conversation list (with search) and which conversation is open.
import { create } from "zustand";
import { api } from "../api/index.js";
import type { ConversationSummary } from "../api/types.js";
import { useChat } from "./chat.js";
import { useUi } from "./ui.js";

interface ConversationsState {
  list: ConversationSummary[];
  search: string;
  currentId: string | null;
  loaded: boolean;
  refresh(): Promise<void>;
  setSearch(search: string): void;
  /** Opens a conversation; `show: false` keeps the current view (startup, reconnect). */
  select(id: string | null, opts?: { show?: boolean }): Promise<void>;
  /** A new conversation (endpointId: answered by that remote endpoint), shown in Chat. */
  create(opts?: { endpointId?: string }): Promise<string | null>;
  rename(id: string, title: string): Promise<void>;
  remove(id: string): Promise<void>;
}

let searchSeq = 0;
let searchTimer: ReturnType<typeof setTimeout> | null = null;

export const useConversations = create<ConversationsState>((set, get) => ({
  list: [],
  search: "",
  currentId: null,
  loaded: false,
  refresh: async () => {
    const seq = ++searchSeq;
    try {
      const search = get().search.trim();
      const list = await api().call("conversations.list", search ? { search } : {});
      if (seq === searchSeq) set({ list, loaded: true });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  setSearch: (search) => {
    set({ search });
    if (searchTimer) clearTimeout(searchTimer);
    searchTimer = setTimeout(() => void get().refresh(), 150);
  },
  select: async (id, opts) => {
    set({ currentId: id });
    rememberCurrent(id);
    if (opts?.show !== false) useUi.getState().setView("chat");
    await useChat.getState().load(id);
  },
  create: async (opts) => {
    try {
      const conv = await api().call("conversations.create", opts?.endpointId ? { endpointId: opts.endpointId } : {});
      set({ currentId: conv.id, search: "" });
      rememberCurrent(conv.id);
      useChat.getState().setConversation(conv, []);
      useUi.getState().setView("chat");
      await get().refresh();
      return conv.id;
    } catch (e) {
      useUi.getState().notifyError(e);
      return null;
    }
  },
  rename: async (id, title) => {
    const t = title.trim();
    if (!t) return;
    set({ list: get().list.map((c) => (c.id === id ? { ...c, title: t } : c)) });
    try {
      const conv = await api().call("conversations.rename", { id, title: t });
      useChat.getState().patchConversation(conv);
    } catch (e) {
      useUi.getState().notifyError(e);
      await get().refresh();
    }
  },
  remove: async (id) => {
    const before = get().list;
    const idx = before.findIndex((c) => c.id === id);
    set({ list: before.filter((c) => c.id !== id) });
    try {
      await api().call("conversations.delete", { id });
      if (get().currentId === id) {
        const rest = get().list;
        const next = rest[Math.min(idx, rest.length - 1)]?.id ?? null;
        await get().select(next);
      }
    } catch (e) {
      useUi.getState().notifyError(e);
      await get().refresh();
    }
  },
}));

/** The services name a fresh conversation "New chat"; shown translated, and never equal to the "New chat" button. */
export const DEFAULT_TITLE = "New chat";
export function displayTitle(title: string, t: (key: "sidebar.untitled") => string): string {
  return !title.trim() || title === DEFAULT_TITLE ? t("sidebar.untitled") : title;
}

const KEY = "moe-studio.currentConversation";
function rememberCurrent(id: string | null): void {
  try {
    if (typeof localStorage === "undefined") return;
    if (id) localStorage.setItem(KEY, id);
    else localStorage.removeItem(KEY);
  } catch {
    /* storage may be unavailable */
  }
}
export function rememberedConversation(): string | null {
  try {
    return typeof localStorage === "undefined" ? null : localStorage.getItem(KEY);
  } catch {
    return null;
  }
}
