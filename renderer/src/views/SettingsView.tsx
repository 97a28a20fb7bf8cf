// Settings: language and theme (both apply at once and are saved), how models load (the KV cache: from the next
// load), the API server, and a few facts about this installation.
import { useT } from "../hooks.js";
import { useModels } from "../stores/models.js";
import { useSettings } from "../stores/settings.js";
import { ApiServerCard } from "../components/settings/ApiServerCard.js";

function Choice<V extends string>({ name, legend, value, options, onChange, hint }: { name: string; legend: string; value: V; options: [V, string][]; onChange(v: V): void; hint?: string }) {
  const id = `setting-${name}`;
  return (
    <>
      <div className="setting-row">
        <label htmlFor={id}>{legend}</label>
        <select id={id} value={value} onChange={(e) => onChange(e.target.value as V)} {...(hint ? { "aria-describedby": `${id}-hint` } : {})}>
          {options.map(([v, label]) => (
            <option key={v} value={v}>
              {label}
            </option>
          ))}
        </select>
      </div>
      {hint && (
        <p id={`${id}-hint`} className="muted small-text setting-hint">
          {hint}
        </p>
      )}
    </>
  );
}

export function SettingsView() {
  const t = useT();
  const language = useSettings((s) => s.language);
  const theme = useSettings((s) => s.theme);
  const kvCache = useSettings((s) => s.kvCache);
  const update = useSettings((s) => s.update);
  const info = useModels((s) => s.info);
  return (
    <div className="page">
      <div className="page-inner narrow">
        <header className="page-head">
          <h1>{t("settings.title")}</h1>
        </header>
        <section className="card">
          <Choice
            name="language"
            legend={t("settings.language")}
            value={language}
            options={[
              ["system", t("settings.system")],
              ["en", "English"],
              ["zh", "中文"],
            ]}
            onChange={(v) => void update({ language: v })}
          />
          <Choice
            name="theme"
            legend={t("settings.theme")}
            value={theme}
            options={[
              ["system", t("settings.system")],
              ["light", t("settings.light")],
              ["dark", t("settings.dark")],
            ]}
            onChange={(v) => void update({ theme: v })}
          />
        </section>
        <section className="card">
          <h2>{t("settings.engine")}</h2>
          <Choice
            name="kv-cache"
            legend={t("settings.kvCache")}
            value={kvCache}
            options={[
              ["f16", t("settings.kvF16")],
              ["f32", t("settings.kvF32")],
              ["int8", t("settings.kvInt8")],
            ]}
            onChange={(v) => void update({ kvCache: v })}
            hint={t("settings.kvHint")}
          />
        </section>
        <ApiServerCard />
        {info && (
          <section className="card">
            <h2>{t("settings.about")}</h2>
            <dl className="facts">
              <div>
                <dt>{t("settings.version")}</dt>
                <dd>{info.version}</dd>
              </div>
              <div>
                <dt>{t("settings.platform")}</dt>
                <dd>{info.platform}</dd>
              </div>
              <div>
                <dt>{t("settings.transport")}</dt>
                <dd>{info.transport === "ipc" ? t("settings.transportIpc") : t("settings.transportWs")}</dd>
              </div>
              <div>
                <dt>{t("settings.cpu")}</dt>
                <dd>{info.simd}</dd>
              </div>
              <div>
                <dt>{t("settings.cuda")}</dt>
                <dd>{info.cuda.compiled && info.cuda.devices > 0 ? t("settings.cudaDevices", { n: info.cuda.devices }) : t("settings.cudaNone")}</dd>
              </div>
            </dl>
          </section>
        )}
      </div>
    </div>
  );
}
