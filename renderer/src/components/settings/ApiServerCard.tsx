// Settings: the OpenAI-compatible API server. A switch, the port, and once it runs the base URL and key to copy into
// an editor, an agent or a script (any OpenAI client). The key can be renewed; the old one stops working at once.
import { useEffect, useState } from "react";
import { api } from "../../api/index.js";
import type { ApiServerStatus } from "../../api/types.js";
import { useT } from "../../hooks.js";
import { useUi } from "../../stores/ui.js";

export function ApiServerCard() {
  const t = useT();
  const [status, setStatus] = useState<ApiServerStatus | null>(null);
  const [port, setPort] = useState("");
  const [pending, setPending] = useState(false);
  const [shown, setShown] = useState(false);

  useEffect(() => {
    api()
      .call("api.status", {})
      .then((s) => {
        setStatus(s);
        setPort(String(s.port));
      })
      .catch((e) => useUi.getState().notifyError(e));
  }, []);

  const apply = async (patch: { enabled: boolean; newKey?: boolean }) => {
    const p = Number(port);
    setPending(true);
    try {
      const s = await api().call("api.set", { ...patch, ...(Number.isInteger(p) && p >= 1024 && p <= 65535 ? { port: p } : {}) });
      setStatus(s);
      setPort(String(s.port));
    } catch (e) {
      useUi.getState().notifyError(e);
    } finally {
      setPending(false);
    }
  };

  if (!status) return null;
  const portValid = /^\d+$/.test(port) && Number(port) >= 1024 && Number(port) <= 65535;
  return (
    <section className="card" aria-labelledby="api-server-title">
      <h2 id="api-server-title">{t("api.title")}</h2>
      <p className="muted">{t("api.about")}</p>
      <div className="setting-row">
        <label htmlFor="api-enabled">{t("api.enabled")}</label>
        <input id="api-enabled" type="checkbox" role="switch" checked={status.running} disabled={pending || (!status.running && !portValid)}
          onChange={(e) => void apply({ enabled: e.target.checked })} />
      </div>
      <div className="setting-row">
        <label htmlFor="api-port">{t("api.port")}</label>
        <input id="api-port" type="number" min={1024} max={65535} value={port} disabled={pending || status.running} aria-invalid={!portValid}
          onChange={(e) => setPort(e.target.value)} />
      </div>
      {status.error && <p className="open-error" role="alert">{status.error}</p>}
      {status.running && status.baseUrl && (
        <dl className="facts">
          <div>
            <dt>{t("api.url")}</dt>
            <dd><code>{status.baseUrl}</code></dd>
          </div>
          <div>
            <dt>{t("api.key")}</dt>
            <dd>
              <code data-testid="api-key">{shown ? status.key : "•".repeat(12)}</code>{" "}
              <button type="button" className="ghost" onClick={() => setShown(!shown)}>{shown ? t("api.hideKey") : t("api.showKey")}</button>{" "}
              <button type="button" className="ghost" disabled={pending} onClick={() => void apply({ enabled: true, newKey: true })}>{t("api.newKey")}</button>
            </dd>
          </div>
          <div>
            <dt>{t("api.docs")}</dt>
            <dd><code>{status.baseUrl.replace(/\/v1$/, "/docs")}</code></dd>
          </div>
        </dl>
      )}
      {status.running && status.keyStorage === "memory" && <p className="muted">{t("api.keyInMemory")}</p>}
    </section>
  );
}
