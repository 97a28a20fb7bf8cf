// The "export" job kind: a run's checkpoint into the models folder, where the model library lists it.
//   adapter: the checkpoint's PEFT files (adapter_config.json, adapter_model.safetensors) copied to `.NAME.partial-PID`
//            beside the destination, then renamed onto it (the leftovers sweep removes a copy a crash cut short);
//   merged:  `moe-studio export --model BASE --adapter CKPT --out DEST --dtype D [--quantize Q] [--gguf G]`, which writes
//            to its own temporary name and renames (and removes it on SIGINT, i.e. cancel).
// Each output gets an origin sidecar (library/local.ts: the run, the checkpoint, the base, the format) before the job
// settles done, so the Models view names what it is when the job's end makes it refresh.
// Job.result: { path } of what was written.
import { existsSync } from "node:fs";
import { copyFile, mkdir, readdir, rename, rm } from "node:fs/promises";
import { basename, join } from "node:path";
import { RpcError, type JobLabel, type LocalOrigin } from "../contract.js";
import { CliCancelled, cliJob } from "../jobs/cli-process.js";
import type { JobKindHandler } from "../jobs/kind.js";
import { recordOrigin, writeOrigin } from "../library/local.js";

export interface ExportParams {
  /** The finetune run the checkpoint is of; null: an imported adapter (library.exportMerged), named by runName. */
  runId: string | null;
  runName: string;
  modelDir: string;
  checkpointDir: string;
  kind: "adapter" | "merged";
  dtype: "bf16" | "fp16" | "fp32";
  quantize?: "q8_0" | "q4_k";
  gguf?: "f16" | "q8_0" | "q4_0" | "q4_k";
  /** The destination: <models folder>/<name> (a .gguf file with gguf). */
  out: string;
}

/**
 * The origin an export's output records. The checkpoint's step is read from its folder's name (checkpoint-N; the
 * final adapter is final/), so jobs saved before this field existed describe their output the same way on a retry.
 */
export function exportOrigin(p: ExportParams): LocalOrigin {
  if (p.runId === null) return { origin: "cluster", base: p.modelDir, job: p.runName, format: p.kind === "adapter" ? "adapter" : (p.gguf ?? p.quantize ?? p.dtype) };
  const step = /^checkpoint-(\d+)$/.exec(basename(p.checkpointDir));
  return {
    origin: "finetune",
    run: { id: p.runId, name: p.runName },
    checkpoint: step ? Number(step[1]) : null,
    base: p.modelDir,
    format: p.kind === "adapter" ? "adapter" : (p.gguf ?? p.quantize ?? p.dtype),
  };
}

/** What peft needs of an adapter folder; the optimizer moments and trainer state stay with the run. */
const PEFT_FILES = ["adapter_config.json", "adapter_model.safetensors", "README.md"];

export const exportKind: JobKindHandler<ExportParams> = {
  kind: "export",
  canPause: false,
  canResume: false,
  title: (p) => p.runId === null
    ? `Merge adapter '${p.runName}' into its base (${p.dtype})`
    : `Export run '${p.runName}' (${p.kind === "adapter" ? "adapter" : `merged ${p.dtype}${p.quantize ? ` ${p.quantize}` : ""}${p.gguf ? ` gguf ${p.gguf}` : ""}`})`,
  label: (p): JobLabel =>
    p.runId === null
      ? { key: "mergeAdapter", args: { name: p.runName, format: p.dtype } }
      : p.kind === "adapter"
      ? { key: "exportAdapter", args: { name: p.runName } }
      : { key: "exportMerged", args: { name: p.runName, format: [p.dtype, p.quantize, p.gguf && `gguf ${p.gguf}`].filter(Boolean).join(" ") } },
  subject: (p) => p.runId ?? p.checkpointDir,
  validate(p) {
    if (!existsSync(join(p.checkpointDir, "adapter_config.json"))) throw new RpcError("not_found", `${p.checkpointDir}: no adapter there (the checkpoint is gone)`);
    if (existsSync(p.out)) throw new RpcError("invalid_input", `${p.out} already exists: choose another name`);
  },
  start(p, report) {
    if (p.kind === "adapter") {
      let cancelled = false;
      const done = (async () => {
        const tmp = join(p.out, "..", `.${p.out.split(/[\\/]/).pop()}.partial-${process.pid}`);
        // asynchronous copies: a large adapter (r 64 on every expert is gigabytes) must not hold the main process
        await mkdir(tmp, { recursive: true });
        try {
          const files = (await readdir(p.checkpointDir)).filter((f) => PEFT_FILES.includes(f));
          report.progress(0, files.length, "tensors");
          for (const [i, f] of files.entries()) {
            if (cancelled) throw new CliCancelled();
            await copyFile(join(p.checkpointDir, f), join(tmp, f));
            report.progress(i + 1, files.length, "tensors");
          }
          if (cancelled) throw new CliCancelled();
          // inside the copy, so the folder appears with its origin or not at all
          writeOrigin(tmp, exportOrigin(p));
          if (existsSync(p.out)) throw new Error(`${p.out} appeared while the adapter was copied: nothing replaced`);
          await rename(tmp, p.out);
        } catch (e) {
          await rm(tmp, { recursive: true, force: true });
          throw e;
        }
        return { path: p.out };
      })();
      return { done, cancel: () => void (cancelled = true) };
    }
    let stage = "";
    return cliJob(
      async (cli) => {
        await cli(["export", "--model", p.modelDir, "--adapter", p.checkpointDir, "--out", p.out, "--dtype", p.dtype,
          ...(p.quantize ? ["--quantize", p.quantize] : []), ...(p.gguf ? ["--gguf", p.gguf] : []), "--json"], {
          // --json progress lines on stderr ("progress <stage> <done> <total>": merge, then quantize / gguf when asked)
          // are the bar, not the error; each stage fills it again with its own tensors and says its name
          onLine(line, stream, r) {
            const m = /^progress (\S+) (\d+) (\d+)$/.exec(line);
            if (stream !== "stderr" || !m) return false;
            r.progress(Number(m[2]), Number(m[3]), "tensors");
            if (m[1] !== stage) r.message((stage = m[1]));
            return true;
          },
        });
        // the CLI renamed its output into place, whole: a sidecar that cannot be written is a note, not a failure
        const why = recordOrigin(p.out, exportOrigin(p));
        if (why) report.message(`Exported ${p.out}; ${why}`);
        return { path: p.out };
      },
      { report },
    );
  },
};
