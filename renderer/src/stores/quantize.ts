// Quantize / GGUF export jobs (quantize.job events) and the panel's form state for the model card.
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
  load(): Promise<void>;
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
  load: async () => {
    try {
      const [{ dir }, jobs] = await Promise.all([api().call("quantize.folder", {}), api().call("quantize.list", {})]);
      const running = jobs.find((j) => j.state === "running" || j.state === "comparing");
      set({ folder: dir, ...(running ? { job: running } : {}) });
    } catch {
      // the panel shows no folder hint; starting a job reports its own error
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
