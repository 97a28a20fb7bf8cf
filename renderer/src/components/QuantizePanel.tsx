// The model card's Quantize action: output kind (GGUF file for llama.cpp & co., or a quantized model folder for
// this engine), format, a name inside the app's models folder; progress with Cancel; then the comparison. A job of
// this model that an earlier run left unfinished (a crash, a forced quit) is listed as interrupted: Retry or Remove.
import { useEffect, useState } from "react";
import type { ModelCard } from "../api/types.js";
import { useT } from "../hooks.js";
import { jobsOf, jobTitle, percent, useJobs } from "../stores/jobs.js";
import { formatBytes, useModels } from "../stores/models.js";
import { defaultName, formatName, QUANTIZE_KINDS, quantizeResult, useQuantize, type Format, type Target } from "../stores/quantize.js";
import { IconAlert } from "./icons.js";

const FORMATS: Record<Target, Format[]> = { gguf: ["f16", "q8_0", "q4_0", "q4_k"], model: ["q8_0", "q4_k", "q4_0"] };

function num(v: number | null, digits: number, unit = "") {
  return v === null ? "—" : `${v.toFixed(digits)}${unit}`;
}

export function QuantizePanel({ card, onClose }: { card: ModelCard; onClose: () => void }) {
  const t = useT();
  const jobId = useQuantize((s) => s.jobId);
  const folder = useQuantize((s) => s.folder);
  const error = useQuantize((s) => s.error);
  const starting = useQuantize((s) => s.starting);
  const all = useJobs((s) => s.jobs);
  const { start, load, clear, retry } = useQuantize.getState();
  const { cancel, remove } = useJobs.getState();
  // this model's quantize/export jobs; one runs at a time across the app (the service refuses a second)
  const mineAll = jobsOf(all, QUANTIZE_KINDS, card.dir);
  const interrupted = mineAll.filter((j) => j.status === "interrupted");
  const running = jobsOf(all, QUANTIZE_KINDS).find((j) => j.status === "running" || j.status === "pausing") ?? null;
  const job = (jobId ? all[jobId] : null) ?? running;
  const [target, setTarget] = useState<Target>("gguf");
  const [format, setFormat] = useState<Format>("q8_0");
  const [name, setName] = useState(defaultName(card.name, "q8_0"));
  const [edited, setEdited] = useState(false);
  useEffect(() => void load(), [load]);
  useEffect(() => {
    if (!edited) setName(defaultName(card.name, format));
  }, [card.name, format, edited]);

  const busy = running !== null;
  const mine = job !== null && job.subject === card.dir;
  const pct = job ? (percent(job) ?? 0) : 0;
  const r = mine ? quantizeResult(job) : null;
  // after the output is written the kind measures both models; its message says so
  const comparing = job !== null && job.status === "running" && job.message !== null;

  return (
    <section className="card quantize-panel" aria-label={t("quantize.title")}>
      <div className="card-head">
        <h2>{t("quantize.title")}</h2>
        <button type="button" className="ghost" onClick={onClose} disabled={busy}>
          {t("quantize.close")}
        </button>
      </div>
      <form
        className="quantize-form"
        onSubmit={(e) => {
          e.preventDefault();
          void start({ dir: card.dir, target, format, name: name.trim() });
        }}
      >
        <label>
          <span>{t("quantize.target")}</span>
          <select
            value={target}
            disabled={busy}
            onChange={(e) => {
              const v = e.target.value as Target;
              setTarget(v);
              if (!FORMATS[v].includes(format)) setFormat("q8_0");
            }}
          >
            <option value="gguf">{t("quantize.targetGguf")}</option>
            <option value="model">{t("quantize.targetModel")}</option>
          </select>
        </label>
        <label>
          <span>{t("quantize.format")}</span>
          <select value={format} disabled={busy} onChange={(e) => setFormat(e.target.value as Format)}>
            {FORMATS[target].map((f) => (
              <option key={f} value={f}>
                {t(`quantize.format.${f}` as const)}
              </option>
            ))}
          </select>
        </label>
        <label className="grow">
          <span>{t("quantize.name")}</span>
          <input
            className="mono"
            value={name}
            disabled={busy}
            spellCheck={false}
            autoComplete="off"
            onChange={(e) => {
              setEdited(true);
              setName(e.target.value);
            }}
          />
        </label>
        <button type="submit" className="primary" disabled={busy || starting || !name.trim()}>
          {t("quantize.start")}
        </button>
      </form>
      {folder && <p className="muted small-text">{t("quantize.folderHint", { dir: folder })}</p>}
      {interrupted.length > 0 && (
        <ul className="quantize-interrupted" aria-label={t("quantize.interruptedList")}>
          {interrupted.map((j) => {
            const name = jobTitle(j, t);
            return (
              <li key={j.id} className="open-error" role="status">
                <IconAlert />
                <div>
                  {t("quantize.interrupted", { name, pct: percent(j) ?? 0 })}{" "}
                  <button type="button" className="secondary" disabled={busy || starting} aria-label={t("quantize.retryNamed", { name })} onClick={() => void retry(j.id)}>
                    {t("quantize.retry")}
                  </button>{" "}
                  <button type="button" className="ghost" aria-label={t("quantize.removeNamed", { name })} onClick={() => void remove(j.id)}>
                    {t("quantize.remove")}
                  </button>
                </div>
              </li>
            );
          })}
        </ul>
      )}
      {error && (
        <div className="open-error" role="alert">
          <IconAlert />
          <div>{error}</div>
        </div>
      )}
      {mine && job && job.status === "running" && (
        <div className="progress" role="status">
          <div className="progress-label">
            <span>{comparing ? t("quantize.comparing") : t("quantize.running")}</span>
            <span>{pct}%</span>
          </div>
          <div className="bar" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct} aria-label={t("quantize.progress")}>
            <span style={{ width: `${pct}%` }} />
          </div>
          <button type="button" className="secondary" onClick={() => void cancel(job.id)}>
            {t("quantize.cancel")}
          </button>
        </div>
      )}
      {mine && job?.status === "cancelled" && <p role="status">{t("quantize.cancelled")}</p>}
      {mine && job?.status === "failed" && (
        <div className="open-error" role="alert">
          <IconAlert />
          <div>{job.error}</div>
        </div>
      )}
      {r && job && (
        <div className="quantize-result" role="status">
          <p>
            {t("quantize.done", { path: r.output })}{" "}
            {r.target === "model" && (
              <button type="button" className="secondary" onClick={() => void useModels.getState().open(r.output)}>
                {t("quantize.openResult")}
              </button>
            )}{" "}
            <button type="button" className="ghost" onClick={clear}>
              {t("quantize.again")}
            </button>
          </p>
          <table className="compare" aria-label={t("quantize.comparison")}>
            <thead>
              <tr>
                <th />
                <th>{t("quantize.original")}</th>
                <th>{formatName(r.format)}</th>
              </tr>
            </thead>
            <tbody>
              <tr>
                <th>{t("quantize.size")}</th>
                <td>{formatBytes(r.source.fileBytes)}</td>
                <td>
                  {formatBytes(r.quantized.fileBytes)} ({((100 * r.quantized.fileBytes) / r.source.fileBytes).toFixed(0)}%)
                </td>
              </tr>
              <tr>
                <th>{t("quantize.memory")}</th>
                <td>{r.source.memoryBytes === null ? "—" : formatBytes(r.source.memoryBytes)}</td>
                <td>{r.quantized.memoryBytes === null ? "—" : formatBytes(r.quantized.memoryBytes)}</td>
              </tr>
              <tr>
                <th>{t("quantize.decode")}</th>
                <td>{num(r.source.decodeTokensPerSecond, 1)}</td>
                <td>{num(r.quantized.decodeTokensPerSecond, 1)}</td>
              </tr>
              <tr>
                <th>{t("quantize.accuracy")}</th>
                <td>—</td>
                <td>{r.klDivergence === null ? "—" : t("quantize.klTop1", { kl: r.klDivergence.toExponential(2), top1: ((r.top1Agreement ?? 0) * 100).toFixed(1) })}</td>
              </tr>
            </tbody>
          </table>
          {r.notes.map((n) => (
            <p key={n} className="muted small-text">
              {n}
            </p>
          ))}
        </div>
      )}
    </section>
  );
}
