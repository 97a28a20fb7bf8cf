// Per-conversation settings: system prompt with presets, and sampling overrides (model defaults as placeholders).
import { useEffect, useRef, useState } from "react";
import { api } from "../api/index.js";
import type { Preset, SamplingSettings } from "../api/types.js";
import { useLang, useT } from "../hooks.js";
import { useChat } from "../stores/chat.js";
import { useModels } from "../stores/models.js";
import { useUi } from "../stores/ui.js";
import { IconX } from "./icons.js";
import { ModelRoutingPanel } from "./routing/RoutingPanels.js";

type Field = keyof SamplingSettings;
const FIELDS: { key: Field; label: Parameters<ReturnType<typeof useT>>[0]; min: number; max: number; step: number; int: boolean }[] = [
  { key: "temperature", label: "panel.temperature", min: 0, max: 5, step: 0.05, int: false },
  { key: "topP", label: "panel.topP", min: 0.01, max: 1, step: 0.01, int: false },
  { key: "topK", label: "panel.topK", min: 0, max: 100000, step: 1, int: true },
  { key: "repetitionPenalty", label: "panel.repetitionPenalty", min: 0.5, max: 5, step: 0.01, int: false },
  { key: "maxTokens", label: "panel.maxTokens", min: 1, max: 1000000, step: 1, int: true },
  { key: "seed", label: "panel.seed", min: 0, max: 0xffffffff, step: 1, int: true },
];

/** "" → null (model default); a number in range → that number; anything else → undefined (invalid). */
export function parseSamplingField(raw: string, f: { min: number; max: number; int: boolean; key: Field }): number | null | undefined {
  const s = raw.trim();
  if (s === "") return null;
  const n = Number(s);
  if (!Number.isFinite(n) || (f.int && !Number.isInteger(n))) return undefined;
  if (f.key === "topP" ? n <= 0 || n > 1 : n < f.min || n > f.max) return undefined;
  return n;
}

function SamplingInput({ f, value, placeholder, conversationId }: { f: (typeof FIELDS)[number]; value: number | null; placeholder: string; conversationId: string }) {
  const t = useT();
  const [raw, setRaw] = useState(value === null ? "" : String(value));
  const [invalid, setInvalid] = useState(false);
  useEffect(() => {
    setRaw(value === null ? "" : String(value));
    setInvalid(false);
  }, [value, conversationId]);
  const commit = () => {
    const v = parseSamplingField(raw, f);
    if (v === undefined) {
      setInvalid(true);
      return;
    }
    setInvalid(false);
    if (v !== value) void useChat.getState().updateConversation({ sampling: { [f.key]: v } });
  };
  const id = `sampling-${f.key}`;
  return (
    <div className={`field${invalid ? " invalid" : ""}`}>
      <label htmlFor={id}>{t(f.label)}</label>
      <input
        id={id}
        type="number"
        inputMode={f.int ? "numeric" : "decimal"}
        min={f.min}
        max={f.max}
        step={f.step}
        placeholder={placeholder}
        value={raw}
        aria-invalid={invalid || undefined}
        onChange={(e) => setRaw(e.target.value)}
        onBlur={commit}
        onKeyDown={(e) => e.key === "Enter" && commit()}
      />
      {invalid && <span className="field-error">{t("panel.invalid")}</span>}
    </div>
  );
}

export function ConversationPanel() {
  const t = useT();
  const lang = useLang();
  const conversation = useChat((s) => s.conversation);
  const defaults = useModels((s) => (s.status.model ?? s.lastCard)?.sampling ?? null);
  const [presets, setPresets] = useState<Preset[]>([]);
  const [prompt, setPrompt] = useState(conversation?.systemPrompt ?? "");
  const [naming, setNaming] = useState(false);
  const [presetName, setPresetName] = useState("");
  const saveTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const model = useModels((s) => s.status.model);
  const [routingOpen, setRoutingOpen] = useState(false);
  const replies = useChat((s) => s.messages.filter((m) => m.role === "assistant" && m.status !== "streaming").length);

  const loadPresets = () =>
    api()
      .call("presets.list", {})
      .then(setPresets)
      .catch((e) => useUi.getState().notifyError(e));
  useEffect(() => {
    void loadPresets();
  }, []);
  useEffect(() => {
    setPrompt(conversation?.systemPrompt ?? "");
  }, [conversation?.id, conversation?.systemPrompt]);

  if (!conversation) return null;

  const savePrompt = (text: string) => {
    if (saveTimer.current) clearTimeout(saveTimer.current);
    saveTimer.current = null;
    if (text === conversation.systemPrompt) return;
    const preset = presets.find((p) => p.id === conversation.presetId);
    void useChat.getState().updateConversation({ systemPrompt: text, presetId: preset && preset.content === text ? preset.id : null });
  };
  const onPrompt = (text: string) => {
    setPrompt(text);
    if (saveTimer.current) clearTimeout(saveTimer.current);
    saveTimer.current = setTimeout(() => savePrompt(text), 600);
  };
  const pickPreset = (id: string) => {
    const p = presets.find((x) => x.id === id);
    if (!p) return;
    setPrompt(p.content);
    void useChat.getState().updateConversation({ systemPrompt: p.content, presetId: p.id });
  };
  const saveAsPreset = async () => {
    const name = presetName.trim();
    if (!name) return;
    try {
      const p = await api().call("presets.save", { name, content: prompt, language: lang });
      setNaming(false);
      setPresetName("");
      await loadPresets();
      void useChat.getState().updateConversation({ systemPrompt: prompt, presetId: p.id });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  };
  const deletePreset = async (id: string) => {
    try {
      await api().call("presets.delete", { id });
      await loadPresets();
      if (conversation.presetId === id) void useChat.getState().updateConversation({ presetId: null });
    } catch (e) {
      useUi.getState().notifyError(e);
    }
  };

  // A conversation created with the default prompt has no preset id; show the preset whose text it carries.
  const current = presets.find((p) => p.id === conversation.presetId) ?? presets.find((p) => p.content === conversation.systemPrompt) ?? null;
  const placeholder = (key: Field): string => {
    if (key === "seed") return t("panel.seedRandom");
    if (!defaults) return "";
    const v = defaults[key as keyof typeof defaults];
    return v === undefined ? "" : String(v);
  };
  const hasOverrides = Object.values(conversation.sampling).some((v) => v !== null);

  return (
    <aside className="panel" aria-label={t("chat.settings")}>
      <div className="panel-head">
        <h2>{t("chat.settings")}</h2>
        <button type="button" className="ghost icon" aria-label={t("chat.hideSettings")} title={t("chat.hideSettings")} onClick={() => useUi.getState().togglePanel(false)}>
          <IconX />
        </button>
      </div>

      <section className="panel-section">
        <h3>{t("panel.systemPrompt")}</h3>
        <div className="field">
          <label htmlFor="preset">{t("panel.preset")}</label>
          <div className="inline">
            <select id="preset" value={current?.id ?? ""} onChange={(e) => pickPreset(e.target.value)}>
              <option value="">{t("panel.customPreset")}</option>
              {(lang === "zh" ? (["zh", "en"] as const) : (["en", "zh"] as const)).map((l) =>
                presets.some((p) => p.language === l) ? (
                  <optgroup key={l} label={l === "zh" ? "中文" : "English"}>
                    {presets
                      .filter((p) => p.language === l)
                      .map((p) => (
                        <option key={p.id} value={p.id}>
                          {p.name}
                        </option>
                      ))}
                  </optgroup>
                ) : null,
              )}
            </select>
            {current && !current.builtin && (
              <button type="button" className="ghost small" onClick={() => void deletePreset(current.id)}>
                {t("panel.deletePreset")}
              </button>
            )}
          </div>
        </div>
        <textarea className="system-prompt" aria-label={t("panel.systemPrompt")} rows={6} value={prompt} onChange={(e) => onPrompt(e.target.value)} onBlur={() => savePrompt(prompt)} />
        {naming ? (
          <div className="inline">
            <input aria-label={t("panel.presetName")} placeholder={t("panel.presetName")} value={presetName} autoFocus maxLength={200} onChange={(e) => setPresetName(e.target.value)} onKeyDown={(e) => e.key === "Enter" && void saveAsPreset()} />
            <button type="button" className="primary small" disabled={!presetName.trim()} onClick={() => void saveAsPreset()}>
              {t("panel.save")}
            </button>
            <button type="button" className="ghost small" onClick={() => setNaming(false)}>
              {t("chat.cancel")}
            </button>
          </div>
        ) : (
          <button type="button" className="secondary small" onClick={() => setNaming(true)}>
            {t("panel.saveAsPreset")}
          </button>
        )}
      </section>

      <section className="panel-section">
        <h3>{t("panel.sampling")}</h3>
        <p className="muted small-text">{t("panel.defaultsHint")}</p>
        <div className="grid2">
          {FIELDS.map((f) => (
            <SamplingInput key={f.key} f={f} value={conversation.sampling[f.key]} placeholder={placeholder(f.key)} conversationId={conversation.id} />
          ))}
        </div>
        {hasOverrides && (
          <button
            type="button"
            className="ghost small"
            onClick={() =>
              void useChat.getState().updateConversation({
                sampling: { temperature: null, topP: null, topK: null, repetitionPenalty: null, maxTokens: null, seed: null },
              })
            }
          >
            {t("panel.reset")}
          </button>
        )}
      </section>
      {model && model.numExperts > 0 && (
        <details className="panel-section" onToggle={(e) => setRoutingOpen((e.target as HTMLDetailsElement).open)}>
          <summary>{t("routing.modelTitle")}</summary>
          {/* asked again whenever a reply finishes: the counts grow with every prefill and decode */}
          {routingOpen && <ModelRoutingPanel refreshKey={`${model.dir}:${replies}`} />}
        </details>
      )}
    </aside>
  );
}
