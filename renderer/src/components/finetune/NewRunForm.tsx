// A new run in three moves: a dataset (picked, or a .jsonl dropped / chosen here, which goes through the Datasets
// import with its report), a base model, Start. The preset gives working defaults; the base precision (Q-LoRA on an
// NF4 base, or LoRA on the stored weights) shows each choice's memory; the Advanced panel has every knob of the
// training engine by its train.json name. The engine's memory estimate is shown against this machine before Start,
// and a run that will not fit cannot be started.
import { useEffect, useRef } from "react";
import { useT } from "../../hooks.js";
import { useDatasets } from "../../stores/datasets.js";
import { KNOBS, TARGETS, parseKnobs, specOf, useFinetune, verdictView, type BaseQuant, type Preset } from "../../stores/finetune.js";
import { folderName, formatBytes, useModels } from "../../stores/models.js";
import type { MessageKey } from "../../i18n/index.js";
import { IconAlert, IconUpload } from "../icons.js";

const PRESETS: Preset[] = ["quick", "balanced", "thorough"];

function DatasetPick() {
  const t = useT();
  const list = useDatasets((s) => s.list);
  const datasetId = useFinetune((s) => s.draft.datasetId);
  const input = useRef<HTMLInputElement>(null);
  const busy = useDatasets((s) => s.import !== null && s.import.phase !== "failed");
  return (
    <div className="finetune-step">
      <h3>{t("finetune.step.dataset")}</h3>
      <div className="field">
        <label htmlFor="ft-dataset">{t("finetune.dataset")}</label>
        <select id="ft-dataset" value={datasetId} onChange={(e) => useFinetune.getState().setDraft({ datasetId: e.target.value })}>
          <option value="">{t("finetune.datasetNone")}</option>
          {list.map((d) => (
            <option key={d.id} value={d.id}>
              {t("finetune.datasetOption", { name: d.name, n: d.sampleCount.toLocaleString() })}
            </option>
          ))}
        </select>
      </div>
      <div className="finetune-drop">
        <IconUpload />
        <span className="muted small-text">{t("finetune.dropHint")}</span>
        <button type="button" className="secondary small" disabled={busy} onClick={() => input.current?.click()}>
          {t("finetune.chooseFile")}
        </button>
        <input
          ref={input}
          type="file"
          accept=".jsonl,.json,application/json"
          hidden
          tabIndex={-1}
          aria-label={t("finetune.datasetFile")}
          onChange={(e) => {
            const f = e.target.files?.[0];
            e.target.value = "";
            if (f) void useFinetune.getState().importForFinetune(f);
          }}
        />
      </div>
    </div>
  );
}

function ModelPick() {
  const t = useT();
  const modelDir = useFinetune((s) => s.draft.modelDir);
  const current = useModels((s) => s.status.model);
  const recent = useModels((s) => s.recent);
  const models = new Map<string, string>();
  if (current) models.set(current.dir, current.name);
  for (const r of recent) if (!models.has(r.dir)) models.set(r.dir, r.name);
  if (modelDir && !models.has(modelDir)) models.set(modelDir, folderName(modelDir));
  useEffect(() => {
    // the loaded model is the natural first choice
    if (!modelDir && current) useFinetune.getState().setDraft({ modelDir: current.dir });
  }, [modelDir, current]);
  return (
    <div className="finetune-step">
      <h3>{t("finetune.step.model")}</h3>
      <div className="field">
        <label htmlFor="ft-model">{t("finetune.model")}</label>
        <select id="ft-model" value={modelDir} onChange={(e) => useFinetune.getState().setDraft({ modelDir: e.target.value })}>
          <option value="">{t("finetune.modelNone")}</option>
          {[...models].map(([dir, name]) => (
            <option key={dir} value={dir}>
              {name}
            </option>
          ))}
        </select>
      </div>
      {models.size === 0 && <p className="muted small-text">{t("finetune.modelHint")}</p>}
    </div>
  );
}

function BaseQuantPick() {
  const t = useT();
  const baseQuant = useFinetune((s) => s.draft.baseQuant);
  const estimates = useFinetune((s) => s.estimates);
  return (
    <fieldset className="finetune-choice">
      <legend>{t("finetune.baseQuant")}</legend>
      {(["nf4", "none"] as BaseQuant[]).map((q) => {
        const e = estimates[q];
        return (
          <label key={q} className={`finetune-option${baseQuant === q ? " selected" : ""}`}>
            <input type="radio" name="ft-basequant" checked={baseQuant === q} onChange={() => useFinetune.getState().setDraft({ baseQuant: q })} />
            <span className="finetune-option-text">
              <strong>{t(q === "nf4" ? "finetune.qlora" : "finetune.lora")}</strong>
              <span className="muted small-text">{t(q === "nf4" ? "finetune.qloraHelp" : "finetune.loraHelp")}</span>
              <span className="small-text">
                {e.state === "ready" && e.value ? t("finetune.memoryCost", { total: formatBytes(e.value.totalBytes) }) : e.state === "loading" ? t("finetune.estimating") : ""}
              </span>
            </span>
          </label>
        );
      })}
    </fieldset>
  );
}

function PresetPick() {
  const t = useT();
  const preset = useFinetune((s) => s.draft.preset);
  return (
    <fieldset className="finetune-choice">
      <legend>{t("finetune.preset")}</legend>
      {PRESETS.map((p) => (
        <label key={p} className={`finetune-option${preset === p ? " selected" : ""}`}>
          <input type="radio" name="ft-preset" checked={preset === p} onChange={() => useFinetune.getState().setDraft({ preset: p })} />
          <span className="finetune-option-text">
            <strong>{t(`finetune.preset.${p}` as MessageKey)}</strong>
            <span className="muted small-text">{t(`finetune.preset.${p}Help` as MessageKey)}</span>
          </span>
        </label>
      ))}
    </fieldset>
  );
}

function Advanced() {
  const t = useT();
  const knobs = useFinetune((s) => s.draft.knobs);
  const { setKnob, setTargets, resetKnobs } = useFinetune.getState();
  const { invalid } = parseKnobs(knobs);
  const targets = knobs.targets;
  return (
    <details className="finetune-advanced">
      <summary>{t("finetune.advanced")}</summary>
      <p className="muted small-text">{t("finetune.advancedHelp")}</p>
      <div className="finetune-knobs">
        {KNOBS.map((k) => {
          const id = `ft-knob-${k.name}`;
          const bad = invalid.includes(k.name);
          const help = t(`finetune.knob.${k.name}` as MessageKey);
          return (
            <div key={k.name} className={`field${bad ? " invalid" : ""}`}>
              <label htmlFor={id} className="mono">
                {k.name}
              </label>
              {k.kind === "bool" || k.kind === "enum" ? (
                <select id={id} value={knobs.values[k.name] ?? ""} aria-describedby={`${id}-help`} onChange={(e) => setKnob(k.name, e.target.value)}>
                  <option value="">{t("finetune.fromPreset")}</option>
                  {(k.kind === "bool" ? ["true", "false"] : k.options!).map((o) => (
                    <option key={o} value={o}>
                      {o}
                    </option>
                  ))}
                </select>
              ) : (
                <input
                  id={id}
                  inputMode="decimal"
                  value={knobs.values[k.name] ?? ""}
                  placeholder={t("finetune.fromPreset")}
                  aria-invalid={bad || undefined}
                  aria-describedby={`${id}-help`}
                  onChange={(e) => setKnob(k.name, e.target.value)}
                />
              )}
              <span id={`${id}-help`} className="muted small-text">
                {help}
              </span>
              {bad && <span className="field-error">{t("finetune.knobInvalid")}</span>}
            </div>
          );
        })}
        <fieldset className="field finetune-targets">
          <legend className="mono">target_modules</legend>
          <div className="finetune-target-list">
            {TARGETS.map((m) => (
              <label key={m} className="check mono">
                <input
                  type="checkbox"
                  checked={targets === null || targets.includes(m)}
                  onChange={(e) => {
                    const base = targets ?? [...TARGETS];
                    setTargets(e.target.checked ? [...base, m] : base.filter((x) => x !== m));
                  }}
                />
                <span>{m}</span>
              </label>
            ))}
          </div>
          <span className="muted small-text">{t("finetune.knob.target_modules")}</span>
          {targets !== null && targets.length === 0 && <span className="field-error">{t("finetune.targetsEmpty")}</span>}
        </fieldset>
      </div>
      <button type="button" className="ghost small" onClick={resetKnobs}>
        {t("finetune.resetKnobs")}
      </button>
    </details>
  );
}

function EstimatePanel() {
  const t = useT();
  const draft = useFinetune((s) => s.draft);
  const e = useFinetune((s) => s.estimates[s.draft.baseQuant]);
  if (!specOf(draft)) return <p className="muted finetune-estimate">{t("finetune.estimateNeeds")}</p>;
  if (e.state === "error") {
    return (
      <div className="open-error finetune-estimate" role="alert">
        <IconAlert />
        <div>
          <strong>{t("finetune.estimateFailed")}</strong>
          <div className="open-error-text">{e.error}</div>
        </div>
      </div>
    );
  }
  if (!e.value) return <p className="muted finetune-estimate" role="status">{t("finetune.estimating")}</p>;
  const v = verdictView(e.value);
  const m = e.value;
  return (
    <section className={`finetune-estimate tone-${v.tone}`} role="status" aria-label={t("finetune.estimate")} aria-busy={e.state === "loading"}>
      <div className="finetune-estimate-head">
        <span className={`badge finetune-verdict-${v.tone}`}>{t(`finetune.verdict.${v.verdict}` as MessageKey)}</span>
        <span>
          {m.availableBytes >= 0
            ? t("finetune.estimateNumbers", { total: formatBytes(m.totalBytes), free: formatBytes(m.availableBytes) })
            : t("finetune.estimateNoFree", { total: formatBytes(m.totalBytes) })}
        </span>
      </div>
      {v.fraction !== null && (
        <div className="bar finetune-estimate-bar" role="meter" aria-label={t("finetune.estimateMeter")} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(v.fraction * 100)}>
          <span style={{ width: `${Math.min(100, v.fraction * 100)}%` }} />
        </div>
      )}
      <dl className="facts finetune-estimate-facts">
        <div>
          <dt>{t("finetune.est.base")}</dt>
          <dd>{formatBytes(m.baseBytes)}</dd>
        </div>
        <div>
          <dt>{t("finetune.est.adapter")}</dt>
          <dd>{formatBytes(m.adapterBytes)}</dd>
        </div>
        <div>
          <dt>{t("finetune.est.activations")}</dt>
          <dd>{formatBytes(m.activationBytes)}</dd>
        </div>
        <div>
          <dt>{t("finetune.est.params")}</dt>
          <dd>{m.params.toLocaleString()}</dd>
        </div>
        {m.maxSeqLength !== undefined && (
          <div>
            <dt>{t("finetune.est.seq")}</dt>
            <dd>{m.seqCut ? t("finetune.est.seqCut", { n: m.maxSeqLength.toLocaleString() }) : m.maxSeqLength.toLocaleString()}</dd>
          </div>
        )}
      </dl>
      {m.advice && <p className="finetune-advice">{t("finetune.advice", { advice: m.advice })}</p>}
    </section>
  );
}

/** What "Export for a cluster" wrote: the folder, and the command to run there. */
function ClusterJobNote() {
  const t = useT();
  const c = useFinetune((s) => s.clusterJob);
  if (c.state === "error" && c.error) {
    return (
      <div className="open-error" role="alert">
        <IconAlert />
        <div className="open-error-text">{c.error}</div>
      </div>
    );
  }
  if (c.state !== "done" || !c.result) return null;
  const r = c.result;
  return (
    <div className="cluster-job" role="status" data-testid="cluster-job">
      <p>{t("finetune.clusterDone", { dir: r.dir, n: r.conversations, template: r.template, base: r.base })}</p>
      <pre><code>{"FORCE_TORCHRUN=1 llamafactory-cli train train_lora.yaml"}</code></pre>
      <p className="muted small-text">{t("finetune.clusterHint")}</p>
      {r.notMirrored.length > 0 && <p className="muted small-text">{t("finetune.clusterNotMirrored", { what: r.notMirrored.join("; ") })}</p>}
    </div>
  );
}

export function NewRunForm() {
  const t = useT();
  const cluster = useFinetune((s) => s.clusterJob);
  const draft = useFinetune((s) => s.draft);
  const starting = useFinetune((s) => s.starting);
  const startError = useFinetune((s) => s.startError);
  const est = useFinetune((s) => s.estimates[s.draft.baseQuant]);
  const spec = specOf(draft);
  // the estimate prepares the data and the model exactly as the run would: when it fails (an empty dataset, no chat
  // template, a bad knob) the run would fail the same way, so Start waits for an estimate that answered
  const blocked = est.value !== null && !verdictView(est.value).canStart;
  useEffect(() => {
    useFinetune.getState().requestEstimate();
  }, []);
  return (
    <form
      className="card finetune-form"
      aria-label={t("finetune.newRun")}
      onSubmit={(e) => {
        e.preventDefault();
        void useFinetune.getState().start();
      }}
    >
      <h2>{t("finetune.newRun")}</h2>
      <div className="finetune-steps">
        <DatasetPick />
        <ModelPick />
      </div>
      <PresetPick />
      <BaseQuantPick />
      <Advanced />
      <div className="field">
        <label htmlFor="ft-name">{t("finetune.runName")}</label>
        <input id="ft-name" value={draft.name} maxLength={200} placeholder={t("finetune.runNameHint")} onChange={(e) => useFinetune.getState().setDraft({ name: e.target.value })} />
      </div>
      <EstimatePanel />
      {startError && (
        <div className="open-error" role="alert">
          <IconAlert />
          <div className="open-error-text">{startError}</div>
        </div>
      )}
      <div className="row-actions end">
        {blocked && <span className="field-error">{t("finetune.wontStart")}</span>}
        <button type="button" className="secondary" title={t("finetune.clusterTitle")} disabled={!spec || cluster.state === "writing"} onClick={() => void useFinetune.getState().exportClusterJob()}>
          {t("finetune.clusterExport")}
        </button>
        <button type="submit" className="primary" disabled={!spec || starting || blocked || est.state !== "ready"}>
          {t("finetune.start")}
        </button>
      </div>
      <ClusterJobNote />
    </form>
  );
}
