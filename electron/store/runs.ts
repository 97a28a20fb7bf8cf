// Finetune runs (migration 6): one row per run and one run_points row per training step or evaluation; run_routing
// (migration 7) one row per routing window. The finetune
// service (electron/finetune/service.ts) is the one writer; a run's files live in its run folder, not here.
import type { Db } from "./db.js";
import type { RunRouting, TrainPoint } from "../contract.js";

export type RunStatus = "queued" | "running" | "paused" | "done" | "failed" | "cancelled" | "interrupted";

export interface RunRecord {
  id: string;
  name: string;
  modelDir: string;
  datasetId: string;
  datasetName: string;
  baseQuant: "none" | "nf4";
  preset: string;
  args: Record<string, unknown>;
  status: RunStatus;
  error: string | null;
  runDir: string;
  jobId: string | null;
  createdAt: number;
  updatedAt: number;
  step: number;
  totalSteps: number | null;
  finalLoss: number | null;
  finalEvalLoss: number | null;
}

interface RunRow {
  id: string; name: string; model_dir: string; dataset_id: string; dataset_name: string; base_quant: "none" | "nf4"; preset: string;
  args: string; status: RunStatus; error: string | null; run_dir: string; job_id: string | null; created_at: number; updated_at: number;
  step: number; total_steps: number | null; final_loss: number | null; final_eval_loss: number | null;
}

const fromRow = (r: RunRow): RunRecord => ({
  id: r.id, name: r.name, modelDir: r.model_dir, datasetId: r.dataset_id, datasetName: r.dataset_name, baseQuant: r.base_quant,
  preset: r.preset, args: JSON.parse(r.args) as Record<string, unknown>, status: r.status, error: r.error, runDir: r.run_dir,
  jobId: r.job_id, createdAt: r.created_at, updatedAt: r.updated_at, step: r.step, totalSteps: r.total_steps,
  finalLoss: r.final_loss, finalEvalLoss: r.final_eval_loss,
});

export type RunPatch = Partial<Pick<RunRecord, "status" | "error" | "jobId" | "step" | "totalSteps" | "finalLoss" | "finalEvalLoss">>;

export class RunsStore {
  private readonly s;

  constructor(readonly db: Db) {
    this.s = {
      insert: db.prepare(`
        INSERT INTO runs (id, name, model_dir, dataset_id, dataset_name, base_quant, preset, args, status, error, run_dir, job_id,
                          created_at, updated_at, step, total_steps, final_loss, final_eval_loss)
        VALUES (@id, @name, @modelDir, @datasetId, @datasetName, @baseQuant, @preset, @args, @status, @error, @runDir, @jobId,
                @createdAt, @updatedAt, @step, @totalSteps, @finalLoss, @finalEvalLoss)`),
      get: db.prepare(`SELECT * FROM runs WHERE id = ?`),
      list: db.prepare(`SELECT * FROM runs ORDER BY created_at, id`),
      delete: db.prepare(`DELETE FROM runs WHERE id = ?`),
      point: db.prepare(`
        INSERT INTO run_points (run_id, step, kind, loss, eval_loss, lr, grad_norm, tokens_per_s, elapsed_s)
        VALUES (@runId, @step, @kind, @loss, @evalLoss, @lr, @gradNorm, @tokensPerS, @elapsedS)
        ON CONFLICT(run_id, kind, step) DO UPDATE SET loss = excluded.loss, eval_loss = excluded.eval_loss, lr = excluded.lr,
          grad_norm = excluded.grad_norm, tokens_per_s = excluded.tokens_per_s, elapsed_s = excluded.elapsed_s`),
      points: db.prepare(`SELECT * FROM run_points WHERE run_id = ? ORDER BY step, kind DESC`),
      dropAfter: db.prepare(`DELETE FROM run_points WHERE run_id = ? AND step > ?`),
      routing: db.prepare(`
        INSERT INTO run_routing (run_id, step, from_step, top_k, layers) VALUES (@runId, @step, @fromStep, @topK, @layers)
        ON CONFLICT(run_id, step) DO UPDATE SET from_step = excluded.from_step, top_k = excluded.top_k, layers = excluded.layers`),
      routings: db.prepare(`SELECT * FROM run_routing WHERE run_id = ? ORDER BY step`),
      dropRoutingAfter: db.prepare(`DELETE FROM run_routing WHERE run_id = ? AND step > ?`),
    };
  }

  insert(r: RunRecord): void {
    this.s.insert.run({ ...r, args: JSON.stringify(r.args) });
  }

  get(id: string): RunRecord | null {
    const row = this.s.get.get(id) as RunRow | undefined;
    return row ? fromRow(row) : null;
  }

  list(): RunRecord[] {
    return (this.s.list.all() as RunRow[]).map(fromRow);
  }

  update(id: string, patch: RunPatch, now: number): RunRecord | null {
    const cols: Record<keyof RunPatch, string> = {
      status: "status", error: "error", jobId: "job_id", step: "step", totalSteps: "total_steps", finalLoss: "final_loss", finalEvalLoss: "final_eval_loss",
    };
    const keys = (Object.keys(patch) as (keyof RunPatch)[]).filter((k) => patch[k] !== undefined);
    const sets = [...keys.map((k) => `${cols[k]} = @${k}`), "updated_at = @now"].join(", ");
    this.db.prepare(`UPDATE runs SET ${sets} WHERE id = @id`).run({ ...Object.fromEntries(keys.map((k) => [k, patch[k]])), now, id });
    return this.get(id);
  }

  delete(id: string): boolean {
    return this.s.delete.run(id).changes > 0;
  }

  /** A step's (or an evaluation's) numbers; the same step again (a resume repeating it) replaces the first. */
  addPoint(runId: string, p: TrainPoint): void {
    this.s.point.run({ runId, kind: p.evalLoss !== null && p.loss === null ? "eval" : "train", ...p });
  }

  /**
   * Points and routing windows past `step` (what a run trained after its last checkpoint, before a kill): a resume
   * repeats those steps from the checkpoint, and the chart and heatmap should show the steps the adapter really went
   * through.
   */
  dropPointsAfter(runId: string, step: number): void {
    this.s.dropAfter.run(runId, step);
    this.s.dropRoutingAfter.run(runId, step);
  }

  /** A routing window of the run (the same window end again, from a resume, replaces the first). */
  addRouting(runId: string, w: RunRouting): void {
    this.s.routing.run({ runId, step: w.step, fromStep: w.fromStep, topK: w.topK, layers: JSON.stringify(w.layers) });
  }

  routing(runId: string): RunRouting[] {
    return (this.s.routings.all(runId) as { step: number; from_step: number; top_k: number; layers: string }[]).map(
      (r) => ({ step: r.step, fromStep: r.from_step, topK: r.top_k, layers: JSON.parse(r.layers) as RunRouting["layers"] }),
    );
  }

  points(runId: string): TrainPoint[] {
    return (this.s.points.all(runId) as { step: number; loss: number | null; eval_loss: number | null; lr: number | null; grad_norm: number | null; tokens_per_s: number | null; elapsed_s: number | null }[]).map(
      (r) => ({ step: r.step, loss: r.loss, evalLoss: r.eval_loss, lr: r.lr, gradNorm: r.grad_norm, tokensPerS: r.tokens_per_s, elapsedS: r.elapsed_s }),
    );
  }
}
