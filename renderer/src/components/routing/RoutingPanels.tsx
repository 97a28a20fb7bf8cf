// Where the routing heatmap appears: a finetune run's view (its windows: the newest, the first, or the whole run,
// with the load balance of the first window against the newest — did finetuning collapse routing?) and the loaded
// model's info in Chat and Models (its counts since it loaded, asked of the engine with models.routing).
import { useEffect, useState } from "react";
import type { ModelRouting, RunRouting } from "../../../../electron/contract.js";
import { api } from "../../api/index.js";
import { useT } from "../../hooks.js";
import { routingBalance, sumWindows } from "../../routing.js";
import { ErrorText } from "../ErrorText.js";
import { RoutingHeatmap } from "./RoutingHeatmap.js";

type Pick = "latest" | "first" | "all";

export function RunRoutingPanel({ windows }: { windows: readonly RunRouting[] }) {
  const t = useT();
  const [pick, setPick] = useState<Pick>("latest");
  if (windows.length === 0) return null;
  const first = windows[0], latest = windows[windows.length - 1];
  const shown = pick === "all" ? sumWindows(windows) : (pick === "first" ? first : latest).layers;
  const range = pick === "all" ? { from: first.fromStep + 1, to: latest.step } : pick === "first" ? { from: first.fromStep + 1, to: first.step } : { from: latest.fromStep + 1, to: latest.step };
  const cv = (w: RunRouting) => routingBalance(w.layers).meanCv;
  const [c0, c1] = [cv(first), cv(latest)];
  return (
    <section className="finetune-routing" aria-label={t("routing.title")}>
      <div className="routing-controls">
        <h3>{t("routing.title")}</h3>
        <label className="inline-field">
          <span>{t("routing.window")}</span>
          <select value={pick} onChange={(e) => setPick(e.target.value as Pick)}>
            <option value="latest">{t("routing.latest")}</option>
            <option value="first">{t("routing.first")}</option>
            <option value="all">{t("routing.all")}</option>
          </select>
        </label>
      </div>
      {windows.length > 1 && c0 !== null && c1 !== null && (
        <p className="muted small-text" data-testid="routing-drift">{t("routing.drift", { first: c0.toFixed(2), latest: c1.toFixed(2) })}</p>
      )}
      <RoutingHeatmap layers={shown} caption={t("routing.steps", range)} />
    </section>
  );
}

/** The loaded model's routing since it loaded; asked when shown and again on Refresh or when `refreshKey` changes. */
export function ModelRoutingPanel({ refreshKey }: { refreshKey?: unknown }) {
  const t = useT();
  const [data, setData] = useState<ModelRouting | null>(null);
  const [error, setError] = useState<{ code?: string; message: string } | null>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    api().call("models.routing", {}).then(
      (r) => live && (setData(r), setError(null)),
      (e: { code?: string; message?: string }) => live && setError({ ...(e.code ? { code: e.code } : {}), message: e.message ?? String(e) }),
    );
    return () => {
      live = false;
    };
  }, [tick, refreshKey]);
  return (
    <section className="model-routing" aria-label={t("routing.modelTitle")}>
      <div className="routing-controls">
        <h3>{t("routing.modelTitle")}</h3>
        <button type="button" className="ghost small" onClick={() => setTick(tick + 1)}>
          {t("routing.refresh")}
        </button>
      </div>
      {error ? <ErrorText error={error.message} {...(error.code ? { code: error.code } : {})} /> : data && data.layers.length > 0 ? <RoutingHeatmap layers={data.layers} caption={t("routing.sinceLoad")} /> : data ? <p className="muted small-text">{t("routing.dense")}</p> : null}
    </section>
  );
}
