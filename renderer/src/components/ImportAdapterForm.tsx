// Models → "In your models folder": bring in a PEFT adapter trained elsewhere (a cluster's LLaMA-Factory run made with
// Finetune → Export for a cluster, or any peft run) for a base model here. The engine checks it against the base
// before it is copied, so one made for another model is refused with the reason; then it is listed, opens in chat
// on its base, and exports merged like the app's own.
import { useState } from "react";
import { api } from "../api/index.js";
import { useT } from "../hooks.js";
import { useLibrary } from "../stores/library.js";
import { useModels } from "../stores/models.js";
import { ErrorText } from "./ErrorText.js";
import { FieldRow } from "./FieldRow.js";
import { IconAlert } from "./icons.js";

export function ImportAdapterForm() {
  const t = useT();
  const loaded = useModels((s) => s.status.model?.dir ?? "");
  const [dir, setDir] = useState("");
  const [base, setBase] = useState<string | null>(null);
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<{ message: string; code?: string } | null>(null);
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
      const err = e as { message?: string; code?: string };
      setError({ message: err.message ?? String(e), ...(err.code ? { code: err.code } : {}) });
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
      {error && (
        <div className="open-error" role="alert">
          <IconAlert />
          <div className="open-error-text"><ErrorText error={error.message} {...(error.code ? { code: error.code } : {})} /></div>
        </div>
      )}
      {done && <p role="status">{t("models.import.done", { name: done })}</p>}
      <button type="submit" className="secondary" disabled={!dir.trim() || !baseValue.trim() || pending}>{t("models.import.submit")}</button>
    </form>
  );
}
