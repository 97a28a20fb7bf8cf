// Every job the main process runs (electron/jobs/): one store fed by jobs.list and the jobs.job / jobs.removed events.
// Views read their own jobs from it (jobsOf(kind, subject)); the activity panel shows all of them. Actions go
// straight to jobs.* and the store changes when the event comes back, so every window sees the same state.
import { create } from "zustand";
import { api } from "../api/index.js";
import type { Job, JobKind } from "../api/types.js";
import type { MessageKey } from "../i18n/en.js";

interface JobsState {
  /** By id. */
  jobs: Record<string, Job>;
  loaded: boolean;
  /** The last action's error (shown in the activity panel). */
  error: string | null;
  load(): Promise<void>;
  onJob(job: Job): void;
  onRemoved(e: { id: string }): void;
  cancel(id: string): Promise<void>;
  pause(id: string): Promise<void>;
  resume(id: string): Promise<void>;
  retry(id: string): Promise<Job | null>;
  remove(id: string): Promise<void>;
}

export const ACTIVE_STATUSES: readonly Job["status"][] = ["queued", "running", "pausing"];

export const useJobs = create<JobsState>((set, get) => {
  const act = async <T>(f: () => Promise<T>): Promise<T | null> => {
    set({ error: null });
    try {
      return await f();
    } catch (e) {
      set({ error: (e as Error)?.message ?? String(e) });
      return null;
    }
  };
  return {
    jobs: {},
    loaded: false,
    error: null,
    load: async () => {
      try {
        const list = await api().call("jobs.list", {});
        // an event that arrived while the list was on its way is newer than the list's copy
        const cur = get().jobs;
        const jobs: Record<string, Job> = {};
        for (const j of list) jobs[j.id] = cur[j.id] && cur[j.id].updatedAt > j.updatedAt ? cur[j.id] : j;
        set({ jobs, loaded: true });
      } catch {
        // no list (disconnected): the next connect loads again
      }
    },
    onJob: (job) => {
      const cur = get().jobs[job.id];
      if (cur && cur.updatedAt > job.updatedAt) return;
      set({ jobs: { ...get().jobs, [job.id]: job } });
    },
    onRemoved: ({ id }) => {
      if (!(id in get().jobs)) return;
      const { [id]: _gone, ...rest } = get().jobs;
      set({ jobs: rest });
    },
    cancel: async (id) => void (await act(() => api().call("jobs.cancel", { id }))),
    pause: async (id) => {
      const j = await act(() => api().call("jobs.pause", { id }));
      if (j) get().onJob(j);
    },
    resume: async (id) => {
      const j = await act(() => api().call("jobs.resume", { id }));
      if (j) get().onJob(j);
    },
    retry: async (id) => {
      const j = await act(() => api().call("jobs.retry", { id }));
      if (j) {
        get().onJob(j);
        get().onRemoved({ id });
      }
      return j;
    },
    remove: async (id) => {
      if ((await act(() => api().call("jobs.remove", { id }))) !== null) get().onRemoved({ id });
    },
  };
});

/** Jobs oldest first. */
export function sortedJobs(jobs: Record<string, Job>): Job[] {
  return Object.values(jobs).sort((a, b) => a.startedAt - b.startedAt || (a.id < b.id ? -1 : 1));
}

/** A view's jobs: of these kinds, and (when given) about this subject (a model folder, a dataset id, a run id). */
export function jobsOf(jobs: Record<string, Job>, kinds: JobKind | readonly JobKind[], subject?: string | null): Job[] {
  const ks: readonly JobKind[] = typeof kinds === "string" ? [kinds] : kinds;
  return sortedJobs(jobs).filter((j) => ks.includes(j.kind) && (subject === undefined || j.subject === subject));
}

export function isActive(j: Job): boolean {
  return ACTIVE_STATUSES.includes(j.status);
}

/** How many jobs are running (what the activity indicator shows). */
export function runningCount(jobs: Record<string, Job>): number {
  return Object.values(jobs).filter(isActive).length;
}

/** A job's title in the UI's language: its label's message, or the English title a label-less (older) row has. */
export function jobTitle(j: Job, t: (key: MessageKey, vars?: Record<string, string | number>) => string): string {
  return j.label ? t(`jobs.title.${j.label.key}`, j.label.args) : j.title;
}

/** 0..100 of a job's progress, or null when it has no size yet. */
export function percent(j: Job): number | null {
  if (!j.progress || j.progress.total <= 0) return null;
  return Math.max(0, Math.min(100, Math.round((100 * j.progress.done) / j.progress.total)));
}
