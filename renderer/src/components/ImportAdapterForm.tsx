// Models → "In your models folder": bring in a PEFT adapter trained elsewhere (a cluster's LLaMA-Factory run made with
// Finetune → Export for a cluster, or any peft run) for a base model here. The engine checks it against the base
// before it is copied, so one made for another model is refused with the reason; then it is listed, opens in chat
// on its base, and exports merged like the app's own.
import { useState } from "react";
import { api } from "../api/index.js";
import type { LocalModel } from "../api/types.js";
import { useT } from "../hooks.js";
import { useLibrary } from "../stores/library.js";
import { useModels } from "../stores/models.js";
import { callError, ErrorAlert, type CallError } from "./ErrorText.js";
import { FieldRow } from "./FieldRow.js";

export function ImportAdapterForm() {
  const t = useT();
  const loaded = useModels((s) => s.status.model?.dir ?? "");
  const [dir, setDir] = useState("");
  const [base, setBase] = useState<string | null>(null);
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<CallError | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const baseValue = base ?? loaded;
  const submit = async () => {
    setPending(true);
    setError(null);
    setDone(null);
    try {
      const e = await api().call("library.importAdapter", { dir: dir.trim(), base: baseValue.trim() });
      setDone(e.name);
      setDir("");
      await useLibrary.getState().loadLocal();
    } catch (e) {
      setError(callError(e));
    } finally {
      setPending(false);
    }
  };
  return (
    <form className="import-adapter" aria-labelledby="import-adapter-title" onSubmit={(e) => { e.preventDefault(); void submit(); }}>
      <h3 id="import-adapter-title">{t("models.import.title")}</h3>
      <p className="muted small-text">{t("models.import.about")}</p>
      <FieldRow id="import-adapter-dir" label={t("models.import.adapter")} className="mono" value={dir} placeholder="/path/to/saves/run" spellCheck={false} autoComplete="off" onChange={(e) => setDir(e.target.value)} />
      <FieldRow id="import-adapter-base" label={t("models.import.base")} className="mono" value={baseValue} placeholder="/path/to/base-model" spellCheck={false} autoComplete="off" onChange={(e) => setBase(e.target.value)} />
      {error && <ErrorAlert error={error} />}
      {done && <p role="status">{t("models.import.done", { name: done })}</p>}
      <button type="submit" className="secondary" disabled={!dir.trim() || !baseValue.trim() || pending}>{t("models.import.submit")}</button>
    </form>
  );
}

/** "Export merged" of an imported adapter: the export job folds it into its base (progress in Activity). */
export function ExportImportedMerged({ entry }: { entry: LocalModel }) {
  const t = useT();
  const [open, setOpen] = useState(false);
  const [name, setName] = useState(`${entry.name}-merged`);
  const [dtype, setDtype] = useState<"bf16" | "fp16" | "fp32">("bf16");
  const [error, setError] = useState<CallError | null>(null);
  if (entry.origin?.origin !== "cluster" || entry.origin.format) return null;
  if (!open) {
    return (
      <button type="button" className="ghost" aria-label={t("models.local.exportMergedNamed", { name: entry.name })} onClick={() => setOpen(true)}>
        {t("models.local.exportMerged")}
      </button>
    );
  }
  const start = async () => {
    setError(null);
    try {
      await api().call("library.exportMerged", { adapterPath: entry.path, dtype, name: name.trim() });
      setOpen(false);
    } catch (e) {
      setError(callError(e));
    }
  };
  return (
    <form className="merge-imported" aria-label={t("models.local.exportMergedNamed", { name: entry.name })} onSubmit={(e) => { e.preventDefault(); void start(); }}>
      <FieldRow id={`merge-name-${entry.name}`} label={t("models.local.mergeName")} value={name} spellCheck={false} onChange={(e) => setName(e.target.value)} />
      <div className="endpoint-row">
        <label htmlFor={`merge-dtype-${entry.name}`}>{t("models.local.mergeDtype")}</label>
        <select id={`merge-dtype-${entry.name}`} value={dtype} onChange={(e) => setDtype(e.target.value as typeof dtype)}>
          {(["bf16", "fp16", "fp32"] as const).map((d) => <option key={d} value={d}>{d}</option>)}
        </select>
      </div>
      {error && <ErrorAlert error={error} />}
      <button type="submit" className="secondary" disabled={!name.trim()}>{t("models.local.mergeStart")}</button>
    </form>
  );
}
