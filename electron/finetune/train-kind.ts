// The "train" job kind: one finetune run trained by `moe-studio train` in a child process (electron/jobs/cli-process.ts),
// so a crash or an out-of-memory kill of the trainer never takes the main process with it.
//
//   start  = train --model M --dataset ID --db APP_DB --out RUN_DIR --config RUN_DIR/train.json [--base-quant nf4]
//   resume = train --model M --dataset ID --db APP_DB --resume RUN_DIR            (from its newest checkpoint-N/)
//   pause  = SIGINT: the trainer finishes the step, writes checkpoint-N/ and exits 130 → PAUSED
//
// Every JSON line the trainer prints becomes a run point (the runs store and a finetune.point event), or a routing
// window (finetune.routing), through `sink`;
// the run's status follows the job (FinetuneService.onJob).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { RoutingLayer, type RunRouting, type TrainPoint } from "../contract.js";
import { CliError, cliJob } from "../jobs/cli-process.js";
import { PAUSED, type JobExecution, type JobKindHandler } from "../jobs/kind.js";

export interface TrainParams {
  runId: string;
}

/** What the kind needs of a run, and where its output goes (FinetuneService). */
export interface TrainSink {
  run(runId: string): { name: string; modelDir: string; datasetId: string; baseQuant: "none" | "nf4"; runDir: string } | null;
  dbFile: string;
  /** The trainer's first line: how many optimizer steps the run has, and the step it starts from. */
  started(runId: string, totalSteps: number, fromStep: number): void;
  point(runId: string, p: TrainPoint): void;
  /** A window of the run's expert routing (the trainer's {"routing": ...} lines). */
  routing(runId: string, w: RunRouting): void;
  /** Where the execution ended: the run's own record follows (the job's row may age out; the run stays). */
  settled(runId: string, outcome: "running" | "paused" | "done" | "cancelled" | "failed", error: string | null): void;
}

/** The newest complete checkpoint-N/ of a run folder (trainer_state.json is written last, inside the renamed folder). */
export function latestCheckpoint(runDir: string): { dir: string; step: number } | null {
  let best: { dir: string; step: number } | null = null;
  for (const e of existsSync(runDir) ? readdirSync(runDir) : []) {
    const m = /^checkpoint-(\d+)$/.exec(e);
    if (m && existsSync(join(runDir, e, "trainer_state.json")) && (!best || Number(m[1]) > best.step)) best = { dir: join(runDir, e), step: Number(m[1]) };
  }
  return best;
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

export function trainKind(sink: TrainSink): JobKindHandler<TrainParams> {
  return {
    kind: "train",
    canPause: true,
    canResume: true,
    title: (p) => `Finetune run '${sink.run(p.runId)?.name ?? p.runId}'`,
    label: (p) => ({ key: "train", args: { name: sink.run(p.runId)?.name ?? p.runId } }),
    subject: (p) => p.runId,
    // The app died while this run trained. Its trainer is a child that may have outlived it (a forced quit of the
    // main process alone): stop it the way a pause does (SIGINT: a checkpoint, then exit), so that a resume does not
    // train the same folder twice. Only a process whose command line names this run's folder is signalled.
    interrupted(p, detail) {
      const pid = typeof detail.pid === "number" ? detail.pid : 0;
      const run = sink.run(p.runId);
      if (!pid || !run) return;
      let cmd = "";
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        return;  // gone (or not Linux): nothing to stop
      }
      if (cmd.split("\0").includes(run.runDir)) process.kill(pid, "SIGINT");
    },
    start(p, report, resume) {
      const run = sink.run(p.runId);
      if (!run) throw new Error(`the run ${p.runId} no longer exists`);
      const ckpt = resume ? latestCheckpoint(run.runDir) : null;
      const common = ["--model", run.modelDir, "--dataset", run.datasetId, "--db", sink.dbFile, ...(run.baseQuant === "nf4" ? ["--base-quant", "nf4"] : [])];
      // a resume without any checkpoint (killed before the first save) starts the run again from step 0
      const args = ckpt ? ["train", ...common, "--resume", run.runDir] : ["train", ...common, "--out", run.runDir, "--config", join(run.runDir, "train.json")];
      let total = 0;
      const exec = cliJob(
        async (cli) => {
          await cli(args, {
            onJson(v) {
              if (v.memory && typeof v.memory === "object") {
                const m = v.memory as Record<string, unknown>;
                total = num(m.total_steps) ?? 0;
                const from = num(m.step) ?? 0;
                sink.started(p.runId, total, from);
                if (total) report.progress(from, total, "steps");
                return;
              }
              if (v.routing && typeof v.routing === "object") {
                const r = v.routing as Record<string, unknown>;
                const layers = RoutingLayer.array().safeParse(r.layers);
                const step = num(r.step), from = num(r.from_step), topK = num(r.top_k);
                if (layers.success && step !== null && from !== null && topK !== null) sink.routing(p.runId, { step, fromStep: from, topK, layers: layers.data });
                return;
              }
              const step = num(v.step);
              if (step === null) return;
              if ("eval_loss" in v) {
                sink.point(p.runId, { step, loss: null, evalLoss: num(v.eval_loss), lr: null, gradNorm: null, tokensPerS: null, elapsedS: null });
                report.message(`step ${step}${total ? `/${total}` : ""}, eval loss ${num(v.eval_loss)?.toFixed(4) ?? "?"}`);
                return;
              }
              const loss = num(v.loss);
              sink.point(p.runId, { step, loss, evalLoss: null, lr: num(v.lr), gradNorm: num(v.grad_norm), tokensPerS: num(v.tokens_per_s), elapsedS: num(v.elapsed_s) });
              if (total) report.progress(step, total, "steps");
              report.message(`step ${step}${total ? `/${total}` : ""}, loss ${loss?.toFixed(4) ?? String(v.loss)}`);
            },
            // the trainer's counts line ("N training sample(s) ...") and its end notes are not errors
            onLine: (line, stream) => stream === "stderr" && /^moe-studio train: (\d+ training sample|done,|SIG)/.test(line),
          });
          const final = join(run.runDir, "final");
          return { finalDir: existsSync(join(final, "adapter_config.json")) ? final : null };
        },
        { report, pauseSignal: "SIGINT", pausedExitCode: 130 },
      );
      let cancelled = false, pausing = false;
      sink.settled(p.runId, "running", null);
      const wrapped: JobExecution = {
        cancel() {
          cancelled = true;
          exec.cancel();
        },
        pause() {
          pausing = true;
          exec.pause!();
        },
        done: exec.done.then(
          (v) => {
            sink.settled(p.runId, v === PAUSED ? "paused" : cancelled ? "cancelled" : "done", null);
            return v;
          },
          (e: unknown) => {
            // SIGINT before the trainer's handler is installed (still loading the model, tokenizing): it dies of the
            // signal with nothing trained since its last checkpoint, so a pause (or the app quitting) then is a pause
            if (pausing && e instanceof CliError && e.signal === "SIGINT") {
              sink.settled(p.runId, "paused", null);
              return PAUSED;
            }
            sink.settled(p.runId, cancelled ? "cancelled" : "failed", cancelled ? null : e instanceof Error ? e.message : String(e));
            throw e;
          },
        ),
      };
      return wrapped;
    },
  };
}
