// Past and current runs with their final metrics: open one, tick two to compare their loss curves.
import { useT } from "../../hooks.js";
import type { MessageKey } from "../../i18n/index.js";
import { compareSeries, useFinetune } from "../../stores/finetune.js";
import { IconPlus } from "../icons.js";
import { LineChart } from "./LineChart.js";

export function RunList() {
  const t = useT();
  const runs = useFinetune((s) => s.runs);
  const openId = useFinetune((s) => s.openId);
  const compare = useFinetune((s) => s.compare);
  const loaded = useFinetune((s) => s.loaded);
  const { open, toggleCompare } = useFinetune.getState();
  return (
    <aside className="sidebar finetune-sidebar">
      <button type="button" className="primary new-chat" onClick={() => void open(null)}>
        <IconPlus />
        <span>{t("finetune.newRun")}</span>
      </button>
      <nav aria-label={t("finetune.runs")} className="conv-nav">
        <ul className="conv-list">
          {runs.map((r) => (
            <li key={r.id} className={`conv finetune-run-item${r.id === openId ? " current" : ""}`}>
              <button type="button" className="conv-open" aria-current={r.id === openId ? "true" : undefined} onClick={() => void open(r.id)}>
                <span className="conv-title">{r.name}</span>
                <span className="conv-snippet">
                  {t(`finetune.status.${r.status}` as MessageKey)}
                  {r.finalLoss !== null ? ` · ${t("finetune.lossShort", { loss: r.finalLoss.toFixed(3) })}` : ""}
                  {r.finalEvalLoss !== null ? ` · ${t("finetune.valShort", { loss: r.finalEvalLoss.toFixed(3) })}` : ""}
                </span>
              </button>
              <label className="check finetune-compare-check" title={t("finetune.compare")}>
                <input type="checkbox" aria-label={t("finetune.compareNamed", { name: r.name })} checked={compare.includes(r.id)} onChange={() => toggleCompare(r.id)} />
              </label>
            </li>
          ))}
        </ul>
        {loaded && runs.length === 0 && <p className="muted empty">{t("finetune.noRuns")}</p>}
      </nav>
    </aside>
  );
}

/** The loss curves (smoothed) of the two ticked runs on one chart. */
export function CompareCard() {
  const t = useT();
  const compare = useFinetune((s) => s.compare);
  const runs = useFinetune((s) => s.runs);
  const points = useFinetune((s) => s.points);
  if (compare.length < 2) return null;
  const picked = compare.map((id) => runs.find((r) => r.id === id)).filter((r) => r !== undefined);
  const series = compareSeries(picked.map((run) => ({ run, points: points[run.id] ?? [] })));
  return (
    <section className="card finetune-compare" aria-label={t("finetune.compareTitle")}>
      <div className="card-head">
        <h2>{t("finetune.compareTitle")}</h2>
        <button type="button" className="ghost small" onClick={() => compare.forEach((id) => useFinetune.getState().toggleCompare(id))}>
          {t("finetune.close")}
        </button>
      </div>
      <ul className="finetune-legend">
        {series.map((s, i) => (
          <li key={s.id}>
            <span className={`finetune-swatch finetune-s-run${i}`} aria-hidden="true" />
            <span>{s.label}</span>
          </li>
        ))}
      </ul>
      <LineChart
        series={series.map((s, i) => ({ ...s, tone: `run${i}` }))}
        label={t("finetune.compareSummary", { a: series[0]?.label ?? "", b: series[1]?.label ?? "" })}
        xLabel={t("finetune.chart.step")}
        leftLabel={t("finetune.chart.smoothed")}
      />
      <table className="finetune-table" aria-label={t("finetune.compareTable")}>
        <thead>
          <tr>
            <th scope="col">{t("finetune.run")}</th>
            <th scope="col">{t("finetune.chart.step")}</th>
            <th scope="col">{t("finetune.finalLoss")}</th>
            <th scope="col">{t("finetune.finalEvalLoss")}</th>
          </tr>
        </thead>
        <tbody>
          {picked.map((r) => (
            <tr key={r.id}>
              <td>{r.name}</td>
              <td>{r.step}</td>
              <td>{r.finalLoss === null ? "—" : r.finalLoss.toFixed(4)}</td>
              <td>{r.finalEvalLoss === null ? "—" : r.finalEvalLoss.toFixed(4)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
