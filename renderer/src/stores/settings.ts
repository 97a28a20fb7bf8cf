// The app's settings: loaded from settings.get, changed with settings.set; language and theme apply live.
import { create } from "zustand";
import { api } from "../api/index.js";
import type { Settings } from "../api/types.js";
import { langFromLocale, type Lang } from "../i18n/index.js";
import { readLocal, writeLocal } from "../local.js";
import { useUi } from "./ui.js";

interface SettingsState extends Settings {
  loaded: boolean;
  load(): Promise<void>;
  update(patch: Partial<Settings>): Promise<void>;
}

const cached = readLocal<Pick<Settings, "language" | "theme">>("settings", { language: "system", theme: "system" });

export const useSettings = create<SettingsState>((set, get) => ({
  language: cached.language ?? "system",
  theme: cached.theme ?? "system",
  hubSource: "hf",
  hubEndpoint: "",
  modelsDir: "",
  kvCache: "f16",
  loaded: false,
  load: async () => {
    try {
      const s = await api().call("settings.get", {});
      set({ ...s, loaded: true });
      writeLocal("settings", { language: s.language, theme: s.theme });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  update: async (patch) => {
    const before = { language: get().language, theme: get().theme, kvCache: get().kvCache };
    set(patch); // live: the UI switches at once
    try {
      const s = await api().call("settings.set", patch);
      set({ language: s.language, theme: s.theme, kvCache: s.kvCache });
      writeLocal("settings", { language: s.language, theme: s.theme });
    } catch (e) {
      set(before);
      useUi.getState().notifyError(e);
    }
  },
}));

export function systemLocale(): string {
  return typeof navigator !== "undefined" ? navigator.language : "en";
}

export function resolveLang(language: Settings["language"], locale = systemLocale()): Lang {
  return language === "system" ? langFromLocale(locale) : language;
}

export function resolveTheme(theme: Settings["theme"], prefersDark: boolean): "light" | "dark" {
  return theme === "system" ? (prefersDark ? "dark" : "light") : theme;
}
