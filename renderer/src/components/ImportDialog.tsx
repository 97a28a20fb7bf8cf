// The import of one file: upload/scan progress with Cancel, then the report (counts, formats, every bad line with
// its line number and reason — virtualised, up to the 10,000 the backend lists) and the choice between importing the
// valid samples and importing nothing.
import { useEffect, useRef } from "react";
import type { RejectedLine } from "../api/types.js";
import { useT } from "../hooks.js";
import { formatCount, useDatasets, type ImportState } from "../stores/datasets.js";
import { formatBytes } from "../stores/models.js";
import { IconAlert } from "./icons.js";
import { useRowWindow } from "./useRowWindow.js";

const LINE_HEIGHT = 30;
const MAX_LIST_HEIGHT = 240;

/** The backend's error starts with the reason in English ("not JSON: Unexpected token…"); the list shows the reason
 *  in the UI's language in its own column, so the detail is what follows it. */
export function errorDetail(reason: string, error: string): string {
  const i = error.indexOf(": ");
  return i > 0 && error.slice(0, i).toLowerCase() === reason.replace(/_/g, " ") ? error.slice(i + 2) : error;
}

function BadLines({ lines }: { lines: RejectedLine[] }) {
  const t = useT();
  const ref = useRef<HTMLDivElement>(null);
  const win = useRowWindow(ref, LINE_HEIGHT, lines.length, 10);
  const items = [];
  for (let i = win.start; i < win.end; i++) {
    const l = lines[i];
    items.push(
      <li key={i} className="bad-line" style={{ transform: `translateY(${i * LINE_HEIGHT}px)` }} title={l.error}>
        <span className="bad-no mono">{t("datasets.line", { n: l.line })}</span>
        <span className="bad-reason">{t(`datasets.reason.${l.reason}` as const)}</span>
        <span className="bad-error">{errorDetail(l.reason, l.error)}</span>
      </li>,
    );
  }
  return (
    <div className="bad-lines" ref={ref} tabIndex={0} aria-label={t("datasets.badLines")} style={{ height: Math.min(MAX_LIST_HEIGHT, lines.length * LINE_HEIGHT + 2) }}>
      <ul aria-label={t("datasets.badLines")} style={{ height: lines.length * LINE_HEIGHT }}>
        {items}
      </ul>
    </div>
  );
}

function Progress({ imp }: { imp: ImportState }) {
  const t = useT();
  const pct = imp.total > 0 ? Math.min(100, Math.round((imp.done / imp.total) * 100)) : null;
  const label = t(imp.phase === "uploading" ? "datasets.uploading" : "datasets.scanning", { done: formatBytes(imp.done), total: formatBytes(imp.total) });
  return (
    <div className="progress" role="status">
      <div className="progress-label">
        <span>{label}</span>
        {pct !== null && <span>{pct}%</span>}
      </div>
      <div className="bar" role="progressbar" aria-label={t("datasets.progress")} aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct ?? undefined}>
        <span className={pct === null ? "indeterminate" : ""} style={pct === null ? undefined : { width: `${pct}%` }} />
      </div>
      {imp.phase === "scanning" && (
        <div className="muted small-text">{t("datasets.soFar", { records: formatCount(imp.records), valid: formatCount(imp.valid), rejected: formatCount(imp.rejectedCount) })}</div>
      )}
    </div>
  );
}

export function ImportDialog() {
  const t = useT();
  const imp = useDatasets((s) => s.import);
  const { cancelImport, commitImport, setImportName } = useDatasets.getState();
  const dialog = useRef<HTMLDivElement>(null);
  const phase = imp?.phase;
  useEffect(() => {
    // focus moves into the dialog when it opens and when the report arrives
    const d = dialog.current;
    (d?.querySelector<HTMLElement>("button.primary:not(:disabled)") ?? d?.querySelector<HTMLElement>("button"))?.focus();
  }, [phase]);
  if (!imp) return null;
  const report = imp.report;
  const busy = imp.phase === "uploading" || imp.phase === "scanning";

  return (
    <div className="modal-backdrop">
      <div
        ref={dialog}
        className="modal import-dialog"
        role="dialog"
        aria-modal="true"
        aria-label={imp.phase === "ready" ? t("datasets.report") : t("datasets.importTitle", { file: imp.fileName })}
        onKeyDown={(e) => {
          if (e.key === "Escape" && imp.phase !== "committing") void cancelImport();
        }}
      >
        <header className="modal-head">
          <div className="eyebrow">{imp.phase === "ready" ? t("datasets.report") : t("datasets.import")}</div>
          <h2 className="mono-name">{imp.fileName}</h2>
        </header>

        {busy && (
          <>
            <Progress imp={imp} />
            <div className="row-actions end">
              <button type="button" className="secondary" onClick={() => void cancelImport()}>
                {t("datasets.cancelImport")}
              </button>
            </div>
          </>
        )}

        {imp.phase === "failed" && (
          <>
            <div className="open-error" role="alert">
              <IconAlert />
              <div>
                <strong>{t("datasets.importFailed")}</strong>
                <div>{imp.error}</div>
              </div>
            </div>
            <div className="row-actions end">
              <button type="button" className="secondary" onClick={() => void cancelImport()}>
                {t("datasets.close")}
              </button>
            </div>
          </>
        )}

        {(imp.phase === "ready" || imp.phase === "committing") && report && (
          <>
            <dl className="report-stats">
              <div>
                <dt>{t("datasets.reportRecords")}</dt>
                <dd>{formatCount(report.records)}</dd>
              </div>
              <div className="ok">
                <dt>{t("datasets.reportValid")}</dt>
                <dd>{formatCount(report.valid)}</dd>
              </div>
              <div className={report.rejectedCount ? "bad" : ""}>
                <dt>{t("datasets.reportRejected")}</dt>
                <dd>{formatCount(report.rejectedCount)}</dd>
              </div>
              <div>
                <dt>{t("datasets.reportFormats")}</dt>
                <dd className="formats">
                  {(["messages", "conversations", "instruction"] as const)
                    .filter((f) => report.formats[f] > 0)
                    .map((f) => (
                      <span key={f} className="tag">
                        {f} {formatCount(report.formats[f])}
                      </span>
                    ))}
                </dd>
              </div>
            </dl>
            <p className="muted small-text">
              {formatBytes(report.totalBytes)} · {t(`datasets.reportContainer.${report.container}` as const)}
            </p>
            {report.rejected.length > 0 ? (
              <section className="bad-section">
                <h3>{t("datasets.badLines")}</h3>
                <BadLines lines={report.rejected} />
                {report.rejectedCount > report.rejected.length && (
                  <p className="muted small-text">{t("datasets.badLinesMore", { shown: formatCount(report.rejected.length), total: formatCount(report.rejectedCount) })}</p>
                )}
              </section>
            ) : (
              <p className="all-valid">{t("datasets.allValid")}</p>
            )}
            <div className="field">
              <label htmlFor="import-name">{t("datasets.nameField")}</label>
              <input id="import-name" value={imp.name} maxLength={200} onChange={(e) => setImportName(e.target.value)} disabled={imp.phase === "committing"} />
            </div>
            {imp.phase === "committing" ? (
              <div className="progress" role="status">
                <div className="progress-label">
                  <span>{t("datasets.committing", { n: formatCount(report.valid) })}</span>
                </div>
                <div className="bar">
                  <span className="indeterminate" />
                </div>
              </div>
            ) : null}
            <div className="row-actions end">
              <button type="button" className="secondary" onClick={() => void cancelImport()}>
                {t("datasets.importNothing")}
              </button>
              <button type="button" className="primary" disabled={report.valid === 0 || imp.phase === "committing"} onClick={() => void commitImport()}>
                {t("datasets.importValid", { n: formatCount(report.valid) })}
              </button>
            </div>
          </>
        )}
      </div>
    </div>
  );
}
