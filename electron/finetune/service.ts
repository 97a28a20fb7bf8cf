// Finetune runs: a dataset from the library and a model folder trained into a LoRA adapter by a "train" job
// (train-kind.ts), every step kept in SQLite (store/runs.ts), the run folder <dataDir>/runs/<id>/ holding train.json,
// checkpoint-N/ and final/; exports of a checkpoint are "export" jobs (export-kind.ts) into the models folder.
//
//   const finetune = new FinetuneService({ db, dbFile, dataDir, jobs, emit, modelsDir });   // registers its kinds
//   await finetune.estimate(spec)     // MemoryEstimate: the trainer's own sizing, asked in a child process
//   await finetune.start(spec)        // refused (invalid_input, nothing started) when it will not fit
//   // pause / resume / cancel: jobs.pause(run.jobId) ...; the run's status follows its job (onJob)
//
// The memory estimate runs `moe-studio train --estimate` in a child process: loading a model and sizing a trainer is
// seconds of work and gigabytes of mapping that the main process must never hold.
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { RpcError, type FinetuneRun, type FinetuneSpec, type Job, type LocalOrigin, type MemoryEstimate, type RunRouting, type TrainPoint } from "../contract.js";
import { readJsonFile } from "../engine/model-folder.js";
import { CliError, cliProcess } from "../jobs/cli-process.js";
import type { JobReporter } from "../jobs/kind.js";
import type { JobService } from "../jobs/service.js";
import type { Emit } from "../services/models.js";
import type { Db } from "../store/db.js";
import { DatasetRepo } from "../store/datasets.js";
import { RunsStore, type RunRecord, type RunStatus } from "../store/runs.js";
import { resolveSpecArgs, type TrainArgs } from "../train/config.js";
import { parseJsonl } from "../train/data.js";
import { writeClusterJob, type ClusterJobResult } from "./cluster-job.js";
import { exportKind, type ExportParams } from "./export-kind.js";
import { trainKind } from "./train-kind.js";

/**
 * Within this much of the free memory a run is "tight": the estimate is the trainer's own sizing, 0.90 of the peak
 * measured in the training benchmark (allocator slack, the tokenizer, Node's heap), so a run at 85-100% of free memory
 * may still be refused or swap once other programs take their share during a long run.
 */
export const TIGHT_MARGIN = 0.15;

export interface FinetuneServiceOptions {
  db: Db;
  /** The database file: the trainer reads the dataset from it (train --dataset ID --db FILE). */
  dbFile: string;
  dataDir: string;
  jobs: JobService;
  emit: Emit;
  /** Where exports go (the model library lists this folder). */
  modelsDir: () => string;
  now?: () => number;
}

export interface ExportRequest {
  id: string;
  checkpoint: number | "final";
  kind: "adapter" | "merged";
  dtype?: "bf16" | "fp16" | "fp32";
  quantize?: "q8_0" | "q4_k";
  gguf?: "f16" | "q8_0" | "q4_0" | "q4_k";
  name: string;
}

const MiB = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;
const silent: JobReporter = { progress() {}, message() {}, figures() {}, detail() {} };
const JOB_TO_RUN: Record<Job["status"], RunStatus> = {
  queued: "queued", running: "running", pausing: "running", paused: "paused", done: "done", failed: "failed", cancelled: "cancelled", interrupted: "interrupted",
};

export class FinetuneService {
  private readonly runs: RunsStore;
  private readonly datasets: DatasetRepo;
  private readonly now: () => number;

  constructor(private readonly opts: FinetuneServiceOptions) {
    this.runs = new RunsStore(opts.db);
    this.datasets = new DatasetRepo(opts.db);
    this.now = opts.now ?? Date.now;
    opts.jobs.register(
      trainKind({
        dbFile: opts.dbFile,
        run: (id) => this.runs.get(id),
        started: (id, totalSteps, fromStep) => {
          // a resume repeats the steps after its checkpoint (a fresh start all of them): their old points go
          this.runs.dropPointsAfter(id, fromStep);
          this.changed(id, { totalSteps, step: fromStep });
        },
        point: (id, p) => this.addPoint(id, p),
        routing: (id, w) => {
          try {
            this.runs.addRouting(id, w);
          } catch {
            // see changed()
          }
          this.opts.emit("finetune.routing", { runId: id, window: w });
        },
        settled: (id, status, error) => this.changed(id, { status, error }),
      }),
    );
    opts.jobs.register(exportKind);
    // A run's status and error are its job's (statusOf): announce the run whenever its job's status changes, by any
    // path (a Pause that is still "pausing", a retry from the Activity panel), not only where the train kind settles.
    const seen = new Map<string, Job["status"]>();
    opts.jobs.onJob((j) => {
      if (j.kind !== "train" || !j.subject || seen.get(j.id) === j.status) return;
      seen.set(j.id, j.status);
      const r = this.runs.get(j.subject);
      if (r && r.jobId === j.id) this.opts.emit("finetune.run", this.view(r));
    });
    this.sweep();
    // A run left "running" by a process that stopped: its job says what it is now (the job service restored it as
    // interrupted, or dispose() paused it); a run whose job is gone was cut off before its job was saved.
    for (const r of this.runs.list()) {
      if (r.status !== "running" && r.status !== "queued") continue;
      let status: RunStatus = "interrupted";
      try {
        if (r.jobId) status = JOB_TO_RUN[opts.jobs.get(r.jobId).status];
      } catch {
        // no such job: interrupted
      }
      this.runs.update(r.id, { status }, this.now());
    }
  }

  /**
   * What an earlier process left in the runs folder: an estimate's config, a run folder being made
   * (.ID.partial-PID) or being deleted (.ID.deleting-PID). This process has none of them in flight yet.
   */
  private sweep(): void {
    const dir = this.runsDir();
    for (const e of existsSync(dir) ? readdirSync(dir) : []) {
      if (/^\.estimate-.*\.json$/.test(e) || /^\..+\.(partial|deleting)-\d+$/.test(e)) {
        try {
          rmSync(join(dir, e), { recursive: true, force: true });
        } catch {
          // left for the next start
        }
      }
    }
  }

  private runsDir(): string {
    return join(this.opts.dataDir, "runs");
  }

  private record(id: string): RunRecord {
    const r = this.runs.get(id);
    if (!r) throw new RpcError("not_found", `no finetune run ${id}`);
    return r;
  }

  /** The run's status is its job's while the job system knows the job (a cancel of a paused job, an interrupted one). */
  private statusOf(r: RunRecord): { status: RunStatus; error: string | null } {
    if (!r.jobId) return { status: r.status, error: r.error };
    let job: Job;
    try {
      job = this.opts.jobs.get(r.jobId);
    } catch {
      return { status: r.status, error: r.error };
    }
    const status = JOB_TO_RUN[job.status];
    return { status, error: status === "failed" ? (job.error ?? r.error) : null };
  }

  private view(r: RunRecord): FinetuneRun {
    return {
      id: r.id, name: r.name, modelDir: r.modelDir, datasetId: r.datasetId, datasetName: r.datasetName, baseQuant: r.baseQuant,
      preset: r.preset as FinetuneRun["preset"], args: r.args, ...this.statusOf(r), createdAt: r.createdAt, updatedAt: r.updatedAt,
      step: r.step, totalSteps: r.totalSteps, finalLoss: r.finalLoss, finalEvalLoss: r.finalEvalLoss, checkpoints: this.checkpoints(r.runDir),
      runDir: r.runDir, jobId: r.jobId,
    };
  }

  /** checkpoint-N/ folders the trainer completed (trainer_state.json is inside the renamed folder) and final/. */
  private checkpoints(runDir: string): FinetuneRun["checkpoints"] {
    const out: FinetuneRun["checkpoints"] = [];
    let last = 0;
    for (const e of existsSync(runDir) ? readdirSync(runDir) : []) {
      const m = /^checkpoint-(\d+)$/.exec(e);
      if (m && existsSync(join(runDir, e, "adapter_config.json")) && existsSync(join(runDir, e, "trainer_state.json"))) {
        out.push({ step: Number(m[1]), dir: join(runDir, e), final: false });
        last = Math.max(last, Number(m[1]));
      }
    }
    out.sort((a, b) => a.step - b.step);
    if (existsSync(join(runDir, "final", "adapter_config.json"))) out.push({ step: last, dir: join(runDir, "final"), final: true });
    return out;
  }

  // The trainer's lines arrive on the child's pipes: a write that fails there (a full disk, the database closed under
  // a quit) must not throw into the event loop; the training goes on and its checkpoints are the record that counts.
  private changed(id: string, patch: Parameters<RunsStore["update"]>[1]): void {
    let r: RunRecord | null;
    try {
      r = this.runs.update(id, patch, this.now());
    } catch {
      return;
    }
    if (r) this.opts.emit("finetune.run", this.view(r));
  }

  private addPoint(id: string, p: TrainPoint): void {
    try {
      this.runs.addPoint(id, p);
    } catch {
      // see changed()
    }
    this.opts.emit("finetune.point", { runId: id, point: p });
    if (p.loss !== null) this.changed(id, { step: p.step, finalLoss: p.loss });
    else if (p.evalLoss !== null) this.changed(id, { finalEvalLoss: p.evalLoss });
  }

  // ---------- spec → train.json, estimate ----------

  private checkSpec(spec: FinetuneSpec): { args: TrainArgs; datasetName: string; seqCut: boolean } {
    const name = this.datasets.name(spec.datasetId);
    if (name === null) throw new RpcError("not_found", `no dataset ${spec.datasetId}`);
    if (this.datasets.sampleCount(spec.datasetId) === 0) throw new RpcError("invalid_input", `the dataset '${name}' is empty: add or import samples first`);
    if (!existsSync(join(spec.modelDir, "config.json"))) throw new RpcError("invalid_input", `${spec.modelDir}: not a model folder (no config.json)`);
    let args: TrainArgs;
    try {
      args = resolveSpecArgs(spec.preset, spec.knobs);
    } catch (e) {
      throw new RpcError("invalid_input", (e as Error).message);
    }
    // A preset's max_seq_length (512 / 1024) past the model's context would be refused by the engine: the preset
    // adapts to the model. A max_seq_length the user typed is theirs, and its error says the limit.
    let seqCut = false;
    if (!("max_seq_length" in spec.knobs)) {
      const ctx = modelContext(spec.modelDir);
      if (ctx !== null && args.max_seq_length > ctx) {
        args = { ...args, max_seq_length: ctx };
        seqCut = true;
      }
    }
    return { args, datasetName: name, seqCut };
  }

  private async measure(spec: FinetuneSpec, args: TrainArgs): Promise<{ estimate: MemoryEstimate; totalSteps: number }> {
    mkdirSync(this.runsDir(), { recursive: true });
    const cfg = join(this.runsDir(), `.estimate-${randomUUID()}.json`);
    writeFileSync(cfg, JSON.stringify(args));
    let mem: Record<string, unknown> | null = null;
    try {
      await cliProcess(
        ["train", "--estimate", "--model", spec.modelDir, "--dataset", spec.datasetId, "--db", this.opts.dbFile, "--config", cfg,
          ...(spec.baseQuant === "nf4" ? ["--base-quant", "nf4"] : [])],
        {
          report: silent,
          onJson: (v) => { if (v.memory && typeof v.memory === "object") mem = v.memory as Record<string, unknown>; },
          onLine: (line, stream) => stream === "stderr" && /^moe-studio train: \d+ training sample/.test(line),
        },
      ).done;
    } catch (e) {
      // the trainer's own reason: an empty dataset, no chat template, every sample too long, a bad knob
      throw new RpcError("invalid_input", e instanceof CliError ? e.message.replace(/^cannot train: /, "") : (e as Error).message);
    } finally {
      rmSync(cfg, { force: true });
    }
    if (!mem) throw new RpcError("internal", "the trainer printed no memory estimate");
    return { estimate: verdict(mem), totalSteps: Number((mem as Record<string, unknown>).total_steps) || 0 };
  }

  /**
   * The run as a LLaMA-Factory job for a cluster (finetune/cluster-job.ts), into <data>/cluster-jobs/<name>: for a run
   * too big for this machine, so the memory verdict does not matter here. base: model_name_or_path on the cluster.
   */
  clusterJob(spec: FinetuneSpec, base?: string): ClusterJobResult {
    const { args, datasetName } = this.checkSpec(spec);
    const read = parseJsonl(this.datasets.exportAll(spec.datasetId));
    const stem = (spec.name?.trim() || `${datasetName}-${spec.modelDir.split(/[\\/]/).pop()}`).replace(/[^A-Za-z0-9_.-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 80) || "job";
    const root = join(this.opts.dataDir, "cluster-jobs");
    mkdirSync(root, { recursive: true });
    let name = stem;
    for (let i = 2; existsSync(join(root, name)); i++) name = `${stem}-${i}`;
    try {
      return writeClusterJob({ args, conversations: read.messages, modelDir: resolve(spec.modelDir), baseQuant: spec.baseQuant, name, outDir: join(root, name), ...(base ? { base } : {}) });
    } catch (e) {
      throw new RpcError("invalid_input", (e as Error).message);
    }
  }

  /**
   * An adapter trained elsewhere into the models folder (`moe-studio import-adapter` in a child process: the engine
   * loads the base with it there, so one made for another model fails with the engine's reason, off this process).
   */
  async importAdapter(dir: string, base: string, name?: string): Promise<string> {
    let path: string | null = null;
    try {
      await cliProcess(["import-adapter", dir, "--model", base, "--dir", this.opts.modelsDir(), "--json", ...(name ? ["--name", name] : [])], {
        report: silent,
        onJson: (v) => { if (typeof v.path === "string") path = v.path; },
      }).done;
    } catch (e) {
      throw new RpcError("invalid_input", e instanceof CliError ? e.message : (e as Error).message);
    }
    if (!path) throw new RpcError("internal", "import-adapter printed no path");
    return path;
  }

  async estimate(spec: FinetuneSpec): Promise<MemoryEstimate> {
    const { args, seqCut } = this.checkSpec(spec);
    return { ...(await this.measure(spec, args)).estimate, maxSeqLength: args.max_seq_length, seqCut };
  }

  // ---------- runs ----------

  async start(spec: FinetuneSpec): Promise<FinetuneRun> {
    const { args, datasetName } = this.checkSpec(spec);
    const { estimate, totalSteps } = await this.measure(spec, args);
    if (estimate.verdict === "will_not_fit") throw new RpcError("invalid_input", `this run will not fit in memory: ${estimate.advice}`);
    const id = randomUUID();
    const runDir = join(this.runsDir(), id);
    // train.json to a temporary name, then the folder renamed into place: a run folder is complete or absent
    const tmp = join(this.runsDir(), `.${id}.partial-${process.pid}`);
    mkdirSync(tmp, { recursive: true });
    writeFileSync(join(tmp, "train.json"), JSON.stringify(args, null, 2) + "\n");
    renameSync(tmp, runDir);
    const t = this.now();
    const modelDir = resolve(spec.modelDir);
    this.runs.insert({
      id, name: spec.name?.trim() || `${datasetName} on ${modelDir.split(/[\\/]/).pop()}`, modelDir, datasetId: spec.datasetId, datasetName,
      baseQuant: spec.baseQuant, preset: spec.preset, args: args as unknown as Record<string, unknown>, status: "running", error: null, runDir,
      jobId: null, createdAt: t, updatedAt: t, step: 0, totalSteps: totalSteps || null, finalLoss: null, finalEvalLoss: null,
    });
    let job: Job;
    try {
      job = this.opts.jobs.start("train", { runId: id });
    } catch (e) {
      this.runs.delete(id);
      rmSync(runDir, { recursive: true, force: true });
      throw e;
    }
    this.changed(id, { jobId: job.id, status: JOB_TO_RUN[job.status], error: job.status === "failed" ? job.error : null });
    return this.view(this.record(id));
  }

  list(): FinetuneRun[] {
    return this.runs.list().map((r) => this.view(r));
  }

  get(id: string): { run: FinetuneRun; points: TrainPoint[]; routing: RunRouting[] } {
    return { run: this.view(this.record(id)), points: this.runs.points(id), routing: this.runs.routing(id) };
  }

  /** A run that is not training, with its files (its folder is renamed aside first: it is whole or gone). */
  delete(id: string): { ok: true } {
    const r = this.record(id);
    if (r.jobId) {
      let job: Job | null = null;
      try {
        job = this.opts.jobs.get(r.jobId);
      } catch {
        job = null;
      }
      if (job && (job.status === "running" || job.status === "pausing" || job.status === "queued"))
        throw new RpcError("busy", "the run is training: pause or cancel it first");
      if (job) this.opts.jobs.remove(job.id);
    }
    if (existsSync(r.runDir)) {
      const aside = join(this.runsDir(), `.${id}.deleting-${process.pid}`);
      renameSync(r.runDir, aside);
      rmSync(aside, { recursive: true, force: true });
    }
    this.runs.delete(id);
    return { ok: true };
  }

  /** The model folder a train job reads (a resume or retry re-checks it against the path policy). */
  modelDirOfJob(jobId: string): string {
    const runId = (this.opts.jobs.paramsOf(jobId) as { runId?: string }).runId;
    return this.record(String(runId)).modelDir;
  }

  /** A job the job service started in place of another (jobs.retry): a train job becomes its run's job. */
  adopt(job: Job): Job {
    if (job.kind === "train" && job.subject && this.runs.get(job.subject)) this.changed(job.subject, { jobId: job.id });
    return job;
  }

  /** Merged weights of an adapter imported into the models folder (origin "cluster"), on the base it recorded. */
  exportImported(adapterPath: string, entry: { name: string; origin: LocalOrigin | null }, dtype: "bf16" | "fp16" | "fp32", name: string): Job {
    if (entry.origin?.origin !== "cluster" || entry.origin.format !== undefined) {
      throw new RpcError("invalid_input", `${adapterPath}: not an imported adapter (a run's checkpoints export from the Finetune view)`);
    }
    const models = this.opts.modelsDir();
    const params: ExportParams = { runId: null, runName: entry.name, modelDir: entry.origin.base, checkpointDir: adapterPath, kind: "merged", dtype, out: join(models, name) };
    return this.opts.jobs.start("export", params);
  }

  export(req: ExportRequest): Job {
    const r = this.record(req.id);
    const cps = this.checkpoints(r.runDir);
    const cp = req.checkpoint === "final" ? cps.find((c) => c.final) : cps.find((c) => !c.final && c.step === req.checkpoint);
    if (!cp) throw new RpcError("not_found", `run '${r.name}' has no ${req.checkpoint === "final" ? "final adapter (it has not finished)" : `checkpoint at step ${req.checkpoint}`}`);
    if (req.kind === "adapter" && (req.quantize || req.gguf)) throw new RpcError("invalid_input", "an adapter export is the PEFT folder: quantize and gguf are for merged exports");
    const models = this.opts.modelsDir();
    mkdirSync(models, { recursive: true });
    const params: ExportParams = {
      runId: r.id, runName: r.name, modelDir: r.modelDir, checkpointDir: cp.dir, kind: req.kind, dtype: req.dtype ?? "bf16",
      ...(req.quantize ? { quantize: req.quantize } : {}), ...(req.gguf ? { gguf: req.gguf } : {}),
      out: join(models, req.gguf && !req.name.endsWith(".gguf") ? `${req.name}.gguf` : req.name),
    };
    return this.opts.jobs.start("export", params);
  }
}

/** config.json's max_position_embeddings (or its text_config's), or null when it does not say. */
function modelContext(modelDir: string): number | null {
  try {
    const c = readJsonFile(join(modelDir, "config.json")) as { max_position_embeddings?: unknown; text_config?: { max_position_embeddings?: unknown } };
    const v = c.max_position_embeddings ?? c.text_config?.max_position_embeddings;
    return typeof v === "number" && Number.isInteger(v) && v >= 2 ? v : null;
  } catch {
    return null;  // the trainer reads it again and says what is wrong with it
  }
}

/** The trainer's numbers → a verdict against free memory (TIGHT_MARGIN) and what to change. */
export function verdict(m: Record<string, unknown>): MemoryEstimate {
  const n = (k: string) => (typeof m[k] === "number" ? (m[k] as number) : 0);
  const total = n("total_bytes"), available = typeof m.available_bytes === "number" ? (m.available_bytes as number) : -1;
  const adapterAll = n("adapter_bytes");
  const v: MemoryEstimate["verdict"] = available < 0 ? "fits" : total > available ? "will_not_fit" : total > available * (1 - TIGHT_MARGIN) ? "tight" : "fits";
  const numbers = `needs ~${MiB(total)}${m.activations_lower_bound ? " or more" : ""} (base ${MiB(n("base_bytes"))}, adapter + optimizer ${MiB(adapterAll)}, ` +
    `activations ${MiB(n("activation_bytes"))}) against ${available < 0 ? "unknown" : MiB(available)} free`;
  const change = "lower max_seq_length (activations grow with it, attention with its square), lower lora_rank or fewer target_modules, " +
    "use baseQuant nf4 (Q-LoRA) on a 16-bit model, or close other programs";
  return {
    baseBytes: n("base_bytes"),
    // 16 bytes per LoRA parameter: the parameter and its gradient (8) here, the two AdamW moments (8) in optimizerBytes
    adapterBytes: adapterAll / 2,
    optimizerBytes: adapterAll / 2,
    activationBytes: n("activation_bytes"),
    totalBytes: total,
    availableBytes: available,
    params: n("params"),
    verdict: v,
    advice: v === "fits" ? null : v === "tight" ? `tight: ${numbers}, within ${TIGHT_MARGIN * 100}% of free memory; to leave room: ${change}` : `${numbers}: ${change}`,
  };
}
