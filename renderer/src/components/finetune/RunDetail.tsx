// One run: its status with Pause / Resume / Cancel (jobs.* with the run's jobId), progress, tokens/s, elapsed and
// ETA, the chart (with its table), the expert routing heatmap, the log, the checkpoints (chat with one, export one) and Delete (files too,
// after a confirmation).
import { useState } from "react";
import { useT } from "../../hooks.js";
import type { MessageKey } from "../../i18n/index.js";
import { formatDuration, runControls, timing, useFinetune, type FinetuneRun } from "../../stores/finetune.js";
import { folderName } from "../../stores/models.js";
import { IconAlert, IconTrash } from "../icons.js";
import { ExportDialog } from "./ExportDialog.js";
import { RunChart } from "./RunChart.js";
import { RunRoutingPanel } from "../routing/RoutingPanels.js";

const EMPTY: never[] = [];

export function RunDetail({ run }: { run: FinetuneRun }) {
  const t = useT();
  const points = useFinetune((s) => s.points[run.id] ?? EMPTY);
  const log = useFinetune((s) => s.log[run.id] ?? EMPTY);
  const routing = useFinetune((s) => s.routing[run.id] ?? EMPTY);
  const [confirming, setConfirming] = useState(false);
  const [exporting, setExporting] = useState<FinetuneRun["checkpoints"][number] | null>(null);
  const { pause, resume, cancel, remove, chatWithCheckpoint } = useFinetune.getState();
  const c = runControls(run);
  const tm = timing(points, run.totalSteps);
  const pct = run.totalSteps ? Math.min(100, Math.round((run.step / run.totalSteps) * 100)) : null;
  const status = t(`finetune.status.${run.status}` as MessageKey);

  return (
    <section className="card finetune-run" aria-label={t("finetune.runTitle", { name: run.name })}>
      <div className="card-head">
        <div>
          <div className="eyebrow">{t("finetune.run")}</div>
          <h2>{run.name}</h2>
          <div className="muted small-text">
            {t("finetune.runFacts", { model: folderName(run.modelDir), dataset: run.datasetName, preset: t(`finetune.preset.${run.preset}` as MessageKey), base: t(run.baseQuant === "nf4" ? "finetune.qlora" : "finetune.lora") })}
          </div>
        </div>
        <span className={`badge finetune-status-${run.status}`} role="status">
          {status}
        </span>
      </div>

      <div className="row-actions finetune-controls">
        {c.pause && (
          <button type="button" className="secondary" onClick={() => void pause(run)}>
            {t("finetune.pause")}
          </button>
        )}
        {c.resume && (
          <button type="button" className="primary" onClick={() => void resume(run)}>
            {t("finetune.resume")}
          </button>
        )}
        {c.cancel && (
          <button type="button" className="secondary" onClick={() => void cancel(run)}>
            {t("finetune.cancel")}
          </button>
        )}
        {c.remove && (
          <button type="button" className="ghost danger-text" onClick={() => setConfirming(true)}>
            <IconTrash />
            <span>{t("finetune.delete")}</span>
          </button>
        )}
      </div>
      {confirming && (
        <div className="confirm-bar" role="alertdialog" aria-label={t("finetune.deleteConfirm", { name: run.name })}>
          <p>{t("finetune.deleteConfirm", { name: run.name })}</p>
          <div className="row-actions">
            <button type="button" className="danger small" autoFocus onClick={() => void remove(run.id)}>
              {t("finetune.confirmDelete")}
            </button>
            <button type="button" className="ghost small" onClick={() => setConfirming(false)}>
              {t("finetune.keep")}
            </button>
          </div>
        </div>
      )}
      {run.status === "interrupted" && <p className="muted small-text">{t("finetune.interruptedHint")}</p>}
      {run.error && (
        <div className="open-error" role="alert">
          <IconAlert />
          <div className="open-error-text">{run.error}</div>
        </div>
      )}

      <div className="progress">
        <div className="progress-label">
          <span>{run.totalSteps ? t("finetune.stepOf", { step: run.step, total: run.totalSteps }) : t("finetune.stepN", { step: run.step })}</span>
          {pct !== null && <span>{pct}%</span>}
        </div>
        <div className="bar" role="progressbar" aria-label={t("finetune.progress")} aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct ?? undefined}>
          <span style={{ width: `${pct ?? 0}%` }} />
        </div>
      </div>
      <dl className="facts finetune-facts">
        <div>
          <dt>{t("finetune.tokensPerS")}</dt>
          <dd>{tm.tokensPerS === null ? "—" : tm.tokensPerS.toFixed(1)}</dd>
        </div>
        <div>
          <dt>{t("finetune.elapsed")}</dt>
          <dd>{formatDuration(tm.elapsedS)}</dd>
        </div>
        <div>
          <dt>{t("finetune.eta")}</dt>
          <dd>{run.status === "running" ? formatDuration(tm.etaS) : "—"}</dd>
        </div>
        <div>
          <dt>{t("finetune.finalLoss")}</dt>
          <dd>{run.finalLoss === null ? "—" : run.finalLoss.toFixed(4)}</dd>
        </div>
        <div>
          <dt>{t("finetune.finalEvalLoss")}</dt>
          <dd>{run.finalEvalLoss === null ? "—" : run.finalEvalLoss.toFixed(4)}</dd>
        </div>
      </dl>

      <RunChart points={points} />
      <RunRoutingPanel windows={routing} />

      {Object.keys(run.args).length > 0 && (
        <details className="finetune-args">
          <summary>{t("finetune.settings")}</summary>
          <dl className="facts">
            {Object.entries(run.args).map(([k, v]) => (
              <div key={k}>
                <dt className="mono">{k}</dt>
                <dd className="mono">{typeof v === "object" ? JSON.stringify(v) : String(v)}</dd>
              </div>
            ))}
          </dl>
        </details>
      )}

      <section className="finetune-checkpoints" aria-label={t("finetune.checkpoints")}>
        <h3>{t("finetune.checkpoints")}</h3>
        {run.checkpoints.length === 0 ? (
          <p className="muted small-text">{t("finetune.noCheckpoints")}</p>
        ) : (
          <ul>
            {run.checkpoints.map((cp) => {
              const label = cp.final ? t("finetune.checkpointFinal", { step: cp.step }) : t("finetune.checkpointN", { step: cp.step });
              return (
                <li key={`${cp.step}-${cp.final}`}>
                  <span className="finetune-cp-name">{label}</span>
                  <span className="muted mono small-text finetune-cp-dir" title={cp.dir}>
                    {folderName(cp.dir)}
                  </span>
                  <button
                    type="button"
                    className="secondary small"
                    aria-label={t("finetune.chatWithNamed", { checkpoint: label })}
                    title={t("finetune.chatWith")}
                    onClick={() => void chatWithCheckpoint(run, cp, t("finetune.chatTitle", { name: run.name, checkpoint: label }))}
                  >
                    {t("finetune.chatWith")}
                  </button>
                  <button type="button" className="ghost small" aria-label={t("finetune.exportNamed", { checkpoint: label })} title={t("finetune.export")} onClick={() => setExporting(cp)}>
                    {t("finetune.export")}
                  </button>
                </li>
              );
            })}
          </ul>
        )}
      </section>

      <section className="finetune-log-box" aria-label={t("finetune.log")}>
        <h3>{t("finetune.log")}</h3>
        <pre className="finetune-log mono" tabIndex={0} aria-label={t("finetune.log")}>
          {[...points.slice(-200).map((p) => t("finetune.logPoint", { step: p.step, loss: p.loss === null ? "—" : p.loss.toFixed(4), lr: p.lr === null ? "—" : p.lr.toExponential(2), eval: p.evalLoss === null ? "" : ` · val ${p.evalLoss.toFixed(4)}` })), ...log].join("\n") || t("finetune.logEmpty")}
        </pre>
      </section>
      {exporting && <ExportDialog run={run} checkpoint={exporting} onClose={() => setExporting(null)} />}
    </section>
  );
}
