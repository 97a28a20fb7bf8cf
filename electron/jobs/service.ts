// The one job system: every long task the main process runs is a Job this service owns. Kinds (electron/jobs/kind.ts)
// do the work; the service gives each job its id, moves it through its states, keeps it in the jobs table so it
// outlives the process, answers cancel / pause / resume / retry / remove, and tells the renderer(s) through one
// event (jobs.job) for every change, jobs.removed when one goes.
//
//   const jobs = new JobService({ store: new JobsStore(db), emit });
//   jobs.register(quantizeKind);
//   const job = jobs.start("quantize", params);    // → Job, running
//   jobs.cancel(job.id);                           // the kind stops, leaves nothing half-written; → cancelled
//   await jobs.dispose();                          // pausable jobs pause (a checkpoint), the rest are cancelled
//
// What is saved (the jobs table's detail column): the start parameters, the kind's own detail (reporter.detail:
// a pid, a resume point), and what the Job shows (title, subject, progress, message, result). State changes are
// written at once; progress and messages are coalesced to at most one write and one event per job every 250 ms.
// A job the table says is running when the service starts belongs to a process that died: it becomes
// "interrupted" and its kind's interrupted() sweep cleans what that process left (once the kind is registered).
import { randomUUID } from "node:crypto";
import { JobKind as JobKindSchema, JobLabel as JobLabelSchema, RpcError, type Job, type JobKind, type JobStatus } from "../contract.js";
import type { JobsStore } from "../store/jobs.js";
import type { Emit } from "../services/models.js";
import { PAUSED, type JobExecution, type JobKindHandler, type JobReporter } from "./kind.js";

/** At most one coalesced write and jobs.job event per job this often while only progress / message change. */
export const FLUSH_MS = 250;
/** How soon a job's row is written again when another connection held the write lock. */
const SAVE_RETRY_MS = 100;
/** Finished jobs kept: the newest KEEP_FINISHED, none older than KEEP_FINISHED_MS. */
export const KEEP_FINISHED = 200;
export const KEEP_FINISHED_MS = 14 * 24 * 3600 * 1000;
/** How long dispose() waits for the running jobs to stop before it lets go (their rows then say running → interrupted). */
const DISPOSE_WAIT_MS = 60_000;

const ACTIVE: readonly JobStatus[] = ["queued", "running", "pausing"];
/** Whether the job is queued, running or pausing (not yet settled into a state that stays). */
export const isActive = (j: Job): boolean => ACTIVE.includes(j.status);
const FINISHED: readonly JobStatus[] = ["done", "failed", "cancelled"];

/** The jobs table's detail column, as this service writes it. */
export interface SavedDetail {
  params: unknown;
  detail: Record<string, unknown>;
  title: string;
  /** Absent in rows written before titles were translated. */
  label?: Job["label"];
  subject: string | null;
  progress: Job["progress"];
  message: string | null;
  /** Absent in rows written before jobs had figures. */
  figures?: Job["figures"];
  result: unknown;
}

interface Entry {
  job: Job;
  params: unknown;
  /** The kind's own saved state (reporter.detail merged). */
  detail: Record<string, unknown>;
  exec: JobExecution | null;
  /** What the UI asked of the running execution. */
  stopping: "cancel" | "pause" | null;
  /** Resolves when the current execution has settled and its final state is saved. */
  settled: Promise<void> | null;
  timer: ReturnType<typeof setTimeout> | null;
  /** A write that found the database locked by another connection, tried again after SAVE_RETRY_MS. */
  retry?: ReturnType<typeof setTimeout> | null;
  /** performance.now() of the last write + event (0: none yet), for the leading edge of the coalescing. */
  lastFlush?: number;
  /** Interrupted at construction; its kind's sweep runs when the kind is registered. */
  needsSweep: boolean;
}

export interface JobServiceOptions {
  store: JobsStore;
  emit: Emit;
  /** Kinds to register at once (the same as register() each). */
  kinds?: JobKindHandler<never>[];
  /** The clock (ms since the epoch); tests of ageing pass their own. */
  now?: () => number;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : typeof e === "string" ? e : "the job failed";
}

export class JobService {
  private readonly store: JobsStore;
  private readonly emit: Emit;
  private readonly now: () => number;
  private readonly handlers = new Map<JobKind, JobKindHandler<unknown>>();
  private readonly entries = new Map<string, Entry>();
  private disposed = false;
  private readonly listeners = new Set<(job: Job) => void>();

  constructor(opts: JobServiceOptions) {
    this.store = opts.store;
    this.emit = opts.emit;
    this.now = opts.now ?? Date.now;
    this.restore();
    this.prune(false);
    for (const k of opts.kinds ?? []) this.register(k);
  }

  /** The jobs of earlier processes: a row still active was cut off (interrupted); paused ones stay paused. */
  private restore(): void {
    for (const r of this.store.list<SavedDetail>()) {
      const kind = JobKindSchema.safeParse(r.kind);
      const status = ([...ACTIVE, ...FINISHED, "paused", "interrupted"] as string[]).includes(r.status) ? (r.status as JobStatus) : null;
      const d = r.detail;
      // a row this service did not write (or a later version's kind) is left alone for a person to look at
      if (!kind.success || !status || !d || typeof d !== "object" || !("params" in d)) continue;
      const wasActive = ACTIVE.includes(status);
      const job: Job = {
        id: r.id,
        kind: kind.data,
        title: typeof d.title === "string" ? d.title : r.kind,
        // a key a later version added (or a row from before labels) shows its English title
        label: JobLabelSchema.safeParse(d.label).data ?? null,
        status: wasActive ? "interrupted" : status,
        progress: d.progress ?? null,
        figures: d.figures ?? null,
        message: wasActive ? "MoE Studio stopped while this job was running (a crash or a forced quit)" : (d.message ?? null),
        error: r.error,
        canPause: false,
        canResume: false,
        startedAt: r.startedAt,
        updatedAt: wasActive ? this.now() : r.updatedAt,
        subject: d.subject ?? null,
        result: d.result ?? null,
      };
      const e: Entry = { job, params: d.params, detail: d.detail ?? {}, exec: null, stopping: null, settled: null, timer: null, needsSweep: wasActive };
      this.entries.set(job.id, e);
      if (wasActive) this.save(e);
    }
  }

  /** Adds a task kind. Jobs of it that a dead process left running are swept now (kind.interrupted). */
  register<P>(handler: JobKindHandler<P>): void {
    const h = handler as unknown as JobKindHandler<unknown>;
    this.handlers.set(h.kind, h);
    for (const e of this.entries.values()) {
      if (e.job.kind !== h.kind) continue;
      e.job = { ...e.job, ...this.abilities(h, e.job.status) };
      if (!e.needsSweep) continue;
      e.needsSweep = false;
      try {
        h.interrupted?.(e.params, e.detail);
      } catch {
        // a sweep that cannot clean (a folder gone, no permission) leaves the files; the job stays interrupted
      }
    }
  }

  private abilities(h: JobKindHandler<unknown> | undefined, status: JobStatus): Pick<Job, "canPause" | "canResume"> {
    return {
      canPause: !!h?.canPause && status === "running",
      canResume: !!h?.canResume && (status === "paused" || status === "interrupted"),
    };
  }

  private handler(kind: JobKind): JobKindHandler<unknown> {
    const h = this.handlers.get(kind);
    if (!h) throw new RpcError("invalid_input", `${kind} jobs are not available in this build`);
    return h;
  }

  private entry(id: string): Entry {
    const e = this.entries.get(id);
    if (!e) throw new RpcError("not_found", `no job ${id}`);
    return e;
  }

  get(id: string): Job {
    return this.entry(id).job;
  }

  /** A job's start parameters (what a path check before a retry needs; not in the contract). */
  paramsOf(id: string): unknown {
    return this.entry(id).params;
  }

  /** The kind's saved detail of a job (what reporter.detail merged; not in the contract). */
  detailOf(id: string): Record<string, unknown> {
    return this.entry(id).detail;
  }

  /** Resolves with the job once it is no longer queued, running or pausing (at once if it is not). */
  settled(id: string): Promise<Job> {
    const now = this.entry(id).job;
    if (!ACTIVE.includes(now.status)) return Promise.resolve(now);
    return new Promise((resolve) => {
      const off = this.onJob((j) => {
        if (j.id !== id || ACTIVE.includes(j.status)) return;
        off();
        resolve(j);
      });
    });
  }

  /** Every job (or a kind's), oldest first. */
  list(kind?: JobKind): Job[] {
    return [...this.entries.values()]
      .map((e) => e.job)
      .filter((j) => kind === undefined || j.kind === kind)
      .sort((a, b) => a.startedAt - b.startedAt || (a.id < b.id ? -1 : 1));
  }

  /** Starts a job of `kind`; a kind's validate() refusal throws before any row exists. */
  start<P>(kind: JobKind, params: P): Job {
    if (this.disposed) throw new RpcError("busy", "the app is shutting down");
    const h = this.handler(kind);
    h.validate?.(params);
    const t = this.now();
    const job: Job = {
      id: randomUUID(),
      kind,
      title: h.title(params),
      label: h.label?.(params) ?? null,
      status: "running",
      progress: null,
      figures: null,
      message: null,
      error: null,
      ...this.abilities(h, "running"),
      startedAt: t,
      updatedAt: t,
      subject: h.subject(params),
      result: null,
    };
    const e: Entry = { job, params, detail: {}, exec: null, stopping: null, settled: null, timer: null, needsSweep: false };
    this.entries.set(job.id, e);
    this.run(e, h, null);
    return e.job;
  }

  cancel(id: string): { ok: true } {
    const e = this.entry(id);
    const s = e.job.status;
    if (s === "running" || s === "pausing") {
      e.stopping = "cancel";
      e.exec?.cancel();
    } else if (s === "paused" || s === "interrupted" || s === "queued") {
      // nothing runs: what the kind kept for a resume stays on disk (unless the kind discards it); the job is over
      try {
        this.handlers.get(e.job.kind)?.discarded?.(e.params, e.detail);
      } catch {
        // what could not be removed stays; the job is cancelled all the same
      }
      this.change(e, { status: "cancelled", message: null });
      this.prune(true);
    } else if (s !== "cancelled") {
      throw new RpcError("invalid_input", `the job is ${s}: only a running, paused or interrupted job can be cancelled`);
    }
    return { ok: true };
  }

  pause(id: string): Job {
    const e = this.entry(id);
    const h = this.handlers.get(e.job.kind);
    if (e.job.status === "pausing") return e.job;
    if (e.job.status !== "running") throw new RpcError("invalid_input", `the job is ${e.job.status}: only a running job can be paused`);
    if (!h?.canPause || !e.exec?.pause) throw new RpcError("invalid_input", `${e.job.kind} jobs cannot be paused`);
    e.stopping = "pause";
    this.change(e, { status: "pausing" });
    e.exec.pause();
    return e.job;
  }

  resume(id: string): Job {
    const e = this.entry(id);
    if (this.disposed) throw new RpcError("busy", "the app is shutting down");
    if (e.job.status === "running" || e.job.status === "pausing") return e.job;
    if (e.job.status !== "paused" && e.job.status !== "interrupted") {
      throw new RpcError("invalid_input", `the job is ${e.job.status}: only a paused or interrupted job can be resumed`);
    }
    const h = this.handler(e.job.kind);
    if (!h.canResume) throw new RpcError("invalid_input", `${e.job.kind} jobs cannot be resumed; retry starts it again`);
    h.validate?.(e.params);
    this.run(e, h, { ...e.detail });
    return e.job;
  }

  /** Starts a failed, cancelled or interrupted job again from the beginning, in place of the old one (removed). */
  retry(id: string): Job {
    const e = this.entry(id);
    const s = e.job.status;
    if (s !== "failed" && s !== "cancelled" && s !== "interrupted") {
      throw new RpcError("invalid_input", `the job is ${s}: only a failed, cancelled or interrupted job can be retried`);
    }
    const job = this.start(e.job.kind, e.params);
    this.remove(id);
    return job;
  }

  /** Forgets a job that is not running (what it produced stays). */
  remove(id: string): { ok: true } {
    const e = this.entry(id);
    if (ACTIVE.includes(e.job.status)) throw new RpcError("busy", "the job is running: cancel it first");
    this.forget(e);
    return { ok: true };
  }

  private forget(e: Entry): void {
    if (e.timer) clearTimeout(e.timer);
    if (e.retry) clearTimeout(e.retry);
    e.timer = null;
    e.retry = null;
    this.entries.delete(e.job.id);
    try {
      this.store.delete(e.job.id);
    } catch {
      // the row comes back at the next start, where it is aged out again
    }
    this.emit("jobs.removed", { id: e.job.id });
  }

  /** Finished jobs beyond the newest KEEP_FINISHED, or older than KEEP_FINISHED_MS, are forgotten. */
  private prune(announce: boolean): void {
    const finished = this.list().filter((j) => FINISHED.includes(j.status));
    const cutoff = this.now() - KEEP_FINISHED_MS;
    const over = finished.length - KEEP_FINISHED;
    finished.forEach((j, i) => {
      if (i >= over && j.updatedAt >= cutoff) return;
      const e = this.entries.get(j.id)!;
      if (announce) this.forget(e);
      else {
        this.entries.delete(j.id);
        this.store.delete(j.id);
      }
    });
  }

  /** One execution (a start, a resume): its reporter, and the state it settles into. */
  private run(e: Entry, h: JobKindHandler<unknown>, resume: Record<string, unknown> | null): void {
    e.stopping = null;
    this.change(e, { status: "running", error: null, message: null, result: null });
    let live = true;
    const report: JobReporter = {
      progress: (done, total, unit) => {
        if (!live) return;
        e.job = { ...e.job, progress: { done, total, unit } };
        this.later(e);
      },
      message: (text) => {
        if (!live) return;
        e.job = { ...e.job, message: text };
        this.later(e);
      },
      figures: (f) => {
        if (!live) return;
        e.job = { ...e.job, figures: { ...e.job.figures, ...f } };
        this.later(e);
      },
      detail: (d) => {
        if (!live) return;
        e.detail = { ...e.detail, ...d };
        // written at once: the detail is what the start-up sweep and a resume need (a pid, a resume point)
        this.save(e);
      },
    };
    let exec: JobExecution;
    try {
      exec = h.start(e.params, report, resume);
    } catch (err) {
      live = false;
      this.change(e, { status: "failed", error: messageOf(err) });
      this.prune(true);
      return;
    }
    e.exec = exec;
    // a cancel or pause asked while start() ran (a reporter call can re-enter) reaches the execution now
    if (e.stopping === "cancel") exec.cancel();
    e.settled = exec.done.then(
      (value) => {
        live = false;
        if (value === PAUSED) this.change(e, { status: "paused", message: null });
        else if (e.stopping === "cancel") this.change(e, { status: "cancelled", message: null });
        else this.change(e, { status: "done", result: value === undefined ? null : value, progress: e.job.progress && { ...e.job.progress, done: e.job.progress.total } });
      },
      (err) => {
        live = false;
        if (e.stopping === "cancel") this.change(e, { status: "cancelled", message: null });
        else this.change(e, { status: "failed", error: messageOf(err) });
      },
    ).finally(() => {
      e.exec = null;
      e.settled = null;
      e.stopping = null;
      if (!this.disposed) this.prune(true);
    });
  }

  /** A state change: saved and announced at once (a pending coalesced write is folded into it). */
  private change(e: Entry, patch: Partial<Job>): void {
    const next = { ...e.job, ...patch, updatedAt: this.now() };
    e.job = { ...next, ...this.abilities(this.handlers.get(next.kind), next.status) };
    this.flush(e);
  }

  /** Progress or a message: written and announced within FLUSH_MS, once for however many came. */
  // Leading and trailing edge: the first report after a quiet FLUSH_MS goes out at once (a short task still shows
  // its progress before it is done), later ones within the window are folded into one at its end.
  private later(e: Entry): void {
    if (e.timer) return;
    const wait = (e.lastFlush ?? -Infinity) + FLUSH_MS - performance.now();
    const go = () => {
      e.timer = null;
      if (this.entries.get(e.job.id) !== e) return;
      e.job = { ...e.job, updatedAt: this.now() };
      this.flush(e);
    };
    if (wait <= 0) go();
    else e.timer = setTimeout(go, wait);
  }

  private flush(e: Entry): void {
    if (e.timer) clearTimeout(e.timer);
    e.timer = null;
    e.lastFlush = performance.now();
    this.save(e);
    if (this.entries.get(e.job.id) !== e) return;
    this.emit("jobs.job", e.job);
    for (const f of this.listeners) {
      try {
        f(e.job);
      } catch {
        // a listener's failure is its own; the job and the other listeners go on
      }
    }
  }

  /**
   * Calls `f` with every job change the renderer hears of (jobs.job), in the main process: a service whose own
   * records follow a job (a finetune run's status) re-announces them from here rather than from each kind's code
   * path. Returns the unsubscribe.
   */
  onJob(f: (job: Job) => void): () => void {
    this.listeners.add(f);
    return () => void this.listeners.delete(f);
  }

  /** Writes the job's row; `wait`: through the busy timeout (at shutdown), else never blocking (trySave). */
  private save(e: Entry, wait = false): void {
    if (this.entries.get(e.job.id) !== e) return;
    const j = e.job;
    const detail: SavedDetail = { params: e.params, detail: e.detail, title: j.title, label: j.label, subject: j.subject, progress: j.progress, message: j.message, figures: j.figures ?? null, result: j.result };
    try {
      const row = { id: j.id, kind: j.kind, status: j.status, startedAt: j.startedAt, updatedAt: j.updatedAt, detail, error: j.error };
      const saved = wait ? (this.store.save(row), true) : this.store.trySave(row);
      // the write lock is held elsewhere (a bulk import commits on its worker): the latest state is written later
      if (!saved && !e.retry) {
        e.retry = setTimeout(() => {
          e.retry = null;
          this.save(e);
        }, SAVE_RETRY_MS);
        e.retry.unref?.();
      }
    } catch {
      // a full or read-only disk (or a closed database after dispose): the job goes on, its record is behind until
      // the next write; a row left "running" is listed as interrupted at the next start, which it then was
    }
  }

  /**
   * Shutting down: jobs that can pause do (training writes its checkpoint), the rest are cancelled (their CLIs remove
   * their temporary output); resolves when all have stopped and their states are saved, or after DISPOSE_WAIT_MS.
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const waits: Promise<void>[] = [];
    for (const e of this.entries.values()) {
      if (!e.settled) continue;
      if (e.job.status === "running" && e.exec?.pause && this.handlers.get(e.job.kind)?.canPause) this.pause(e.job.id);
      else if (e.stopping !== "cancel" && e.stopping !== "pause") {
        e.stopping = "cancel";
        e.exec?.cancel();
      }
      waits.push(e.settled);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([Promise.all(waits), new Promise<void>((r) => (timer = setTimeout(r, DISPOSE_WAIT_MS)))]);
    clearTimeout(timer);
    for (const e of this.entries.values()) {
      if (e.timer) clearTimeout(e.timer);
      if (!e.retry) continue;
      // a state that could not be written while a lock was held elsewhere: written now, waiting for the lock
      clearTimeout(e.retry);
      e.retry = null;
      this.save(e, true);
    }
  }
}
