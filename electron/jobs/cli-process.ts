// A job's work done by the moe-studio CLI in a child process: a slow or crashing task never blocks the main process
// or the engine worker, and the CLI's own signal handling does the cleaning — on SIGINT quantize, export-gguf and
// export remove their temporary output, train writes a checkpoint and exits 130 (runCancellable in electron/cli.ts).
//
//   start(params, report) {
//     return cliJob(async (cli) => {
//       await cli(["export-gguf", "--model", dir, "--out", out, "--json"], { onLine: ggufProgress });
//       return { bytes: statSync(out).size };           // → Job.result
//     });
//   }
//
// Each child's pid goes into the job's detail (with when it was seen), so that the start-up sweep after a crash can
// tell the dead CLI's temporary files from a live one's.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { PAUSED, type JobExecution, type JobReporter } from "./kind.js";

/** The `moe-studio` launcher next to this module (source tree or out/). */
export function cliPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const p of [join(here, "../bin/moe-studio.mjs"), join(here, "../../../electron/bin/moe-studio.mjs")]) if (existsSync(p)) return p;
  throw new Error("moe-studio launcher (electron/bin/moe-studio.mjs) not found");
}

export interface CliStepOptions {
  /**
   * A line the child printed that is not a JSON object (stdout), or any stderr line: progress lines some commands
   * print on stderr ("quantize:  42%"), notes. Answer true when the line was understood, so that it is not taken as
   * the error to report if the command fails.
   */
  onLine?(line: string, stream: "stdout" | "stderr", report: JobReporter): boolean | void;
  /** A stdout line that is a JSON object (the CLIs' --json progress and results). */
  onJson?(value: Record<string, unknown>, report: JobReporter): void;
}

export interface CliJobOptions {
  report: JobReporter;
  /** The signal pause() sends (kinds that pause); the CLI then stops at a resumable point and exits pausedExitCode. */
  pauseSignal?: NodeJS.Signals;
  /** Default 130 (what the CLIs exit with after SIGINT). */
  pausedExitCode?: number;
  /** Extra environment for the children. */
  env?: Record<string, string>;
}

/** A command ended with a non-zero status (after neither a cancel nor a pause): the last lines it wrote on stderr. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code: number | null,
    readonly signal: NodeJS.Signals | null,
  ) {
    super(message);
  }
}

/** Thrown by cli() after cancel() (and by a step started after it). */
export class CliCancelled extends Error {
  constructor() {
    super("cancelled");
  }
}

/** Thrown by cli() when the child stopped at its resumable point after pause(); cliJob turns it into PAUSED. */
class CliPaused extends Error {}

/** A child that has not exited this long after SIGINT gets SIGKILL (the start-up sweep removes what it leaves). */
const KILL_AFTER_MS = 30_000;
/** stderr lines kept for the error message. */
const TAIL_LINES = 3;

export type Cli = (args: string[], opts?: CliStepOptions) => Promise<string>;

/**
 * One job execution made of CLI commands run one after another by `body` (each `cli(args)` resolves with the
 * command's stdout). cancel() interrupts the command running now and refuses any later one; pause() sends the
 * kind's signal and, when the command exits with the paused code, the execution settles with PAUSED.
 */
export function cliJob(body: (cli: Cli) => Promise<unknown>, opts: CliJobOptions): JobExecution {
  let child: ChildProcess | null = null;
  let stop: "cancel" | "pause" | null = null;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const pausedCode = opts.pausedExitCode ?? 130;
  const report = opts.report;

  const cli: Cli = (args, step = {}) =>
    new Promise<string>((resolve, reject) => {
      if (stop === "cancel") return reject(new CliCancelled());
      if (stop === "pause") return reject(new CliPaused());
      const c = spawn(process.execPath, [cliPath(), ...args], {
        env: { ...process.env, ELECTRON_RUN_AS_NODE: "1", ...opts.env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      child = c;
      if (c.pid !== undefined) report.detail({ pid: c.pid, pidSeenAt: Date.now() });
      let out = "";
      const tail: string[] = [];
      const lines = (stream: "stdout" | "stderr") => {
        let buf = "";
        return (d: Buffer) => {
          const text = d.toString("utf8");
          if (stream === "stdout") out += text;
          buf += text;
          let nl;
          while ((nl = buf.indexOf("\n")) >= 0) {
            const line = buf.slice(0, nl).replace(/\r$/, "");
            buf = buf.slice(nl + 1);
            if (!line.trim()) continue;
            if (stream === "stdout" && step.onJson && line.startsWith("{")) {
              let v: unknown;
              try {
                v = JSON.parse(line);
              } catch {
                v = undefined;
              }
              if (v && typeof v === "object" && !Array.isArray(v)) {
                step.onJson(v as Record<string, unknown>, report);
                continue;
              }
            }
            const understood = step.onLine?.(line, stream, report);
            if (stream === "stderr" && !understood) {
              tail.push(line.replace(/^moe-studio: /, ""));
              if (tail.length > TAIL_LINES) tail.shift();
            }
          }
        };
      };
      c.stdout!.on("data", lines("stdout"));
      c.stderr!.on("data", lines("stderr"));
      c.on("error", (e) => {
        child = null;
        reject(e);
      });
      c.on("close", (code, signal) => {
        child = null;
        clearTimeout(killTimer);
        if (code === 0 && stop !== "cancel") resolve(out);
        else if (stop === "cancel") reject(new CliCancelled());
        else if (stop === "pause" && code === pausedCode) reject(new CliPaused());
        else reject(new CliError(tail.join("\n") || (signal ? `killed by ${signal}` : `exited with code ${code}`), code, signal));
      });
    });

  const done = body(cli).catch((e: unknown) => {
    if (e instanceof CliPaused) return PAUSED;
    throw e;
  });
  return {
    done,
    cancel() {
      stop = "cancel";
      const c = child;
      if (!c || c.exitCode !== null) return;
      c.kill("SIGINT");
      killTimer = setTimeout(() => c.exitCode === null && c.signalCode === null && c.kill("SIGKILL"), KILL_AFTER_MS);
      killTimer.unref?.();
    },
    ...(opts.pauseSignal
      ? {
          pause() {
            if (stop) return;
            stop = "pause";
            child?.kill(opts.pauseSignal);
          },
        }
      : {}),
  };
}

/** A single CLI command as a job execution: done resolves with what `result` makes of its stdout (default: null). */
export function cliProcess(args: string[], opts: CliJobOptions & CliStepOptions & { result?(stdout: string): unknown }): JobExecution {
  return cliJob(async (cli) => {
    const out = await cli(args, opts);
    return opts.result ? opts.result(out) : null;
  }, opts);
}
