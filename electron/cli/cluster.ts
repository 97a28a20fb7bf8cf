// The cluster hand-off from the command line:
//   moe-studio export-job --model DIR (--dataset ID [--db FILE] | --data FILE.jsonl) [--config train.json] --out DIR
//                         [--name N] [--base NAME] [--template T] [--base-quant nf4] [--force] [--json]
//     a LLaMA-Factory job folder mirroring the run (electron/finetune/cluster-job.ts)
//   moe-studio import-adapter ADAPTER_DIR --model BASE_DIR [--name N] [--dir MODELS_DIR] [--force] [--json]
//     the PEFT adapter a cluster trained, checked against the local base (the engine loads it) and copied into the
//     app's models folder with its base recorded, so Models opens it to chat with and export merges it.
import { cpSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { writeClusterJob } from "../finetune/cluster-job.js";
import { recordOrigin } from "../library/local.js";
import { defaultDataDir } from "../services/paths.js";
import { parseJsonl, readJsonl } from "../train/data.js";
import { readTrainConfig, resolveTrainArgs } from "../train/config.js";
import { datasetText } from "./train.js";
import { str, type Flags } from "./flags.js";


export function cmdExportJob(flags: Flags): number {
  const modelDir = str(flags, "model");
  if (!modelDir) throw new Error("--model DIR is required (the model folder the run is for)");
  const out = str(flags, "out");
  if (!out) throw new Error("--out DIR is required (the job folder to write)");
  const data = str(flags, "data");
  const datasetId = str(flags, "dataset");
  if ((data === undefined) === (datasetId === undefined)) throw new Error("give one of --dataset ID or --data FILE.jsonl");
  const bq = str(flags, "base-quant") ?? "none";
  if (bq !== "none" && bq !== "nf4") throw new Error(`--base-quant must be none or nf4, got "${bq}"`);
  const cfgPath = str(flags, "config");
  const args = cfgPath ? readTrainConfig(cfgPath) : resolveTrainArgs({});
  const read = data !== undefined ? readJsonl(data) : parseJsonl(datasetText(datasetId!, str(flags, "db")));
  const source = data ?? `dataset ${datasetId}`;
  if (read.messages.length === 0) throw new Error(`${source}: the dataset is empty: no sample in ${read.lines} line(s)${read.firstError ? ` (${read.firstError})` : ""}`);
  const base = str(flags, "base");
  const template = str(flags, "template");
  const r = writeClusterJob({
    args, conversations: read.messages, modelDir: resolve(modelDir), baseQuant: bq, name: str(flags, "name") ?? basename(resolve(out)), outDir: out,
    ...(base ? { base } : {}), ...(template ? { template } : {}), force: flags.force === true,
  });
  if (flags.json === true) process.stdout.write(JSON.stringify({ ...r, rejectedLines: read.rejected }) + "\n");
  else {
    process.stdout.write(`moe-studio export-job: ${r.dir}: ${r.conversations} conversations for ${r.base} (LLaMA-Factory template ${r.template})\n`);
    if (r.skipped) process.stdout.write(`  ${r.skipped} left out, which LLaMA-Factory would skip (first: ${r.firstSkip})\n`);
    if (read.rejected) process.stdout.write(`  ${read.rejected} line(s) of ${source} are not samples (first: ${read.firstError})\n`);
    for (const n of r.notMirrored) process.stdout.write(`  not mirrored: ${n}\n`);
    process.stdout.write(`  run it: cd ${r.dir} && FORCE_TORCHRUN=1 llamafactory-cli train train_lora.yaml (README.md has the multi-node commands)\n`);
  }
  return 0;
}

/** What of an adapter folder is copied: PEFT's files (and a tokenizer, if the trainer saved one with it). */
const ADAPTER_FILES = /^(adapter_config\.json|adapter_model\.(safetensors|bin)|README\.md|tokenizer.*|special_tokens_map\.json|chat_template\.jinja)$/;

export async function cmdImportAdapter(dir: string | undefined, flags: Flags): Promise<number> {
  if (!dir) throw new Error("give the adapter folder: moe-studio import-adapter DIR --model BASE_DIR");
  const src = resolve(dir);
  if (!existsSync(join(src, "adapter_config.json"))) throw new Error(`${src}: not a PEFT adapter folder (adapter_config.json is missing)`);
  if (!existsSync(join(src, "adapter_model.safetensors"))) {
    throw new Error(`${src}: no adapter_model.safetensors (${existsSync(join(src, "adapter_model.bin")) ? "adapter_model.bin is a pickle, which is not loaded: save with safe_serialization" : "was the adapter saved?"})`);
  }
  const baseFlag = str(flags, "model");
  if (!baseFlag) throw new Error("--model BASE_DIR is required (the local model folder the adapter was trained on)");
  const base = resolve(baseFlag);
  // The engine loads the base with it: an adapter for another model fails here, naming the tensor that has no place.
  const { loadModel } = await import("../engine/engine.js");
  const m = await loadModel(base, { adapter: src, threads: 1 });
  m.native.close();
  const modelsDir = resolve(str(flags, "dir") ?? join(defaultDataDir(), "models"));
  const name = str(flags, "name") ?? basename(src);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/.test(name)) throw new Error(`--name ${JSON.stringify(name)}: letters, digits, ".", "_" and "-" only`);
  const dest = join(modelsDir, name);
  if (existsSync(dest) && flags.force !== true) throw new Error(`${dest} exists; pick another --name or pass --force to replace it`);
  const tmp = join(modelsDir, `.${name}.partial-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  cpSync(src, tmp, { recursive: true, filter: (from) => from === src || (statSync(from).isFile() && ADAPTER_FILES.test(basename(from))) });
  try {
    if (existsSync(dest)) rmSync(dest, { recursive: true, force: true });
    renameSync(tmp, dest);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const job = existsSync(join(dirname(dirname(src)), "moe-studio-job.json")) ? readJobName(join(dirname(dirname(src)), "moe-studio-job.json")) : null;
  const note = recordOrigin(dest, { origin: "cluster", base, job });
  const files = readdirSync(dest).filter((f) => f !== "moe-studio.json");
  if (flags.json === true) process.stdout.write(JSON.stringify({ path: dest, base, files, ...(note ? { warning: note } : {}) }) + "\n");
  else process.stdout.write(`moe-studio import-adapter: ${dest} (for ${base}; ${files.join(", ")})${note ? `\n  ${note}` : ""}\n`);
  return 0;
}

function readJobName(file: string): string | null {
  try {
    const j = JSON.parse(readFileSync(file, "utf8")) as { name?: unknown };
    return typeof j.name === "string" ? j.name : null;
  } catch {
    return null;
  }
}

