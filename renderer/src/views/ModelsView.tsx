// Models: open a folder (dialog in Electron, a path field in the browser, or drop it anywhere), recent models,
// the loaded model's card, load progress, and a clear message when a folder is not a loadable model; and what the
// models folder holds (downloads, finetune exports, quantized models and GGUF files) with where each came from.
import { EndpointsCard } from "../components/EndpointsCard.js";
import { ExportImportedMerged, ImportAdapterForm } from "../components/ImportAdapterForm.js";
import { useEffect, useState } from "react";
import type { ModelCard } from "../api/types.js";
import { api } from "../api/index.js";
import { ErrorText } from "../components/ErrorText.js";
import { IconAlert, IconFolder, IconX } from "../components/icons.js";
import { QuantizePanel } from "../components/QuantizePanel.js";
import { ModelRoutingPanel } from "../components/routing/RoutingPanels.js";
import { useT } from "../hooks.js";
import { folderName, formatBytes, formatParams, useModels } from "../stores/models.js";
import { adapterBase, originLine, useLibrary } from "../stores/library.js";
import { useUi } from "../stores/ui.js";
import { DiscoverPanel } from "./DiscoverPanel.js";

function Card({ card }: { card: ModelCard }) {
  const t = useT();
  const [quantizing, setQuantizing] = useState(false);
  const [routing, setRouting] = useState(false);
  const experts =
    card.numExperts > 0
      ? card.numSharedExperts > 0
        ? t("card.expertsShared", { n: card.numExperts, k: card.topK, s: card.numSharedExperts })
        : t("card.expertsValue", { n: card.numExperts, k: card.topK })
      : t("card.dense");
  /** label, value, and an optional tooltip that says what the value counts */
  const rows: [string, string, string?][] = [
    [t("card.architecture"), `${card.architecture} (${card.modelType})`],
    [t("card.parameters"), `${formatParams(card.paramsTotal)} / ${formatParams(card.paramsActive)}`],
    [t("card.experts"), experts],
    [t("card.layers"), String(card.numLayers)],
    [
      t("card.context"),
      card.sessionContextLength < card.contextLength
        ? t("card.contextValue", { n: card.sessionContextLength.toLocaleString(), max: card.contextLength.toLocaleString() })
        : card.sessionContextLength.toLocaleString(),
    ],
    [t("card.dtype"), card.dtype],
    [t("card.memory"), formatBytes(card.estimatedMemoryBytes), t("card.memoryTitle", { n: card.sessionContextLength.toLocaleString() })],
    [t("card.kvCache"), card.kvCache ?? "f32", t("card.kvCacheTitle")],
    [t("card.device"), card.device.toUpperCase()],
    [t("card.threads"), String(card.threads)],
    [t("card.chatTemplate"), card.hasChatTemplate ? t("card.yes") : t("card.no")],
  ];
  return (
    <section className="card model-card" aria-label={t("models.current")}>
      <div className="card-head">
        <div>
          <div className="eyebrow">{t("models.current")}</div>
          <h2>{card.name}</h2>
          <div className="muted mono small-text" title={card.dir}>
            {card.dir}
          </div>
        </div>
        <span className="badge ok">{t("models.loaded")}</span>
      </div>
      <dl className="facts">
        {rows.map(([k, v, title]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd title={title}>{v}</dd>
          </div>
        ))}
      </dl>
      <div className="card-actions">
        <button type="button" className="primary" onClick={() => useUi.getState().setView("chat")}>
          {t("card.goChat")}
        </button>
        <button type="button" className="secondary" aria-expanded={quantizing} onClick={() => setQuantizing((q) => !q)}>
          {t("quantize.action")}
        </button>
      </div>
      {quantizing && <QuantizePanel card={card} onClose={() => setQuantizing(false)} />}
      {card.numExperts > 0 && (
        <details className="model-routing-details" onToggle={(e) => setRouting((e.target as HTMLDetailsElement).open)}>
          <summary>{t("routing.modelTitle")}</summary>
          {routing && <ModelRoutingPanel refreshKey={card.dir} />}
        </details>
      )}
    </section>
  );
}

/** Models → Local: "In your models folder", each entry with its kind, size, origin and Open in chat. */
function LocalModels({ busy }: { busy: boolean }) {
  const t = useT();
  const local = useLibrary((s) => s.local);
  const error = useLibrary((s) => s.localError);
  const status = useLibrary((s) => s.status);
  const current = useModels((s) => s.status.model?.dir ?? null);
  const { loadLocal, openLocal } = useLibrary.getState();
  useEffect(() => {
    void loadLocal();
    // the folder it names (library.status): loaded once, the Discover tab keeps it fresh
    if (!useLibrary.getState().status) void api().call("library.status", {}).then((st) => useLibrary.setState({ status: st }), () => undefined);
  }, [loadLocal]);
  return (
    <section className="recent local-models" aria-label={t("models.local.title")}>
      <div className="local-head">
        <h2>{t("models.local.title")}</h2>
        <button type="button" className="ghost" onClick={() => void loadLocal()}>
          {t("models.local.refresh")}
        </button>
      </div>
      {status && <p className="muted small-text">{t("models.local.hint", { dir: status.modelsDir })}</p>}
      {error && (
        <div className="open-error" role="alert">
          <IconAlert />
          <div className="open-error-text">{error}</div>
        </div>
      )}
      {local && local.length === 0 && <p className="muted">{t("models.local.empty")}</p>}
      {local && local.length > 0 && (
        <ul className="recent-list local-list">
          {local.map((e) => {
            const origin = originLine(e, t);
            const canOpen = e.kind === "model" || (e.kind === "adapter" && adapterBase(e) !== null);
            return (
              <li key={e.path} className={current === e.path ? "current" : ""}>
                <div className="local-entry">
                  <span className="recent-name">
                    {e.name} <span className="badge kind">{t(`models.local.kind.${e.kind}`)}</span>
                  </span>
                  <span className="muted small-text">
                    {[formatBytes(e.sizeBytes), e.kind === "model" ? e.architecture : null, origin].filter(Boolean).join(" · ")}
                  </span>
                  {e.kind === "gguf" && <span className="muted small-text">{t("models.local.ggufNote")}</span>}
                </div>
                <ExportImportedMerged entry={e} />
                {canOpen && (
                  <button type="button" className="secondary" aria-label={t("models.local.openNamed", { name: e.name })} disabled={busy} onClick={() => void openLocal(e)}>
                    {t("models.local.open")}
                  </button>
                )}
              </li>
            );
          })}
        </ul>
      )}
      <ImportAdapterForm />
    </section>
  );
}

export function ModelsView() {
  const t = useT();
  const status = useModels((s) => s.status);
  const progress = useModels((s) => s.progress);
  const recent = useModels((s) => s.recent);
  const info = useModels((s) => s.info);
  const openError = useModels((s) => s.openError);
  const opening = useModels((s) => s.opening);
  const { open, pickFolder, forget } = useModels.getState();
  const [path, setPath] = useState("");
  const [tab, setTab] = useState<"local" | "discover">("local");
  const canPick = info?.canPickFolder ?? false;
  const loadingDir = opening ?? (status.state === "loading" ? status.dir : null);
  const pct = progress && progress.total > 0 ? Math.round((progress.done / progress.total) * 100) : null;

  return (
    <div className="page">
      <div className="page-inner">
        <header className="page-head">
          <h1>{t("models.title")}</h1>
          <p className="muted">{t("models.subtitle")}</p>
          <div className="tabs" role="tablist" aria-label={t("library.tabs")}>
            {(["local", "discover"] as const).map((k) => (
              <button key={k} type="button" role="tab" aria-selected={tab === k} className={tab === k ? "active" : ""} onClick={() => setTab(k)}>
                {t(k === "local" ? "library.tabLocal" : "library.tabDiscover")}
              </button>
            ))}
          </div>
        </header>
        {tab === "discover" ? <DiscoverPanel /> : <>

        <section className="card open-card">
          {canPick && (
            <div className="open-row">
              <button type="button" className="primary" onClick={() => void pickFolder()} disabled={!!loadingDir}>
                <IconFolder />
                <span>{t("models.openFolder")}</span>
              </button>
              <span className="muted">{t("models.dropHint")}</span>
            </div>
          )}
          <form
            className="open-row"
            onSubmit={(e) => {
              e.preventDefault();
              void open(path);
            }}
          >
            <label htmlFor="model-path" className="sr-only">
              {t("models.pathLabel")}
            </label>
            <input id="model-path" className="mono grow" aria-label={t("models.pathLabel")} placeholder={t("models.pathPlaceholder")} value={path} spellCheck={false} autoComplete="off" onChange={(e) => setPath(e.target.value)} />
            <button type="submit" className={canPick ? "secondary" : "primary"} disabled={!path.trim() || !!loadingDir}>
              {t("models.open")}
            </button>
          </form>
          {!canPick && <p className="muted small-text">{t("models.dropHintWeb")}</p>}

          {loadingDir && (
            <div className="progress" role="status">
              <div className="progress-label">
                <span>{t("models.loading", { name: folderName(loadingDir) })}</span>
                {pct !== null && <span>{pct}%</span>}
              </div>
              <div className="bar" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={pct ?? undefined} aria-label={t("models.loading", { name: folderName(loadingDir) })}>
                <span className={pct === null ? "indeterminate" : ""} style={pct === null ? undefined : { width: `${pct}%` }} />
              </div>
            </div>
          )}
          {openError && !loadingDir && (
            <div className="open-error" role="alert">
              <IconAlert />
              <div>
                <strong>{t("models.notLoadable")}</strong>
                <div className="open-error-text">
                  <ErrorText error={openError.message} code="engine" />
                </div>
              </div>
            </div>
          )}
        </section>

        {status.model ? <Card card={status.model} /> : !loadingDir && <p className="muted">{t("models.none")}</p>}

        <section className="recent">
          <h2>{t("models.recent")}</h2>
          {recent.length === 0 ? (
            <p className="muted">{t("models.noRecent")}</p>
          ) : (
            <ul className="recent-list">
              {recent.map((r) => (
                <li key={r.dir} className={status.model?.dir === r.dir ? "current" : ""}>
                  <button type="button" className="recent-open" aria-label={t("models.openNamed", { name: r.name })} onClick={() => void open(r.dir)} disabled={!!loadingDir}>
                    <span className="recent-name">{r.name}</span>
                    <span className="muted small-text">
                      {r.architecture ? `${r.architecture} · ` : ""}
                      <span className="mono">{r.dir}</span>
                    </span>
                  </button>
                  <button type="button" className="ghost icon" aria-label={t("models.forgetNamed", { name: r.name })} title={t("models.forget")} onClick={() => void forget(r.dir)}>
                    <IconX />
                  </button>
                </li>
              ))}
            </ul>
          )}
        </section>
        <LocalModels busy={!!loadingDir} />
        <EndpointsCard />
        </>}
      </div>
    </div>
  );
}
