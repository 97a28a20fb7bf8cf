// One sample's messages, editable: role, text, add, delete, reorder; Save sends them to samples.update, whose
// validation message is shown next to the message it names. Duplicate and delete act on the sample.
import { useEffect, useRef } from "react";
import type { SampleMessage } from "../api/types.js";
import { useT } from "../hooks.js";
import { useSamples, type Role } from "../stores/samples.js";
import { IconAlert, IconArrowDown, IconArrowUp, IconCopy, IconPlus, IconTrash, IconX } from "./icons.js";

const ROLES: Role[] = ["system", "user", "assistant"];

function AutoText({ value, label, onChange, invalid }: { value: string; label: string; onChange(v: string): void; invalid: boolean }) {
  const ref = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.style.height = "auto";
    el.style.height = `${Math.min(el.scrollHeight + 2, 360)}px`;
  }, [value]);
  return <textarea ref={ref} aria-label={label} aria-invalid={invalid || undefined} value={value} rows={2} spellCheck={false} onChange={(e) => onChange(e.target.value)} />;
}

function MessageCard({ m, i, count, error }: { m: SampleMessage; i: number; count: number; error: string | null }) {
  const t = useT();
  const { setRole, setText, move, removeMessage } = useSamples.getState();
  const n = i + 1;
  return (
    <li className={`smsg role-${m.role}${error ? " invalid" : ""}`}>
      <div className="smsg-head">
        <select aria-label={t("datasets.role", { n })} value={m.role} onChange={(e) => setRole(i, e.target.value as Role)}>
          {ROLES.map((r) => (
            <option key={r} value={r}>
              {t(`datasets.role.${r}`)}
            </option>
          ))}
        </select>
        <span className="grow" />
        <button type="button" className="ghost icon" aria-label={t("datasets.moveUp", { n })} title={t("datasets.moveUp", { n })} disabled={i === 0} onClick={() => move(i, -1)}>
          <IconArrowUp />
        </button>
        <button type="button" className="ghost icon" aria-label={t("datasets.moveDown", { n })} title={t("datasets.moveDown", { n })} disabled={i === count - 1} onClick={() => move(i, 1)}>
          <IconArrowDown />
        </button>
        <button type="button" className="ghost icon" aria-label={t("datasets.removeMessage", { n })} title={t("datasets.removeMessage", { n })} onClick={() => removeMessage(i)}>
          <IconTrash />
        </button>
      </div>
      <AutoText value={m.content} label={t("datasets.text", { n })} invalid={!!error} onChange={(v) => setText(i, v)} />
      {error && (
        <div className="field-error" role="alert">
          {error}
        </div>
      )}
    </li>
  );
}

export function SampleEditor() {
  const t = useT();
  const editor = useSamples((s) => s.editor);
  const tokenizer = useSamples((s) => s.tokenizer);
  const { close, save, addMessage, duplicateSample, deleteSample } = useSamples.getState();
  const panel = useRef<HTMLElement>(null);
  const freshId = editor?.fresh ? editor.sample.id : null;
  useEffect(() => {
    // a sample just added: its first message's placeholder is selected, ready to be typed over
    if (freshId) panel.current?.querySelector("textarea")?.select();
  }, [freshId]);
  if (!editor) return null;
  const { sample, draft, dirty, saving, error } = editor;
  const title = t("datasets.sample", { n: sample.index + 1 });
  const tooLong = tokenizer && sample.tokens !== null && sample.tokens > tokenizer.maxSeqLen;
  return (
    <aside
      ref={panel}
      className="panel sample-editor"
      aria-label={title}
      onKeyDown={(e) => {
        // Ctrl/Cmd+S saves, as in any editor
        if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "s") {
          e.preventDefault();
          if (dirty) void save();
        }
      }}
    >
      <div className="panel-head">
        <div>
          <h2>{title}</h2>
          <div className="muted small-text sample-meta">
            {sample.tokens !== null && <span className={tooLong ? "over" : ""}>{t("datasets.sampleTokens", { n: sample.tokens.toLocaleString() })}</span>}
            <span>{t("datasets.sampleFormat", { format: sample.format })}</span>
            {sample.sourceLine !== null && <span>{t("datasets.sampleLine", { n: sample.sourceLine })}</span>}
          </div>
        </div>
        <button type="button" className="ghost icon" aria-label={t("datasets.closeSample")} title={t("datasets.closeSample")} onClick={close}>
          <IconX />
        </button>
      </div>
      {tooLong && (
        <div className="flag-line warn" role="note">
          {t("datasets.flag.tooLongTitle", { tokens: sample.tokens!, max: tokenizer.maxSeqLen })}
        </div>
      )}
      <ol className="smsg-list">
        {draft.map((m, i) => (
          <MessageCard key={i} m={m} i={i} count={draft.length} error={error && error.index === i ? error.message : null} />
        ))}
      </ol>
      <button type="button" className="secondary add-message" onClick={addMessage}>
        <IconPlus />
        <span>{t("datasets.addMessage")}</span>
      </button>
      {error && (error.index === null || error.index >= draft.length) && (
        <div className="open-error" role="alert">
          <IconAlert />
          <div>{error.message}</div>
        </div>
      )}
      <div className="editor-foot">
        <button type="button" className="primary" title={`${t("datasets.save")} (Ctrl+S)`} disabled={!dirty || saving} onClick={() => void save()}>
          {t("datasets.save")}
        </button>
        <span className="muted small-text" aria-live="polite">
          {dirty ? t("datasets.unsaved") : ""}
        </span>
        <span className="grow" />
        <button type="button" className="ghost icon" aria-label={t("datasets.duplicateSample")} title={t("datasets.duplicateSample")} onClick={() => void duplicateSample()}>
          <IconCopy />
        </button>
        <button type="button" className="ghost icon" aria-label={t("datasets.deleteSample")} title={t("datasets.deleteSample")} onClick={() => void deleteSample()}>
          <IconTrash />
        </button>
      </div>
    </aside>
  );
}
