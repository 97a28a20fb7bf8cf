// Small UI preferences remembered in the page's storage (the database stays the source of truth for settings;
// this only avoids a flash of the wrong language/theme before settings.get answers).
export function readLocal<T>(key: string, fallback: T): T {
  try {
    if (typeof localStorage === "undefined") return fallback;
    const v = localStorage.getItem(`moe-studio.${key}`);
    return v === null ? fallback : (JSON.parse(v) as T);
  } catch {
    return fallback;
  }
}

export function writeLocal(key: string, value: unknown): void {
  try {
    if (typeof localStorage === "undefined") return;
    if (value === null || value === undefined) localStorage.removeItem(`moe-studio.${key}`);
    else localStorage.setItem(`moe-studio.${key}`, JSON.stringify(value));
  } catch {
    /* storage unavailable (private mode, sandbox): fine */
  }
}
