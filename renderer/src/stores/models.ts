// The engine's state (engine.status events), load progress (models.progress), recent folders and app info.
import { create } from "zustand";
import { api } from "../api/index.js";
import type { AppInfo, EngineStatus, ModelCard, RecentModel } from "../api/types.js";
import { bannerForError, useUi } from "./ui.js";

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

/** The engine worker died and is being restarted (its banner stays until the model is ready again). */
let restarting = false;

export const idleStatus: EngineStatus = { state: "idle", model: null, dir: null, message: null };

/** Counts setStatus calls, so refresh() can tell whether its answer is older than an event. */
let statusEpoch = 0;

export const useModels = create<ModelsState>((set, get) => ({
  status: idleStatus,
  progress: null,
  recent: [],
  lastCard: null,
  info: null,
  openError: null,
  opening: null,
  refresh: async () => {
    // An engine.status event that arrives while these calls are in flight is newer than their answer (e.g. "ready"
    // pushed between the server reading "loading" and the answer reaching us): then keep the event's status.
    const epoch = statusEpoch;
    try {
      const [fetched, recent, info] = await Promise.all([
        api().call("models.status", {}),
        api().call("models.recent", {}),
        api().call("app.info", {}),
      ]);
      const status = epoch === statusEpoch ? fetched : get().status;
      set({ status, recent, info, ...(status.model ? { lastCard: status.model } : {}) });
      if (status.model) useUi.getState().dismissSource("model"); // e.g. `serve --model` finished loading first
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
      set({ opening: null, progress: null });
      get().setStatus({ state: "ready", model: card, dir: card.dir, message: null });
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
    statusEpoch++;
    const prev = get().status;
    set({ status, ...(status.state !== "loading" ? { progress: null } : {}), ...(status.model ? { lastCard: status.model } : {}) });
    const ui = useUi.getState();
    // A dead worker: one banner, "restarting", from the crash until the model is back (crashed -> loading -> ready).
    if (status.state === "crashed" && prev.state !== "crashed") {
      restarting = true;
      ui.notify({ kind: "info", key: "banner.engineCrashed", source: "engine" });
    }
    if (status.state === "ready" || status.state === "idle") {
      restarting = false;
      ui.dismissSource("engine");
    }
    if (status.state === "error" && restarting) {
      // the restart itself failed (crashed again while loading, or too many crashes): say so instead
      restarting = false;
      ui.dismissSource("engine");
      ui.notify({ ...bannerForError({ code: "engine", message: status.message ?? "" }), source: "engine" });
    }
    // "Load a model first" is over as soon as there is one (opened here, from Recent, or by `serve --model`)
    if (status.model) useUi.getState().dismissSource("model");
    if (status.state === "error" && status.message && status.dir) set({ openError: { dir: status.dir, message: status.message } });
  },
  setProgress: (p) => set({ progress: p }),
}));

/**
 * Parameter counts with 3 significant digits and a K/M/B/T suffix: "470 K", "2.69 M", "169 M", "46.7 B", "389 B".
 * Rounding happens before the unit is chosen, so 999,950 reads "1.00 M", never "1000 K".
 */
export function formatParams(n: number): string {
  if (!Number.isFinite(n) || n < 0) return "?";
  const units: [number, string][] = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
  for (const [scale, suffix] of units) {
    if (Number(n.toPrecision(3)) >= scale) return `${sig3(n / scale)} ${suffix}`;
  }
  return String(Math.round(n));
}

/** x in [1, 1000) with 3 significant digits, in fixed notation: 4.70, 47.0, 470. */
function sig3(x: number): string {
  const r = Number(x.toPrecision(3));
  return r.toFixed(r >= 100 ? 0 : r >= 10 ? 1 : 2);
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
