// Datasets: the list on the left (Import dataset on top), the selected dataset's actions, filters and its samples
// table in the middle, the open sample's editor on the right; the import dialog over everything while a file is
// being imported. A .jsonl/.json file dropped anywhere on the window lands here (components/DropTarget.tsx).
import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import type { DatasetSummary } from "../api/types.js";
import { ImportDialog } from "../components/ImportDialog.js";
import { SampleEditor } from "../components/SampleEditor.js";
import { SamplesGrid } from "../components/SamplesGrid.js";
import { IconDatabase, IconDownload, IconEdit, IconLayers, IconPlus, IconSearch, IconSliders, IconSplit, IconTrash, IconUndo, IconUpload } from "../components/icons.js";
import { useT } from "../hooks.js";
import { formatCount, useDatasets } from "../stores/datasets.js";
import { useFinetune } from "../stores/finetune.js";
import { folderName, useModels } from "../stores/models.js";
import { useSamples } from "../stores/samples.js";

/** The Import dataset button and its hidden file input (the same File path as a drop). */
function ImportButton({ big = false }: { big?: boolean }) {
  const t = useT();
  const input = useRef<HTMLInputElement>(null);
  const busy = useDatasets((s) => s.import !== null && s.import.phase !== "failed");
  return (
    <>
      <button type="button" className={`primary${big ? "" : " import-btn"}`} disabled={busy} onClick={() => input.current?.click()}>
        <IconUpload />
        <span>{t("datasets.import")}</span>
      </button>
      <input
        ref={input}
        type="file"
        accept=".jsonl,.json,application/json"
        hidden
        tabIndex={-1}
        aria-label={t("datasets.import")}
        onChange={(e) => {
          const f = e.target.files?.[0];
          e.target.value = ""; // the same file can be picked again
          if (f) void useDatasets.getState().importFile(f);
        }}
      />
    </>
  );
}

function DatasetList() {
  const t = useT();
  const list = useDatasets((s) => s.list);
  const selectedId = useDatasets((s) => s.selectedId);
  const loaded = useDatasets((s) => s.loaded);
  return (
    <aside className="sidebar ds-sidebar">
      <ImportButton />
      <p className="muted small-text drop-hint">{t("datasets.dropHint")}</p>
      <nav aria-label={t("datasets.list")} className="conv-nav">
        <ul className="conv-list">
          {list.map((d) => (
            <li key={d.id} className={`conv${d.id === selectedId ? " current" : ""}`}>
              <button type="button" className="conv-open" aria-current={d.id === selectedId ? "true" : undefined} onClick={() => useDatasets.getState().select(d.id)} title={d.sourceFile ?? d.name}>
                <span className="conv-title">{d.name}</span>
                <span className="conv-snippet">
                  {t("datasets.samplesN", { n: formatCount(d.sampleCount) })}
                  {d.problemCount > 0 ? ` · ${t("datasets.problemsN", { n: formatCount(d.problemCount) })}` : ""}
                </span>
              </button>
            </li>
          ))}
        </ul>
        {loaded && list.length === 0 && <p className="muted empty">{t("datasets.empty")}</p>}
      </nav>
    </aside>
  );
}

function SplitForm({ d, onDone }: { d: DatasetSummary; onDone(): void }) {
  const t = useT();
  const [pct, setPct] = useState("10");
  const [seed, setSeed] = useState("42");
  const ratio = Number(pct) / 100;
  const seedN = Number(seed);
  const valid = Number.isFinite(ratio) && ratio > 0 && ratio < 1 && Number.isInteger(seedN) && seedN >= 0 && seedN <= 0xffffffff;
  const nVal = valid ? Math.round(d.sampleCount * ratio) : 0;
  return (
    <form
      className="split-form"
      aria-label={t("datasets.splitTitle")}
      onSubmit={(e) => {
        e.preventDefault();
        if (valid) void useDatasets.getState().split(d.id, ratio, seedN).then((ok) => ok && onDone());
      }}
    >
      <div className="field">
        <label htmlFor="split-ratio">{t("datasets.splitRatio")}</label>
        <input id="split-ratio" type="number" min={1} max={99} step="any" value={pct} onChange={(e) => setPct(e.target.value)} />
      </div>
      <div className="field">
        <label htmlFor="split-seed">{t("datasets.splitSeed")}</label>
        <input id="split-seed" type="number" min={0} step={1} value={seed} onChange={(e) => setSeed(e.target.value)} />
      </div>
      <p className="muted small-text split-hint">
        {t("datasets.splitHint", { train: `${d.name} (train) · ${formatCount(d.sampleCount - nVal)}`, val: `${d.name} (validation) · ${formatCount(nVal)}` })}
      </p>
      <div className="row-actions">
        <button type="submit" className="primary small" disabled={!valid}>
          {t("datasets.splitRun")}
        </button>
        <button type="button" className="ghost small" onClick={onDone}>
          {t("datasets.cancel")}
        </button>
      </div>
    </form>
  );
}

function DatasetHeader({ d }: { d: DatasetSummary }) {
  const t = useT();
  const { rename, remove, dedupe, exportDataset } = useDatasets.getState();
  const [editing, setEditing] = useState(false);
  const [name, setName] = useState(d.name);
  const [confirming, setConfirming] = useState(false);
  const [splitting, setSplitting] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    setEditing(false);
    setConfirming(false);
    setSplitting(false);
    setName(d.name);
  }, [d.id, d.name]);
  useEffect(() => {
    if (editing) input.current?.select();
  }, [editing]);
  const commit = () => {
    setEditing(false);
    if (name.trim() && name.trim() !== d.name) void rename(d.id, name);
    else setName(d.name);
  };
  const onKey = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === "Enter") commit();
    if (e.key === "Escape") {
      setName(d.name);
      setEditing(false);
    }
  };

  return (
    <header className="ds-head">
      <div className="ds-title">
        {editing ? (
          <input ref={input} className="rename-title" aria-label={t("datasets.nameField")} value={name} maxLength={200} onChange={(e) => setName(e.target.value)} onBlur={commit} onKeyDown={onKey} />
        ) : (
          <h1 title={d.name}>{d.name}</h1>
        )}
        <div className="muted small-text ds-facts">
          <span>{t("datasets.samplesN", { n: formatCount(d.sampleCount) })}</span>
          {d.problemCount > 0 && <span className="warn-text">{t("datasets.problemsN", { n: formatCount(d.problemCount) })}</span>}
          {d.rejectedCount > 0 && <span>{t("datasets.rejectedN", { n: formatCount(d.rejectedCount) })}</span>}
          <span className="src" title={d.sourceFile ?? ""}>
            {d.sourceFile ? t("datasets.source", { file: folderName(d.sourceFile) }) : t("datasets.derived")}
          </span>
        </div>
      </div>
      <div className="ds-actions" role="toolbar" aria-label={t("datasets.actions")}>
        <button type="button" className="ghost small" aria-label={t("datasets.rename")} title={t("datasets.rename")} onClick={() => setEditing(true)}>
          <IconEdit />
        </button>
        <button type="button" className="ghost small" title={t("datasets.dedupeTitle")} onClick={() => void dedupe(d.id)}>
          <IconLayers />
          <span>{t("datasets.dedupe")}</span>
        </button>
        <button type="button" className={`ghost small${splitting ? " active" : ""}`} aria-expanded={splitting} title={t("datasets.splitTitle")} onClick={() => setSplitting(!splitting)}>
          <IconSplit />
          <span>{t("datasets.split")}</span>
        </button>
        <button type="button" className="ghost small" onClick={() => useFinetune.getState().pickDataset(d.id)}>
          <IconSliders />
          <span>{t("finetune.withDataset")}</span>
        </button>
        <button type="button" className="ghost small" onClick={() => void exportDataset(d.id)}>
          <IconDownload />
          <span>{t("datasets.export")}</span>
        </button>
        <button type="button" className="ghost small danger-text" aria-label={t("datasets.delete")} title={t("datasets.delete")} onClick={() => setConfirming(true)}>
          <IconTrash />
        </button>
      </div>
      {splitting && <SplitForm d={d} onDone={() => setSplitting(false)} />}
      {confirming && (
        <div className="confirm-bar" role="alertdialog" aria-label={t("datasets.deleteConfirm", { name: d.name, n: formatCount(d.sampleCount) })}>
          <p>{t("datasets.deleteConfirm", { name: d.name, n: formatCount(d.sampleCount) })}</p>
          <div className="row-actions">
            <button type="button" className="danger small" autoFocus onClick={() => void remove(d.id)}>
              {t("datasets.confirmDelete")}
            </button>
            <button type="button" className="ghost small" onClick={() => setConfirming(false)}>
              {t("datasets.cancel")}
            </button>
          </div>
        </div>
      )}
    </header>
  );
}

/** A number input that commits on blur or Enter (each commit re-queries); empty means "no value". */
function NumberInput({ id, label, value, onCommit, disabled, min = 0, placeholder }: { id?: string; label?: string; value: number | null; onCommit(v: number | null): void; disabled?: boolean; min?: number; placeholder?: string }) {
  const [text, setText] = useState(value === null ? "" : String(value));
  useEffect(() => setText(value === null ? "" : String(value)), [value]);
  const commit = () => {
    const v = text.trim() === "" ? null : Math.max(min, Math.floor(Number(text)));
    if (v !== null && !Number.isFinite(v)) return setText(value === null ? "" : String(value));
    if (v !== value) onCommit(v);
  };
  return (
    <input
      id={id}
      aria-label={label}
      type="number"
      min={min}
      step={1}
      value={text}
      placeholder={placeholder}
      disabled={disabled}
      onChange={(e) => setText(e.target.value)}
      onBlur={commit}
      onKeyDown={(e) => e.key === "Enter" && commit()}
    />
  );
}

function Toolbar({ d }: { d: DatasetSummary }) {
  const t = useT();
  const filters = useSamples((s) => s.filters);
  const tokenizer = useSamples((s) => s.tokenizer);
  const total = useSamples((s) => s.total);
  const job = useSamples((s) => s.tokenJob);
  const recent = useModels((s) => s.recent);
  const current = useModels((s) => s.status.model);
  const { setSearch, setFilters, setTokenizer, addSample, undo } = useSamples.getState();
  const models = new Map<string, string>();
  if (current) models.set(current.dir, current.name);
  for (const r of recent) if (!models.has(r.dir)) models.set(r.dir, r.name);
  if (tokenizer && !models.has(tokenizer.modelDir)) models.set(tokenizer.modelDir, folderName(tokenizer.modelDir));
  const defaultLen = Math.min(current?.contextLength ?? 4096, 4096);
  const undoLabel = d.undo ? t("datasets.undoWhat", { what: t(`datasets.undo.${d.undo}` as const) }) : t("datasets.undo");

  return (
    <div className="ds-toolbar">
      <div className="toolbar-row">
        <label className="search grow">
          <IconSearch />
          <input type="text" aria-label={t("datasets.search")} placeholder={t("datasets.search")} value={filters.search} onChange={(e) => setSearch(e.target.value)} />
        </label>
        <label className="check">
          <input type="checkbox" checked={filters.hasProblems} onChange={(e) => setFilters({ hasProblems: e.target.checked })} />
          <span>{t("datasets.hasProblems")}</span>
        </label>
        <button type="button" className="secondary small" onClick={() => void addSample()}>
          <IconPlus />
          <span>{t("datasets.addSample")}</span>
        </button>
        <button type="button" className="secondary small" aria-label={t("datasets.undo")} title={undoLabel} disabled={!d.undo} onClick={() => void undo()}>
          <IconUndo />
          <span>{t("datasets.undo")}</span>
        </button>
      </div>
      <div className="toolbar-row">
        <div className="field compact">
          <label htmlFor="ds-tokenizer">{t("datasets.tokenizer")}</label>
          <select
            id="ds-tokenizer"
            title={t("datasets.tokenizerHint")}
            value={tokenizer?.modelDir ?? ""}
            onChange={(e) => setTokenizer(e.target.value ? { modelDir: e.target.value, maxSeqLen: tokenizer?.maxSeqLen ?? defaultLen } : null)}
          >
            <option value="">{t("datasets.tokenizerNone")}</option>
            {[...models].map(([dir, name]) => (
              <option key={dir} value={dir}>
                {name}
              </option>
            ))}
          </select>
        </div>
        <div className="field compact">
          <label htmlFor="ds-maxlen">{t("datasets.maxSeqLen")}</label>
          <NumberInput id="ds-maxlen" value={tokenizer?.maxSeqLen ?? null} min={1} disabled={!tokenizer} onCommit={(v) => tokenizer && v && setTokenizer({ ...tokenizer, maxSeqLen: v })} />
        </div>
        <div className="field compact" role="group" aria-labelledby="ds-range-label">
          <span id="ds-range-label" className="field-label">{t("datasets.tokenRange")}</span>
          <div className="range">
            <NumberInput label={t("datasets.minTokens")} placeholder={t("datasets.min")} value={filters.minTokens} disabled={!tokenizer} onCommit={(v) => setFilters({ minTokens: v })} />
            <span className="muted">–</span>
            <NumberInput label={t("datasets.maxTokens")} placeholder={t("datasets.max")} value={filters.maxTokens} disabled={!tokenizer} onCommit={(v) => setFilters({ maxTokens: v })} />
          </div>
        </div>
        <span className="muted small-text shown" aria-live="polite">
          {total !== null ? t("datasets.shownOf", { shown: formatCount(total), total: formatCount(d.sampleCount) }) : ""}
        </span>
      </div>
      {job && job.state === "running" && (
        <div className="count-progress" role="status">
          <span className="small-text muted">{t("datasets.counting", { done: formatCount(job.done), total: formatCount(job.total) })}</span>
          <div className="bar" role="progressbar" aria-label={t("datasets.counting", { done: job.done, total: job.total })} aria-valuemin={0} aria-valuemax={job.total} aria-valuenow={job.done}>
            <span style={{ width: `${job.total ? (job.done / job.total) * 100 : 0}%` }} />
          </div>
        </div>
      )}
      {job && job.state === "failed" && (
        <div className="field-error" role="alert">
          {t("datasets.countFailed", { message: job.error ?? "" })}
        </div>
      )}
    </div>
  );
}

function Empty() {
  const t = useT();
  return (
    <div className="ds-empty">
      <div className="drop-card">
        <IconDatabase />
        <h2>{t("datasets.emptyTitle")}</h2>
        <p className="muted">{t("datasets.emptyBody")}</p>
        <ImportButton big />
      </div>
    </div>
  );
}

export function DatasetsView() {
  const t = useT();
  const list = useDatasets((s) => s.list);
  const selectedId = useDatasets((s) => s.selectedId);
  const loaded = useDatasets((s) => s.loaded);
  const editorOpen = useSamples((s) => s.editor !== null);
  const dataset = list.find((d) => d.id === selectedId) ?? null;

  useEffect(() => {
    void useDatasets.getState().refresh();
  }, []);
  useEffect(() => {
    useSamples.getState().setDataset(loaded ? selectedId : null);
  }, [selectedId, loaded]);
  // changed elsewhere (dedupe, another window, the CLI): the rows on screen are read again
  const updatedAt = dataset?.updatedAt;
  useEffect(() => {
    if (updatedAt !== undefined) useSamples.getState().reload();
  }, [updatedAt]);

  return (
    <section className={`datasets-layout${editorOpen ? " with-editor" : ""}`} aria-label={t("datasets.title")}>
      <DatasetList />
      <section className="ds-main">
        {dataset ? (
          <>
            <DatasetHeader d={dataset} />
            <Toolbar d={dataset} />
            <SamplesGrid />
          </>
        ) : (
          loaded && <Empty />
        )}
      </section>
      {editorOpen && <SampleEditor />}
      <ImportDialog />
    </section>
  );
}
