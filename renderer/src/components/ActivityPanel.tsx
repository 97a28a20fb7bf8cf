// The one place every long task shows: an indicator in the navigation rail (the number of running jobs) that opens
// a panel listing every job the main process knows — progress, its latest line or error, and what can be done with
// it now (Pause / Resume / Cancel / Retry / Remove, as its status and kind allow). The views show their own jobs too;
// all of them read the same jobs store.
import { useEffect, useState } from "react";
import type { Job } from "../api/types.js";
import { useT } from "../hooks.js";
import { isActive, jobTitle, percent, runningCount, sortedJobs, useJobs } from "../stores/jobs.js";

function JobRow({ job }: { job: Job }) {
  const t = useT();
  const { pause, resume, cancel, retry, remove } = useJobs.getState();
  const pct = percent(job);
  const title = jobTitle(job, t);
  const active = isActive(job);
  const canRetry = job.status === "failed" || job.status === "cancelled" || job.status === "interrupted";
  return (
    <li className={`job-row status-${job.status}`} aria-label={title}>
      <div className="job-head">
        <span className="job-title">{title}</span>
        <span className="job-status">{t(`jobs.status.${job.status}` as const)}</span>
      </div>
      {(active || job.status === "paused" || job.status === "interrupted") && (
        <div className="bar" role="progressbar" aria-label={t("jobs.progress", { name: title })} aria-valuemin={0} aria-valuemax={100} {...(pct === null ? {} : { "aria-valuenow": pct })}>
          <span className={pct === null && active ? "indeterminate" : undefined} style={pct === null ? undefined : { width: `${pct}%` }} />
        </div>
      )}
      {job.status === "failed" && job.error ? (
        <p className="job-error" role="alert">
          {job.error}
        </p>
      ) : (
        // a finished job's last line was about its work in progress ("comparing…"); its status says the rest
        job.message && job.status !== "done" && <p className="job-message muted small-text">{job.message}</p>
      )}
      <div className="job-actions">
        {job.status === "running" && job.canPause && (
          <button type="button" className="secondary" onClick={() => void pause(job.id)}>
            {t("jobs.pause")}
          </button>
        )}
        {job.canResume && (job.status === "paused" || job.status === "interrupted") && (
          <button type="button" className="secondary" onClick={() => void resume(job.id)}>
            {t("jobs.resume")}
          </button>
        )}
        {(active || job.status === "paused") && (
          <button type="button" className="secondary" onClick={() => void cancel(job.id)}>
            {t("jobs.cancel")}
          </button>
        )}
        {canRetry && (
          <button type="button" className="secondary" onClick={() => void retry(job.id)}>
            {t("jobs.retry")}
          </button>
        )}
        {!active && (
          <button type="button" className="ghost" onClick={() => void remove(job.id)}>
            {t("jobs.remove")}
          </button>
        )}
      </div>
    </li>
  );
}

export function ActivityPanel({ onClose }: { onClose: () => void }) {
  const t = useT();
  const all = useJobs((s) => s.jobs);
  const error = useJobs((s) => s.error);
  // newest first: what was just started is on top
  const jobs = sortedJobs(all).reverse();
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && onClose();
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);
  return (
    <section className="activity-panel card" role="dialog" aria-label={t("jobs.activity")}>
      <div className="card-head">
        <h2>{t("jobs.activity")}</h2>
        <button type="button" className="ghost" onClick={onClose}>
          {t("jobs.close")}
        </button>
      </div>
      {error && (
        <p className="job-error" role="alert">
          {error}
        </p>
      )}
      {jobs.length === 0 ? (
        <p className="muted">{t("jobs.empty")}</p>
      ) : (
        <ul className="job-list" aria-label={t("jobs.list")}>
          {jobs.map((j) => (
            <JobRow key={j.id} job={j} />
          ))}
        </ul>
      )}
    </section>
  );
}

/** The rail's activity button: the number of running jobs; opens the panel. */
export function ActivityIndicator() {
  const t = useT();
  const [open, setOpen] = useState(false);
  const running = useJobs((s) => runningCount(s.jobs));
  const loaded = useJobs((s) => s.loaded);
  useEffect(() => {
    if (!loaded) void useJobs.getState().load();
  }, [loaded]);
  return (
    <>
      <button
        type="button"
        className={`rail-item activity-button${open ? " active" : ""}`}
        aria-label={t("jobs.activity")}
        aria-expanded={open}
        aria-haspopup="dialog"
        title={running > 0 ? t("jobs.running", { n: running }) : t("jobs.activity")}
        onClick={() => setOpen(!open)}
      >
        <svg width={18} height={18} viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth={1.8} strokeLinecap="round" strokeLinejoin="round" aria-hidden="true" focusable="false">
          <path d="M3 12h4l3 8 4-16 3 8h4" />
        </svg>
        <span>{t("jobs.activity")}</span>
        {running > 0 && (
          <span className="activity-count" data-testid="activity-count">
            {running}
          </span>
        )}
      </button>
      {open && <ActivityPanel onClose={() => setOpen(false)} />}
    </>
  );
}
