// Quantize / GGUF export jobs (quantize.job events) and the panel's form state for the model card. Jobs cut off by a
// crash or a forced quit come back from quantize.list as "interrupted", with Retry and Remove.
import { create } from "zustand";
import { api } from "../api/index.js";
import type { QuantizeJob } from "../api/types.js";

export type Target = QuantizeJob["target"];
export type Format = QuantizeJob["format"];

interface QuantizeState {
  /** The job the panel shows (the latest one started from this window, or the one running). */
  job: QuantizeJob | null;
  folder: string | null;
  error: string | null;
  starting: boolean;
  /** Jobs an earlier run of the app left unfinished. */
  interrupted: QuantizeJob[];
  load(): Promise<void>;
  retry(id: string): Promise<void>;
  remove(id: string): Promise<void>;
  start(input: { dir: string; target: Target; format: Format; name: string }): Promise<void>;
  cancel(): Promise<void>;
  onJob(job: QuantizeJob): void;
  clear(): void;
}

export const useQuantize = create<QuantizeState>((set, get) => ({
  job: null,
  folder: null,
  error: null,
  starting: false,
  interrupted: [],
  load: async () => {
    try {
      const [{ dir }, jobs] = await Promise.all([api().call("quantize.folder", {}), api().call("quantize.list", {})]);
      const running = jobs.find((j) => j.state === "running" || j.state === "comparing");
      set({ folder: dir, interrupted: jobs.filter((j) => j.state === "interrupted"), ...(running ? { job: running } : {}) });
    } catch {
      // the panel shows no folder hint; starting a job reports its own error
    }
  },
  retry: async (id) => {
    set({ starting: true, error: null });
    try {
      const job = await api().call("quantize.retry", { id });
      set({ job, starting: false, interrupted: get().interrupted.filter((j) => j.id !== id) });
    } catch (e) {
      set({ starting: false, error: (e as Error)?.message ?? String(e) });
    }
  },
  remove: async (id) => {
    try {
      await api().call("quantize.remove", { id });
      set({ interrupted: get().interrupted.filter((j) => j.id !== id) });
    } catch (e) {
      set({ error: (e as Error)?.message ?? String(e) });
    }
  },
  start: async (input) => {
    set({ starting: true, error: null });
    try {
      const job = await api().call("quantize.start", input);
      set({ job, starting: false });
    } catch (e) {
      set({ starting: false, error: (e as Error)?.message ?? String(e) });
    }
  },
  cancel: async () => {
    const j = get().job;
    if (!j) return;
    try {
      await api().call("quantize.cancel", { id: j.id });
    } catch (e) {
      set({ error: (e as Error)?.message ?? String(e) });
    }
  },
  onJob: (job) => {
    const cur = get().job;
    if (!cur || cur.id === job.id || job.state === "running") set({ job });
  },
  clear: () => set({ job: null, error: null }),
}));

/** "q4_k" -> "Q4_K" */
export function formatName(f: Format): string {
  return f.toUpperCase();
}

/** The default output name: <model>-<format> (GGUF adds .gguf itself). */
export function defaultName(modelName: string, format: Format): string {
  return `${modelName}-${format}`;
}
