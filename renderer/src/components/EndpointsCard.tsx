// Models → Remote endpoints: OpenAI-compatible servers the chat can talk to instead of the local model (a vLLM
// cluster serving Hunyuan-Large, another MoE Studio). Add one (name, the API's base URL, its key, the model: "List
// models" asks the remote), then Chat opens a conversation with it. Keys go to the keychain, never to the database.
import { useEffect, useState } from "react";
import { useT } from "../hooks.js";
import { useConversations } from "../stores/conversations.js";
import { useEndpoints } from "../stores/endpoints.js";
import { callError, ErrorAlert, type CallError } from "./ErrorText.js";
import { FieldRow } from "./FieldRow.js";
import { IconX } from "./icons.js";

export function EndpointsCard() {
  const t = useT();
  const list = useEndpoints((s) => s.list);
  const [name, setName] = useState("");
  const [baseUrl, setBaseUrl] = useState("");
  const [key, setKey] = useState("");
  const [model, setModel] = useState("");
  const [models, setModels] = useState<string[] | null>(null);
  const [error, setError] = useState<CallError | null>(null);
  const [pending, setPending] = useState(false);

  useEffect(() => {
    void useEndpoints.getState().refresh();
  }, []);

  const run = async (f: () => Promise<void>) => {
    setPending(true);
    setError(null);
    try {
      await f();
    } catch (e) {
      setError(callError(e));
    } finally {
      setPending(false);
    }
  };
  const listModels = () =>
    run(async () => {
      const m = await useEndpoints.getState().models({ baseUrl: baseUrl.trim(), ...(key ? { key } : {}) });
      setModels(m);
      if (!model && m.length) setModel(m[0]);
    });
  const add = () =>
    run(async () => {
      await useEndpoints.getState().add({ name: name.trim(), baseUrl: baseUrl.trim(), model: model.trim(), ...(key ? { key } : {}) });
      setName("");
      setBaseUrl("");
      setKey("");
      setModel("");
      setModels(null);
    });
  const urlOk = /^https?:\/\/\S+$/.test(baseUrl.trim());

  return (
    <section className="card endpoints-card" aria-labelledby="endpoints-title">
      <h2 id="endpoints-title">{t("endpoints.title")}</h2>
      <p className="muted">{t("endpoints.about")}</p>
      {list && list.length > 0 && (
        <ul className="recent-list endpoint-list">
          {list.map((e) => (
            <li key={e.id}>
              <div className="local-entry">
                <span className="recent-name">{e.name}</span>
                <span className="muted small-text">
                  {e.model} · <span className="mono">{e.baseUrl}</span>
                  {e.keyEnv ? ` · ${t("endpoints.keyFromEnv", { name: e.keyEnv })}` : e.hasKey ? ` · ${t("endpoints.hasKey")}` : ""}
                </span>
              </div>
              <button type="button" className="secondary" aria-label={t("endpoints.chatNamed", { name: e.name })} onClick={() => void useConversations.getState().create({ endpointId: e.id })}>
                {t("endpoints.chat")}
              </button>
              <button type="button" className="ghost icon" aria-label={t("endpoints.removeNamed", { name: e.name })} title={t("endpoints.remove")} onClick={() => void useEndpoints.getState().remove(e.id)}>
                <IconX />
              </button>
            </li>
          ))}
        </ul>
      )}
      <form
        className="endpoint-form"
        onSubmit={(ev) => {
          ev.preventDefault();
          void add();
        }}
      >
        <FieldRow id="endpoint-name" label={t("endpoints.name")} value={name} placeholder="Hunyuan-Large (vLLM)" onChange={(e) => setName(e.target.value)} />
        <FieldRow id="endpoint-url" label={t("endpoints.url")} className="mono" value={baseUrl} placeholder="http://10.0.0.5:8000/v1" spellCheck={false} autoComplete="off" onChange={(e) => setBaseUrl(e.target.value)} />
        <FieldRow id="endpoint-key" label={t("endpoints.key")} type="password" value={key} placeholder={t("endpoints.keyPlaceholder")} autoComplete="off" onChange={(e) => setKey(e.target.value)} />
        <div className="endpoint-row">
          <label htmlFor="endpoint-model">{t("endpoints.model")}</label>
          <span className="endpoint-model">
            <input id="endpoint-model" value={model} list="endpoint-models" spellCheck={false} onChange={(e) => setModel(e.target.value)} />
            <datalist id="endpoint-models">{(models ?? []).map((m) => <option key={m} value={m} />)}</datalist>
            <button type="button" className="ghost" disabled={!urlOk || pending} onClick={() => void listModels()}>
              {t("endpoints.listModels")}
            </button>
          </span>
        </div>
        {models && <p className="muted small-text" role="status">{t("endpoints.modelsFound", { count: models.length })}</p>}
        {error && <ErrorAlert error={error} />}
        <button type="submit" className="primary" disabled={!name.trim() || !urlOk || !model.trim() || pending}>
          {t("endpoints.add")}
        </button>
      </form>
    </section>
  );
}
