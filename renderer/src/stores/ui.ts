// What the shell shows: current view, banners (dismissible errors / notices) and the connection state.
import { create } from "zustand";
import type { ConnectionState } from "../api/types.js";
import type { MessageKey } from "../i18n/index.js";
import { readLocal, writeLocal } from "../local.js";
import { describeError } from "../errors.js";

export type View = "chat" | "models" | "datasets" | "finetune" | "settings";

export interface Banner {
  id: number;
  kind: "error" | "info";
  /** Either a translation key (rendered in the current language) or literal text. */
  key?: MessageKey;
  vars?: Record<string, string | number>;
  text?: string;
  /** The server's own (untranslated) words, shown small under the message. */
  detail?: string;
  /** Who raised it: banners of a source go away together when that source recovers ("model": a model is loaded). */
  source?: "chat" | "engine" | "model";
}

interface UiState {
  view: View;
  banners: Banner[];
  connection: ConnectionState;
  /** The transport has been open at least once (the first connect is not a "disconnected" banner). */
  everConnected: boolean;
  panelOpen: boolean;
  setView(view: View): void;
  togglePanel(open?: boolean): void;
  setConnection(state: ConnectionState): void;
  notify(banner: Omit<Banner, "id">): void;
  notifyError(error: unknown): void;
  dismiss(id: number): void;
  dismissSource(source: NonNullable<Banner["source"]>): void;
}

let nextBanner = 1;

/** An error from a call, in the user's language (describeError); the server's text only as a detail. */
export function bannerForError(error: unknown): Omit<Banner, "id"> {
  const e = error as { code?: string; message?: string } | null;
  const code = e?.code;
  const d = describeError(code, e?.message ?? (typeof error === "string" ? error : null));
  return { kind: "error", key: d.key, ...(d.vars ? { vars: d.vars } : {}), ...(d.detail ? { detail: d.detail } : {}), ...(code === "no_model" ? { source: "model" as const } : {}) };
}

export const useUi = create<UiState>((set, get) => ({
  view: "chat",
  banners: [],
  connection: "open",
  everConnected: false,
  panelOpen: readLocal("panelOpen", false),
  setView: (view) => set({ view }),
  togglePanel: (open) => {
    const panelOpen = open ?? !get().panelOpen;
    set({ panelOpen });
    writeLocal("panelOpen", panelOpen);
  },
  setConnection: (connection) => set({ connection, everConnected: get().everConnected || connection === "open" }),
  notify: (banner) => {
    // The same message twice in a row is one banner.
    const last = get().banners.at(-1);
    if (last && last.key === banner.key && last.text === banner.text && last.detail === banner.detail && JSON.stringify(last.vars) === JSON.stringify(banner.vars)) return;
    set({ banners: [...get().banners.slice(-3), { ...banner, id: nextBanner++ }] });
  },
  notifyError: (error) => get().notify(bannerForError(error)),
  dismiss: (id) => set({ banners: get().banners.filter((b) => b.id !== id) }),
  dismissSource: (source) => {
    if (get().banners.some((b) => b.source === source)) set({ banners: get().banners.filter((b) => b.source !== source) });
  },
}));
