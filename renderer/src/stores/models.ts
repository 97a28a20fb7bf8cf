// The engine's state (engine.status events), load progress (models.progress), recent folders and app info.
import { create } from "zustand";
import { api } from "../api/index.js";
import type { AppInfo, EngineStatus, ModelCard, RecentModel } from "../api/types.js";
import { useUi } from "./ui.js";

interface ModelsState {
  status: EngineStatus;
  progress: { dir: string; done: number; total: number } | null;
  recent: RecentModel[];
  /** The last model that was loaded (its defaults still apply while the worker restarts and reloads it). */
  lastCard: ModelCard | null;
  info: AppInfo | null;
  /** Why the last open failed (shown on the Models view), with the folder it was about. */
  openError: { dir: string; message: string } | null;
  opening: string | null;
  refresh(): Promise<void>;
  open(dir: string): Promise<ModelCard | null>;
  pickFolder(): Promise<void>;
  forget(dir: string): Promise<void>;
  setStatus(status: EngineStatus): void;
  setProgress(p: { dir: string; done: number; total: number }): void;
}

export const idleStatus: EngineStatus = { state: "idle", model: null, dir: null, message: null };

export const useModels = create<ModelsState>((set, get) => ({
  status: idleStatus,
  progress: null,
  recent: [],
  lastCard: null,
  info: null,
  openError: null,
  opening: null,
  refresh: async () => {
    try {
      const [status, recent, info] = await Promise.all([
        api().call("models.status", {}),
        api().call("models.recent", {}),
        api().call("app.info", {}),
      ]);
      set({ status, recent, info, ...(status.model ? { lastCard: status.model } : {}) });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  open: async (dir) => {
    const trimmed = dir.trim();
    if (!trimmed) return null;
    set({ opening: trimmed, openError: null, progress: { dir: trimmed, done: 0, total: 1 } });
    try {
      const card = await api().call("models.open", { dir: trimmed });
      set({ opening: null, progress: null, lastCard: card, status: { state: "ready", model: card, dir: card.dir, message: null } });
      void api()
        .call("models.recent", {})
        .then((recent) => set({ recent }))
        .catch(() => {});
      return card;
    } catch (e) {
      const message = (e as Error)?.message ?? String(e);
      set({ opening: null, progress: null, openError: { dir: trimmed, message } });
      return null;
    }
  },
  pickFolder: async () => {
    try {
      const { dir } = await api().call("models.pickFolder", {});
      if (dir) await get().open(dir);
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  forget: async (dir) => {
    set({ recent: get().recent.filter((r) => r.dir !== dir) });
    try {
      await api().call("models.forget", { dir });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  },
  setStatus: (status) => {
    const prev = get().status;
    set({ status, ...(status.state !== "loading" ? { progress: null } : {}), ...(status.model ? { lastCard: status.model } : {}) });
    if (status.state === "crashed" && prev.state !== "crashed") useUi.getState().notify({ kind: "error", key: "banner.engineCrashed", source: "engine" });
    if (status.state === "ready" || status.state === "loading") useUi.getState().dismissSource("engine");
    if (status.state === "error" && status.message && status.dir) set({ openError: { dir: status.dir, message: status.message } });
  },
  setProgress: (p) => set({ progress: p }),
}));

/** "0.70 B / 0.17 B" style: billions, two decimals; tiny models get enough decimals to show two significant digits. */
export function formatParams(n: number): string {
  const b = n / 1e9;
  if (b >= 0.01 || b === 0) return `${b.toFixed(2)} B`;
  const digits = Math.min(12, Math.ceil(-Math.log10(b)) + 1);
  return `${b.toFixed(digits)} B`;
}

export function formatBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : v < 10 ? 2 : 1)} ${units[i]}`;
}

export function folderName(dir: string): string {
  const parts = dir.replace(/[\\/]+$/, "").split(/[\\/]/);
  return parts.at(-1) || dir;
}
