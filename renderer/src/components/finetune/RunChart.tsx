// One run's chart: training loss (raw and smoothed, TensorBoard's EMA), validation loss, grad norm (left axis) and
// learning rate (right axis: it is orders of magnitude smaller) against step; a legend that hides a series; a
// "Table" toggle that lists the same points for people who read numbers, screen readers and tests.
import { useState } from "react";
import { useT } from "../../hooks.js";
import { smoothEma, SMOOTHING, type TrainPoint } from "../../stores/finetune.js";
import { LineChart, type ChartSeries } from "./LineChart.js";

type Key = "loss" | "smooth" | "eval" | "grad" | "lr";

function num(v: number | null, digits = 4): string {
  if (v === null) return "—";
  return Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(2) : v.toFixed(digits);
}

export function RunChart({ points }: { points: TrainPoint[] }) {
  const t = useT();
  const [table, setTable] = useState(false);
  const [hidden, setHidden] = useState<Set<Key>>(new Set());
  const smooth = smoothEma(points.map((p) => p.loss), SMOOTHING);
  const pick = (f: (p: TrainPoint, i: number) => number | null): [number, number][] =>
    points.flatMap((p, i) => {
      const v = f(p, i);
      return v === null || !Number.isFinite(v) ? [] : [[p.step, v] as [number, number]];
    });
  const all: (ChartSeries & { key: Key })[] = [
    { key: "loss", id: "loss", label: t("finetune.chart.loss"), tone: "raw", points: pick((p) => p.loss) },
    { key: "smooth", id: "smooth", label: t("finetune.chart.smoothed"), tone: "smooth", points: pick((_, i) => smooth[i]) },
    { key: "eval", id: "eval", label: t("finetune.chart.evalLoss"), tone: "eval", points: pick((p) => p.evalLoss), dots: true },
    { key: "grad", id: "grad", label: t("finetune.chart.gradNorm"), tone: "grad", points: pick((p) => p.gradNorm) },
    { key: "lr", id: "lr", label: t("finetune.chart.lr"), tone: "lr", points: pick((p) => p.lr), axis: "right" },
  ];
  const shown = all.filter((s) => !hidden.has(s.key));
  const last = points.at(-1);

  return (
    <section className="finetune-chart-box" aria-label={t("finetune.chart.title")}>
      <div className="finetune-chart-head">
        <ul className="finetune-legend" aria-label={t("finetune.chart.legend")}>
          {all.map((s) => (
            <li key={s.key}>
              <label className="check">
                <input
                  type="checkbox"
                  checked={!hidden.has(s.key)}
                  onChange={() => {
                    const next = new Set(hidden);
                    if (next.has(s.key)) next.delete(s.key);
                    else next.add(s.key);
                    setHidden(next);
                  }}
                />
                <span className={`finetune-swatch finetune-s-${s.tone}`} aria-hidden="true" />
                <span>{s.label}</span>
              </label>
            </li>
          ))}
        </ul>
        <button type="button" className={`ghost small${table ? " active" : ""}`} aria-pressed={table} onClick={() => setTable(!table)}>
          {t("finetune.chart.table")}
        </button>
      </div>
      {points.length === 0 ? (
        <p className="muted finetune-chart-empty">{t("finetune.chart.waiting")}</p>
      ) : (
        <LineChart
          series={shown}
          label={t("finetune.chart.summary", { n: points.length, step: last?.step ?? 0, loss: num(last?.loss ?? null) })}
          xLabel={t("finetune.chart.step")}
          leftLabel={t("finetune.chart.lossAxis")}
          rightLabel={t("finetune.chart.lr")}
        />
      )}
      <p className="muted small-text">{t("finetune.chart.smoothingNote", { w: SMOOTHING })}</p>
      {table && (
        <div className="finetune-table-wrap" tabIndex={0} aria-label={t("finetune.chart.points")}>
          <table className="finetune-table" aria-label={t("finetune.chart.points")}>
            <thead>
              <tr>
                <th scope="col">{t("finetune.chart.step")}</th>
                <th scope="col">{t("finetune.chart.loss")}</th>
                <th scope="col">{t("finetune.chart.smoothed")}</th>
                <th scope="col">{t("finetune.chart.evalLoss")}</th>
                <th scope="col">{t("finetune.chart.lr")}</th>
                <th scope="col">{t("finetune.chart.gradNorm")}</th>
              </tr>
            </thead>
            <tbody>
              {points.map((p, i) => (
                <tr key={p.step}>
                  <td>{p.step}</td>
                  <td>{num(p.loss)}</td>
                  <td>{num(smooth[i])}</td>
                  <td>{num(p.evalLoss)}</td>
                  <td>{p.lr === null ? "—" : p.lr.toExponential(2)}</td>
                  <td>{num(p.gradNorm, 3)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
