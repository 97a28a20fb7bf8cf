// A layers × experts heatmap of routing counts: each cell is an expert's share of its layer's (token, expert)
// pairs against an even split (1/E): cold at 0, the base tint at even, hot at 2× even and above — so a collapsed
// router shows as one hot cell per row and a cold rest. The load-balance figure (mean CV, stores in routing.ts) is
// above it; a "Table" toggle lists each layer's numbers (tokens, CV, busiest expert, idle experts), as the loss
// chart's does, for people who read numbers, screen readers and tests.
import { useState } from "react";
import type { RoutingLayer } from "../../../../electron/contract.js";
import { useT } from "../../hooks.js";
import { routingBalance } from "../../routing.js";

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

export function RoutingHeatmap({ layers, caption }: { layers: readonly RoutingLayer[]; caption: string }) {
  const t = useT();
  const [table, setTable] = useState(false);
  const b = routingBalance(layers);
  const E = Math.max(0, ...layers.map((l) => l.counts.length));
  const summary = t("routing.summary", { cv: b.meanCv === null ? "—" : b.meanCv.toFixed(2), tokens: Math.round(b.tokens).toLocaleString(), layers: layers.length, experts: E });
  return (
    <figure className="routing" aria-label={caption}>
      <div className="routing-head">
        <figcaption>
          <strong>{caption}</strong>
          <span className="muted small-text" data-testid="routing-summary">{summary}</span>
        </figcaption>
        <button type="button" className={`ghost small${table ? " active" : ""}`} aria-pressed={table} onClick={() => setTable(!table)}>
          {t("finetune.chart.table")}
        </button>
      </div>
      {b.tokens === 0 ? (
        <p className="muted small-text">{t("routing.empty")}</p>
      ) : table ? (
        <table className="routing-table">
          <thead>
            <tr>
              <th scope="col">{t("routing.layer")}</th>
              <th scope="col">{t("routing.tokens")}</th>
              <th scope="col">{t("routing.cv")}</th>
              <th scope="col">{t("routing.busiest")}</th>
              <th scope="col">{t("routing.idle")}</th>
            </tr>
          </thead>
          <tbody>
            {b.layers.map((l, i) => (
              <tr key={l.layer}>
                <td>{l.layer}</td>
                <td>{Math.round(l.pairs / layers[i].topK).toLocaleString()}</td>
                <td>{l.cv === null ? "—" : l.cv.toFixed(3)}</td>
                <td>{l.pairs ? `${l.shares.indexOf(l.maxShare)} (${pct(l.maxShare)})` : "—"}</td>
                <td>{l.idle}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <div className="routing-grid" role="img" aria-label={summary} style={{ gridTemplateColumns: `3.2em repeat(${E}, minmax(4px, 1fr)) 3.4em` }}>
          <span className="routing-axis muted">{t("routing.layer")}</span>
          {Array.from({ length: E }, (_, e) => (
            <span key={e} className="routing-axis muted">{E <= 16 || e % 4 === 0 ? e : ""}</span>
          ))}
          <span className="routing-axis muted">CV</span>
          {b.layers.map((l) => [
            <span key={`l${l.layer}`} className="routing-axis muted">{l.layer}</span>,
            ...Array.from({ length: E }, (_, e) => {
              const share = l.shares[e] ?? 0;
              const even = share * (l.shares.length || 1);  // 1 = an even split
              const heat = Math.round(Math.min(1, even / 2) * 100);
              return (
                <span
                  key={`${l.layer}-${e}`}
                  className="routing-cell"
                  style={{ background: `color-mix(in oklab, var(--heat-hot) ${heat}%, var(--heat-cold))` }}
                  title={t("routing.cell", { layer: l.layer, expert: e, share: pct(share), even: even.toFixed(2) })}
                />
              );
            }),
            <span key={`cv${l.layer}`} className="routing-axis">{l.cv === null ? "—" : l.cv.toFixed(2)}</span>,
          ])}
        </div>
      )}
    </figure>
  );
}
