// The Quantize panel's form state for the model card. The jobs themselves ("quantize" and "gguf") live in the one
// jobs store (stores/jobs.ts), fed by jobs.job events; this store remembers which job the panel started so that it
// shows that job's comparison when it is done.
import { create } from "zustand";
import { api } from "../api/index.js";
import type { CallInput, Job, QuantizeResult } from "../api/types.js";
import { useJobs } from "./jobs.js";

export type Target = CallInput<"quantize.start">["target"];
export type Format = CallInput<"quantize.start">["format"];

export const QUANTIZE_KINDS = ["quantize", "gguf"] as const;

interface QuantizeState {
  /** The job the panel shows (the latest one started from this window); its state is in the jobs store. */
  jobId: string | null;
  folder: string | null;
  error: string | null;
  starting: boolean;
  load(): Promise<void>;
  start(input: { dir: string; target: Target; format: Format; name: string }): Promise<void>;
  /** A Retry from the panel: the new job becomes the one it shows. */
  retry(id: string): Promise<void>;
  clear(): void;
}

export const useQuantize = create<QuantizeState>((set) => ({
  jobId: null,
  folder: null,
  error: null,
  starting: false,
  load: async () => {
    try {
      const [{ dir }] = await Promise.all([api().call("quantize.folder", {}), useJobs.getState().load()]);
      set({ folder: dir });
    } catch {
      // the panel shows no folder hint; starting a job reports its own error
    }
  },
  start: async (input) => {
    set({ starting: true, error: null });
    try {
      const job = await api().call("quantize.start", input);
      useJobs.getState().onJob(job);
      set({ jobId: job.id, starting: false });
    } catch (e) {
      set({ starting: false, error: (e as Error)?.message ?? String(e) });
    }
  },
  retry: async (id) => {
    set({ starting: true, error: null });
    const job = await useJobs.getState().retry(id);
    set({ starting: false, ...(job ? { jobId: job.id } : { error: useJobs.getState().error }) });
  },
  clear: () => set({ jobId: null, error: null }),
}));

/** A done quantize/gguf job's comparison (Job.result), or null. */
export function quantizeResult(j: Job | null | undefined): QuantizeResult | null {
  if (!j || j.status !== "done" || !j.result || typeof j.result !== "object") return null;
  const r = j.result as Partial<QuantizeResult>;
  return r.source && r.quantized && typeof r.output === "string" ? (r as QuantizeResult) : null;
}

/** "q4_k" -> "Q4_K" */
export function formatName(f: Format): string {
  return f.toUpperCase();
}

/** The default output name: <model>-<format> (GGUF adds .gguf itself). */
export function defaultName(modelName: string, format: Format): string {
  return `${modelName}-${format}`;
}
