// t(key, vars) in the current language; the language lives in the settings store and switches live.
import { en, type MessageKey } from "./en.js";
import { zh } from "./zh.js";

export type Lang = "en" | "zh";
export type { MessageKey };
export const dictionaries: Record<Lang, Record<MessageKey, string>> = { en, zh };

/** "zh-CN", "zh_TW", "zh" → zh; everything else → en. */
export function langFromLocale(locale: string | undefined | null): Lang {
  return locale && /^zh\b/i.test(locale.replace("_", "-")) ? "zh" : "en";
}

export function translate(lang: Lang, key: MessageKey, vars?: Record<string, string | number>): string {
  const s = dictionaries[lang][key] ?? en[key] ?? key;
  if (!vars) return s;
  return s.replace(/\{(\w+)\}/g, (m, k: string) => (k in vars ? String(vars[k]) : m));
}
