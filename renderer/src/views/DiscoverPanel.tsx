// Models → Discover: the curated catalogue with fit badges (bf16/int8/int4 for this machine at the chosen context),
// hub search, downloads with progress/pause/resume/cancel, the access token a gated model asks for, the source
// (Hugging Face, a mirror, ModelScope), and "Open in chat" once a model is downloaded.
import { useEffect, useState } from "react";
import type { CatalogEntry, DownloadProgress, FitEstimate, HubSource, RepoDetails } from "../api/types.js";
import { ErrorText } from "../components/ErrorText.js";
import { IconAlert } from "../components/icons.js";
import { useT, type T } from "../hooks.js";
import type { MessageKey } from "../i18n/index.js";
import { CONTEXT_CHOICES, downloadId, uncheckedFiles, useLibrary } from "../stores/library.js";
import { folderName, formatBytes, formatParams, useModels } from "../stores/models.js";

function formatEta(s: number | null): string {
  if (s === null) return "—";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}` : `${m}:${String(sec).padStart(2, "0")}`;
}

function FitBadges({ fit }: { fit: FitEstimate }) {
  const t = useT();
  return (
    <ul className="fit-badges" aria-label={t("library.contextTitle")}>
      {fit.fits.map((f) => {
        const verdict = t(f.verdict === "fits" ? "library.fits" : f.verdict === "tight" ? "library.tight" : "library.no");
        return (
          <li
            key={f.precision}
            className={`fit fit-${f.verdict}`}
            aria-label={t("library.fitLabel", { precision: f.precision, verdict })}
            title={t("library.fitTitle", {
              precision: f.precision,
              need: formatBytes(f.totalBytes),
              weights: formatBytes(f.weightBytes),
              kv: formatBytes(f.kvBytes),
              verdict,
              device: f.device.toUpperCase(),
            })}
          >
            <span className="mono">{f.precision}</span> {verdict}
          </li>
        );
      })}
    </ul>
  );
}

/** Download / progress / Open in chat for one repo, wherever it is listed. */
function RepoAction({ repo, name, source, localDir }: { repo: string; name: string; source?: HubSource; localDir: string | null }) {
  const t = useT();
  const d = useLibrary((s) => s.downloads[downloadId(repo)]);
  const { download, openInChat } = useLibrary.getState();
  const dir = localDir ?? (d?.state === "done" ? d.dir : null);
  if (dir) {
    return (
      <button type="button" className="primary" aria-label={t("library.openInChatNamed", { name })} onClick={() => void openInChat(dir)}>
        {t("library.openInChat")}
      </button>
    );
  }
  if (d && d.state !== "cancelled" && d.state !== "done") return <span className="muted small-text">{t(`library.state.${d.state}` as MessageKey)}</span>;
  return (
    <button type="button" className="secondary" aria-label={t("library.downloadNamed", { name })} onClick={() => void download(repo, source)}>
      {t("library.download")}
    </button>
  );
}

function CatalogCard({ m, source }: { m: CatalogEntry; source: HubSource }) {
  const t = useT();
  const repo = source === "modelscope" && m.modelscope ? m.modelscope : m.hf;
  return (
    <li className="lib-item">
      <div className="lib-main">
        <div className="lib-name">
          <strong>{m.name}</strong> <span className="muted small-text">{m.family}</span>
        </div>
        <div className="muted small-text mono">{repo}</div>
        <div className="small-text">
          {t("library.params", { total: formatParams(m.fit.paramsTotal), active: formatParams(m.fit.paramsActive) })} · {t("library.downloadSize", { size: formatBytes(m.downloadBytes) })}
        </div>
        <FitBadges fit={m.fit} />
      </div>
      <RepoAction repo={repo} name={m.name} source={source === "modelscope" && m.modelscope ? "modelscope" : "hf"} localDir={m.localDir} />
    </li>
  );
}

function DownloadRow({ d, t }: { d: DownloadProgress; t: T }) {
  const { pause, resume, cancel, dismiss } = useLibrary.getState();
  const unchecked = uncheckedFiles(d);
  const pct = d.totalBytes > 0 ? Math.floor((d.doneBytes / d.totalBytes) * 100) : 0;
  const i = d.files.findIndex((f) => f.state === "downloading" || f.state === "verifying");
  return (
    <li className="lib-download">
      <div className="progress-label">
        <span>
          <strong>{d.repo}</strong> · {t(`library.state.${d.state}` as MessageKey)}
        </span>
        <span>{pct}%</span>
      </div>
      <div className="bar" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct} aria-label={t("library.progressLabel", { name: d.repo })}>
        <span style={{ width: `${pct}%` }} />
      </div>
      <div className="muted small-text">
        {t("library.progress", { done: formatBytes(d.doneBytes), total: formatBytes(d.totalBytes) })}
        {d.state === "downloading" && ` · ${t("library.speed", { speed: formatBytes(d.bytesPerSecond), eta: formatEta(d.etaSeconds) })}`}
        {i >= 0 && d.state === "downloading" && ` · ${t("library.file", { n: i + 1, count: d.files.length, name: d.files[i].path })}`}
      </div>
      {unchecked.length > 0 && (
        <p className="small-text unchecked" role="note">
          <IconAlert /> {t("library.unchecked", { files: unchecked.join(", ") })}
        </p>
      )}
      {d.error && (
        <div className="open-error" role="alert">
          <IconAlert />
          <div>
            {/* the user's language first; the hub's exact words (which file, which host) under it */}
            {d.errorKind ? t(`library.error.${d.errorKind}` as MessageKey) : null}
            <span className="error-detail">{d.error}</span>
          </div>
        </div>
      )}
      <div className="row-actions">
        {d.state === "downloading" && (
          <button type="button" className="ghost" aria-label={t("library.pauseNamed", { name: d.repo })} onClick={() => void pause(d.id)}>
            {t("library.pause")}
          </button>
        )}
        {(d.state === "paused" || d.state === "interrupted" || d.state === "error") && (
          <button type="button" className="secondary" aria-label={t("library.resumeNamed", { name: d.repo })} onClick={() => void resume(d.id)}>
            {t("library.resume")}
          </button>
        )}
        {d.state !== "done" && (
          <button type="button" className="ghost" aria-label={t("library.cancelNamed", { name: d.repo })} onClick={() => void cancel(d.id)}>
            {t("library.cancel")}
          </button>
        )}
        {d.state === "done" && (
          <button type="button" className="ghost" aria-label={t("library.dismissNamed", { name: d.repo })} onClick={() => dismiss(d.id)}>
            {t("library.dismiss")}
          </button>
        )}
      </div>
    </li>
  );
}

/** Live numbers of a search result: asked for on request (one listing + config.json from the hub). */
function SearchDetails({ repo, d }: { repo: string; d: RepoDetails | { error: string } | undefined }) {
  const t = useT();
  if (!d) {
    return (
      <div>
        <button type="button" className="ghost" aria-label={t("library.checkFitNamed", { name: repo })} onClick={() => void useLibrary.getState().inspect(repo)}>
          {t("library.checkFit")}
        </button>
      </div>
    );
  }
  if ("error" in d) return <div className="muted small-text"><ErrorText error={d.error} /></div>;
  return (
    <>
      <div className="small-text">
        {t("library.params", { total: formatParams(d.fit.paramsTotal), active: formatParams(d.fit.paramsActive) })} · {t("library.downloadSize", { size: formatBytes(d.downloadBytes) })}
      </div>
      <FitBadges fit={d.fit} />
    </>
  );
}

function TokenForm({ retry }: { retry: boolean }) {
  const t = useT();
  const [token, setToken] = useState("");
  return (
    <form
      className="open-row"
      onSubmit={(e) => {
        e.preventDefault();
        if (token.trim()) void useLibrary.getState().setToken(token.trim());
        setToken("");
      }}
    >
      <input type="password" className="mono grow" aria-label={t("library.token")} placeholder={t("library.tokenPlaceholder")} value={token} autoComplete="off" spellCheck={false} onChange={(e) => setToken(e.target.value)} />
      <button type="submit" className="primary" disabled={!token.trim()}>
        {retry ? t("library.tokenSave") : t("library.tokenSaveOnly")}
      </button>
    </form>
  );
}

function SourceForm() {
  const t = useT();
  const status = useLibrary((s) => s.status);
  const requireChecksums = useLibrary((s) => s.requireChecksums);
  const [source, setSource] = useState<HubSource>(status?.source ?? "hf");
  const [endpoint, setEndpoint] = useState("");
  useEffect(() => {
    if (status) setSource(status.source);
  }, [status?.source]);
  if (!status) return null;
  return (
    <section className="card" aria-label={t("library.sourceTitle")}>
      <form
        className="open-row"
        onSubmit={(e) => {
          e.preventDefault();
          void useLibrary.getState().setSource(source, endpoint);
        }}
      >
        <label className="small-text">
          {t("library.source")}{" "}
          <select value={source} onChange={(e) => setSource(e.target.value as HubSource)}>
            <option value="hf">{t("library.sourceHf")}</option>
            <option value="modelscope">{t("library.sourceModelscope")}</option>
          </select>
        </label>
        <input className="mono grow" aria-label={t("library.endpoint")} placeholder={t("library.endpointPlaceholder")} value={endpoint} spellCheck={false} onChange={(e) => setEndpoint(e.target.value)} />
        <button type="submit" className="secondary">
          {t("library.saveSource")}
        </button>
      </form>
      <p className="muted small-text">{t("library.using", { endpoint: status.endpoint })}</p>
      <label className="small-text" title={t("library.requireChecksumsTitle")}>
        <input type="checkbox" checked={requireChecksums} onChange={(e) => useLibrary.getState().setRequireChecksums(e.target.checked)} /> {t("library.requireChecksums")}
      </label>
      <p className="muted small-text">
        {status.hasToken ? t("library.tokenSet", { where: t(`library.where.${status.tokenStorage}` as MessageKey) }) : t("library.tokenNotSet")}{" "}
        {status.hasToken && (
          <button type="button" className="ghost" onClick={() => void useLibrary.getState().setToken(null)}>
            {t("library.tokenClear")}
          </button>
        )}
      </p>
      {!status.hasToken && <TokenForm retry={false} />}
    </section>
  );
}

export function DiscoverPanel() {
  const t = useT();
  const { status, machine, catalog, downloads, query, results, searching, searchError, tokenFor, contextLength, details } = useLibrary();
  const openError = useModels((s) => s.openError);
  const opening = useModels((s) => s.opening);
  useEffect(() => {
    void useLibrary.getState().load();
  }, []);
  // a finished download stays listed when some of its files could only be size-checked: the user should know
  const active = Object.values(downloads).filter((d) => d.state !== "cancelled" && (d.state !== "done" || uncheckedFiles(d).length > 0));
  const source = status?.source ?? "hf";

  return (
    <div className="discover">
      <header className="page-head">
        <h2>{t("library.title")}</h2>
        {status && <p className="muted">{t("library.subtitle", { dir: status.modelsDir })}</p>}
        {machine && (
          <p className="small-text">
            {t("library.machine", {
              ram: formatBytes(machine.totalRamBytes),
              free: formatBytes(machine.freeRamBytes),
              gpu: machine.vramBytes > 0 ? t("library.gpu", { vram: formatBytes(machine.vramBytes) }) : t("library.noGpu"),
            })}{" "}
            <label title={t("library.contextTitle")}>
              {t("library.context")}{" "}
              <select value={contextLength} onChange={(e) => void useLibrary.getState().setContext(Number(e.target.value))}>
                {CONTEXT_CHOICES.map((n) => (
                  <option key={n} value={n}>
                    {n.toLocaleString()}
                  </option>
                ))}
              </select>
            </label>
          </p>
        )}
      </header>

      {opening && <p className="muted" role="status">{t("models.loading", { name: folderName(opening) })}</p>}
      {openError && !opening && (
        <div className="open-error" role="alert">
          <IconAlert />
          <div>
            <ErrorText error={openError.message} code="engine" />
          </div>
        </div>
      )}

      {active.length > 0 && (
        <section className="card" aria-label={t("library.downloads")}>
          <h3>{t("library.downloads")}</h3>
          <ul className="lib-downloads">
            {active.map((d) => (
              <DownloadRow key={d.id} d={d} t={t} />
            ))}
          </ul>
          {tokenFor && downloads[tokenFor]?.errorKind === "gated" && (
            <div>
              <p>{t("library.tokenNeeded")}</p>
              <TokenForm retry />
            </div>
          )}
        </section>
      )}

      <section className="card">
        <form
          className="open-row"
          role="search"
          onSubmit={(e) => {
            e.preventDefault();
            void useLibrary.getState().search();
          }}
        >
          <input className="grow" aria-label={t("library.searchLabel")} placeholder={t("library.searchPlaceholder")} value={query} spellCheck={false} onChange={(e) => useLibrary.getState().setQuery(e.target.value)} />
          <button type="submit" className="secondary" disabled={!query.trim() || searching}>
            {searching ? t("library.searching") : t("library.search")}
          </button>
        </form>
        {searchError && <p className="muted small-text">{t("library.searchOffline", { message: searchError })}</p>}
        {results && results.length === 0 && <p className="muted">{t("library.noResults", { q: query })}</p>}
        {results && results.length > 0 && (
          <ul className="lib-list" aria-label={t("library.search")}>
            {results.map((r) => (
              <li key={r.repo} className="lib-item">
                <div className="lib-main">
                  <div className="lib-name">
                    <strong className="mono">{r.repo}</strong> {r.gated && <span className="badge warn">{t("library.gated")}</span>}
                  </div>
                  <div className="muted small-text">
                    {r.modelType} · ↓ {r.downloads.toLocaleString()} · ♥ {r.likes.toLocaleString()}
                  </div>
                  <SearchDetails repo={r.repo} d={details[r.repo]} />
                </div>
                <RepoAction repo={r.repo} name={r.repo} localDir={r.localDir} />
              </li>
            ))}
          </ul>
        )}
      </section>

      <section>
        <h3>{t("library.catalog")}</h3>
        <p className="muted small-text">{t("library.catalogNote")}</p>
        <ul className="lib-list" aria-label={t("library.catalog")}>
          {catalog.map((m) => (
            <CatalogCard key={m.id} m={m} source={source} />
          ))}
        </ul>
      </section>

      <SourceForm />
    </div>
  );
}
