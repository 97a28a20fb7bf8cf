// Export a checkpoint: the PEFT adapter folder, or merged weights (bf16 / fp16 / fp32), optionally quantized
// (q8_0 / q4_k, a folder this engine runs) and/or a GGUF file; a name in the models folder; the export job's
// progress (jobs.job events); when done, the model opens in chat.
import { useEffect, useRef, useState } from "react";
import { useT } from "../../hooks.js";
import { chatWithAdapter, exportOutput, useFinetune, type FinetuneRun } from "../../stores/finetune.js";
import { useJobs } from "../../stores/jobs.js";
import { folderName, useModels } from "../../stores/models.js";
import { useUi } from "../../stores/ui.js";
import { IconAlert } from "../icons.js";

type Kind = "adapter" | "merged";
type Dtype = "bf16" | "fp16" | "fp32";
type Quant = "" | "q8_0" | "q4_k";
type Gguf = "" | "f16" | "q8_0" | "q4_0" | "q4_k";

export function ExportDialog({ run, checkpoint, onClose }: { run: FinetuneRun; checkpoint: FinetuneRun["checkpoints"][number]; onClose(): void }) {
  const t = useT();
  const [kind, setKind] = useState<Kind>("merged");
  const [dtype, setDtype] = useState<Dtype>("bf16");
  const [quant, setQuant] = useState<Quant>("");
  const [gguf, setGguf] = useState<Gguf>("");
  const [name, setName] = useState(`${folderName(run.modelDir)}-${run.name}-${checkpoint.final ? "final" : `step${checkpoint.step}`}`.replace(/[/\\]/g, "-"));
  const [jobId, setJobId] = useState<string | null>(null);
  const job = useJobs((s) => (jobId ? (s.jobs[jobId] ?? null) : null));
  const dialog = useRef<HTMLDivElement>(null);
  useEffect(() => dialog.current?.querySelector<HTMLElement>("input, select")?.focus(), []);
  const running = job !== null && (job.status === "queued" || job.status === "running");
  const pct = job?.progress && job.progress.total > 0 ? Math.round((job.progress.done / job.progress.total) * 100) : null;
  const out = job?.status === "done" ? exportOutput(job) : null;
  const validName = name.trim() !== "" && !/[/\\]/.test(name) && name.trim() !== "." && name.trim() !== "..";

  return (
    <div className="modal-backdrop">
      <div ref={dialog} className="modal finetune-export" role="dialog" aria-modal="true" aria-label={t("finetune.export.title")} onKeyDown={(e) => e.key === "Escape" && !running && onClose()}>
        <header className="modal-head">
          <div className="eyebrow">{t("finetune.export.title")}</div>
          <h2>{checkpoint.final ? t("finetune.checkpointFinal", { step: checkpoint.step }) : t("finetune.checkpointN", { step: checkpoint.step })}</h2>
        </header>
        <form
          className="finetune-export-form"
          onSubmit={(e) => {
            e.preventDefault();
            if (!validName) return;
            void useFinetune
              .getState()
              .exportCheckpoint({
                id: run.id,
                checkpoint: checkpoint.final ? "final" : checkpoint.step,
                kind,
                ...(kind === "merged" ? { dtype, ...(quant ? { quantize: quant } : {}), ...(gguf ? { gguf } : {}) } : {}),
                name: name.trim(),
              })
              .then((j) => j && setJobId(j.id));
          }}
        >
          <fieldset className="finetune-choice" disabled={running}>
            <legend>{t("finetune.export.kind")}</legend>
            {(["adapter", "merged"] as Kind[]).map((k) => (
              <label key={k} className={`finetune-option${kind === k ? " selected" : ""}`}>
                <input type="radio" name="ft-export-kind" checked={kind === k} onChange={() => setKind(k)} />
                <span className="finetune-option-text">
                  <strong>{t(k === "adapter" ? "finetune.export.adapter" : "finetune.export.merged")}</strong>
                  <span className="muted small-text">{t(k === "adapter" ? "finetune.export.adapterHelp" : "finetune.export.mergedHelp")}</span>
                </span>
              </label>
            ))}
          </fieldset>
          {kind === "merged" && (
            <div className="finetune-export-row">
              <div className="field">
                <label htmlFor="ft-export-dtype">{t("finetune.export.dtype")}</label>
                <select id="ft-export-dtype" value={dtype} disabled={running} onChange={(e) => setDtype(e.target.value as Dtype)}>
                  <option value="bf16">bf16</option>
                  <option value="fp16">fp16</option>
                  <option value="fp32">fp32</option>
                </select>
              </div>
              <div className="field">
                <label htmlFor="ft-export-quant">{t("finetune.export.quantize")}</label>
                <select id="ft-export-quant" value={quant} disabled={running} onChange={(e) => setQuant(e.target.value as Quant)}>
                  <option value="">{t("finetune.export.none")}</option>
                  <option value="q8_0">{t("finetune.export.int8")}</option>
                  <option value="q4_k">{t("finetune.export.int4")}</option>
                </select>
              </div>
              <div className="field">
                <label htmlFor="ft-export-gguf">{t("finetune.export.gguf")}</label>
                <select id="ft-export-gguf" value={gguf} disabled={running} onChange={(e) => setGguf(e.target.value as Gguf)}>
                  <option value="">{t("finetune.export.none")}</option>
                  {(["f16", "q8_0", "q4_0", "q4_k"] as const).map((g) => (
                    <option key={g} value={g}>
                      {g.toUpperCase()}
                    </option>
                  ))}
                </select>
              </div>
            </div>
          )}
          <div className="field">
            <label htmlFor="ft-export-name">{t("finetune.export.name")}</label>
            <input id="ft-export-name" className="mono" value={name} maxLength={200} disabled={running} spellCheck={false} aria-invalid={!validName || undefined} onChange={(e) => setName(e.target.value)} />
            {!validName && <span className="field-error">{t("finetune.export.nameInvalid")}</span>}
          </div>
          {job && (running || job.status === "done") && (
            <div className="progress" role="status">
              <div className="progress-label">
                <span>{job.status === "done" ? t("finetune.export.done", { path: out ?? "" }) : (job.message ?? t("finetune.export.running"))}</span>
                {pct !== null && <span>{pct}%</span>}
              </div>
              <div className="bar" role="progressbar" aria-label={t("finetune.export.progress")} aria-valuemin={0} aria-valuemax={100} aria-valuenow={job.status === "done" ? 100 : (pct ?? undefined)}>
                <span className={pct === null && job.status !== "done" ? "indeterminate" : ""} style={pct === null && job.status !== "done" ? undefined : { width: `${job.status === "done" ? 100 : pct}%` }} />
              </div>
            </div>
          )}
          {job && (job.status === "failed" || job.status === "cancelled") && (
            <div className="open-error" role="alert">
              <IconAlert />
              <div className="open-error-text">{job.status === "failed" ? (job.error ?? t("finetune.export.failed")) : t("finetune.export.cancelled")}</div>
            </div>
          )}
          <div className="row-actions end">
            {running && job && (
              <button type="button" className="secondary" onClick={() => void useFinetune.getState().cancelJob(job.id)}>
                {t("finetune.cancel")}
              </button>
            )}
            {out && kind === "merged" && !gguf && (
              <button
                type="button"
                className="secondary"
                onClick={() => {
                  onClose();
                  void useModels
                    .getState()
                    .open(out)
                    .then((card) => card && useUi.getState().setView("chat"));
                }}
              >
                {t("finetune.export.openInChat")}
              </button>
            )}
            {out && kind === "adapter" && (
              // an adapter opens the way Models lists it: a conversation on the run's base with this folder
              <button
                type="button"
                className="secondary"
                onClick={() => {
                  onClose();
                  void chatWithAdapter(folderName(out), run.modelDir, out);
                }}
              >
                {t("finetune.export.openInChat")}
              </button>
            )}
            <button type="button" className="ghost" disabled={running} onClick={onClose}>
              {t("finetune.close")}
            </button>
            {!out && (
              <button type="submit" className="primary" disabled={running || !validName}>
                {t("finetune.export")}
              </button>
            )}
          </div>
        </form>
      </div>
    </div>
  );
}
