// The seam between the job system (electron/jobs/service.ts) and the tasks it runs. A task kind — quantize, GGUF
// export, download, training, merged export, dataset import, token counting — is one JobKindHandler: it knows how to
// start (and, where it can, pause and resume) its work and reports through a JobReporter. Everything else every
// long task needs — ids, state transitions, persistence across restarts (the jobs table), the jobs.job event, cancel
// and pause requests from the UI, "interrupted" after a crash — the service does once, for all of them.
//
// Lifecycle of one job:  start → running → done | failed | cancelled
//                        running → pausing (pause() asked) → paused (the execution settled with PAUSED) → resume → running
//                        running at a restart → interrupted → resume (canResume) | retry (from the beginning)
import type { Job, JobKind, JobLabel } from "../contract.js";

export type JobUnit = NonNullable<Job["progress"]>["unit"];

/** How a running task tells the service (and through it the UI) where it is. Cheap to call often: the service
 *  coalesces events and database writes (at most a few per second). */
export interface JobReporter {
  progress(done: number, total: number, unit: JobUnit): void;
  message(text: string): void;
  /** Counts the view shows while the task runs (an import scan: records, valid, rejected); merged into the last. */
  figures(f: Record<string, number>): void;
  /**
   * Kind-specific state saved with the job (JSON): what a resume or the start-up sweep needs, e.g. the pid of the
   * process doing the work, its temporary output, a run folder. Merged into what was saved before.
   */
  detail(d: Record<string, unknown>): void;
}

/** The value an execution settles with when it stopped at a resumable point after pause(). */
export const PAUSED: unique symbol = Symbol("paused");

/** One execution of a job (a start, a resume or a retry). */
export interface JobExecution {
  /** The task's result (JSON-serialisable; becomes Job.result), PAUSED after a pause, or a rejection with the reason. */
  done: Promise<unknown>;
  /** Stop now; leave nothing half-written and the previous state intact. `done` then settles (any value). */
  cancel(): void;
  /** Stop at the next resumable point (canPause kinds only); `done` then resolves with PAUSED. */
  pause?(): void;
}

export interface JobKindHandler<P = unknown> {
  readonly kind: JobKind;
  /** Whether a running job of this kind can be paused, and a paused or interrupted one resumed. */
  readonly canPause: boolean;
  readonly canResume: boolean;
  /** The activity panel's line for it, in English (logs, the CLI, a fallback). */
  title(params: P): string;
  /** The same line as a message key and its values, which the renderer shows in the user's language. */
  label?(params: P): JobLabel;
  /** What views filter their jobs by (a dataset id, a model folder, a finetune run id), or null. */
  subject(params: P): string | null;
  /** Checks params (throwing RpcError invalid_input with a clear message) before a job row exists. */
  validate?(params: P): void;
  /**
   * Starts the work. `resume` is null for a fresh start (and a retry); for a resume it is the detail saved so far.
   * Throwing here fails the job at once with that message.
   */
  start(params: P, report: JobReporter, resume: Record<string, unknown> | null): JobExecution;
  /** At start-up, for a job the previous process left "running": clean what its dead worker left behind. */
  interrupted?(params: P, detail: Record<string, unknown>): void;
  /**
   * A paused or interrupted job was cancelled (nothing runs): drop what was kept for its resume when that is of no
   * use without it (a download's partial files). Absent: it stays (a training run's checkpoints are results).
   */
  discarded?(params: P, detail: Record<string, unknown>): void;
}
