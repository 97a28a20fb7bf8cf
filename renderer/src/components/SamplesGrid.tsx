// The samples table, virtualised: rows have one fixed height, the scroller's inner box is total × that height, and
// only the rows in view (plus a few) exist in the DOM; their data comes page by page from samples.list as the
// window moves. 100k samples are 100k × 52 px = 5.2 M px of scroll height, well under Chromium's ~33 M px limit.
import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import type { SampleRow } from "../api/types.js";
import { useT } from "../hooks.js";
import { PAGE_SIZE, useSamples } from "../stores/samples.js";
import { useRowWindow } from "./useRowWindow.js";

export const ROW_HEIGHT = 52;
/** The sticky column header above the rows, inside the same scroller. */
const HEAD_HEIGHT = 34;

function Flags({ row, maxSeqLen }: { row: SampleRow; maxSeqLen: number | null }) {
  const t = useT();
  return (
    <>
      {row.problems.includes("too_long") && (
        <span className="flag warn" title={t("datasets.flag.tooLongTitle", { tokens: row.tokens ?? "?", max: maxSeqLen ?? "?" })}>
          {t("datasets.flag.tooLong")}
        </span>
      )}
      {row.problems.includes("duplicate") && <span className="flag dup">{t("datasets.flag.duplicate")}</span>}
      {row.hasSystem && <span className="flag sys">{t("datasets.flag.system")}</span>}
    </>
  );
}

export function SamplesGrid() {
  const t = useT();
  const total = useSamples((s) => s.total);
  const pages = useSamples((s) => s.pages);
  const gen = useSamples((s) => s.gen);
  const openId = useSamples((s) => s.editor?.sample.id ?? null);
  const tokenizer = useSamples((s) => s.tokenizer);
  const counting = useSamples((s) => s.tokenJob?.state === "running");
  const search = useSamples((s) => s.filters.search.trim());
  const { ensure, open, row } = useSamples.getState();
  const scroller = useRef<HTMLDivElement>(null);
  const win = useRowWindow(scroller, ROW_HEIGHT, total ?? 0, 8, HEAD_HEIGHT);
  const [active, setActive] = useState(0);

  useEffect(() => {
    ensure({ start: win.start, end: win.end });
  }, [win.start, win.end, gen, ensure]);
  // a new query starts at the top
  const datasetId = useSamples((s) => s.datasetId);
  useEffect(() => {
    if (scroller.current) scroller.current.scrollTop = 0;
    setActive(0);
  }, [datasetId]);

  const focusRow = (i: number) => {
    const n = total ?? 0;
    if (n === 0) return;
    const idx = Math.max(0, Math.min(n - 1, i));
    setActive(idx);
    const el = scroller.current;
    if (el) {
      const top = idx * ROW_HEIGHT; // in the body, which starts HEAD_HEIGHT below the scroller's top
      if (top < el.scrollTop) el.scrollTop = top;
      else if (top + ROW_HEIGHT + HEAD_HEIGHT > el.scrollTop + el.clientHeight) el.scrollTop = top + ROW_HEIGHT + HEAD_HEIGHT - el.clientHeight;
    }
    requestAnimationFrame(() => scroller.current?.querySelector<HTMLElement>(`[data-row="${idx}"]`)?.focus());
  };
  const onKey = (e: KeyboardEvent) => {
    const page = Math.max(1, Math.floor((scroller.current?.clientHeight ?? ROW_HEIGHT) / ROW_HEIGHT) - 1);
    const moves: Record<string, number> = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page };
    if (e.key in moves) focusRow(active + moves[e.key]);
    else if (e.key === "Home") focusRow(0);
    else if (e.key === "End") focusRow((total ?? 1) - 1);
    else if (e.key === "Enter" || e.key === " ") {
      const r = row(active);
      if (r) void open(r.id);
    } else return;
    e.preventDefault();
  };

  const rows = [];
  for (let i = win.start; i < win.end; i++) {
    const r = pages[Math.floor(i / PAGE_SIZE)]?.[i % PAGE_SIZE];
    const style = { transform: `translateY(${i * ROW_HEIGHT}px)` };
    if (!r) {
      rows.push(
        <div key={`p${i}`} role="row" aria-rowindex={i + 2} className="srow placeholder" style={style} data-row={i}>
          <div role="gridcell" className="c-index">{i + 1}</div>
          <div role="gridcell" className="c-preview">
            <span className="skeleton" />
          </div>
          <div role="gridcell" className="c-turns" />
          <div role="gridcell" className="c-tokens" />
          <div role="gridcell" className="c-flags" />
        </div>,
      );
      continue;
    }
    const tooLong = r.problems.includes("too_long");
    rows.push(
      <div
        key={r.id}
        role="row"
        aria-rowindex={i + 2}
        aria-selected={openId === r.id}
        tabIndex={i === active ? 0 : -1}
        className={`srow${openId === r.id ? " selected" : ""}${r.problems.length ? " has-problem" : ""}`}
        style={style}
        data-row={i}
        onClick={() => {
          setActive(i);
          void open(r.id);
        }}
      >
        <div role="gridcell" className="c-index mono">{r.index + 1}</div>
        <div role="gridcell" className="c-preview">
          <span className="p-user">{r.userPreview || "—"}</span>
          <span className="p-second">{search && r.snippet ? r.snippet : r.assistantPreview}</span>
        </div>
        <div role="gridcell" className="c-turns">{r.messageCount}</div>
        <div role="gridcell" className={`c-tokens mono${tooLong ? " over" : ""}`}>
          {r.tokens !== null ? r.tokens.toLocaleString() : tokenizer ? (counting ? "…" : "—") : "—"}
        </div>
        <div role="gridcell" className="c-flags">
          <Flags row={r} maxSeqLen={tokenizer?.maxSeqLen ?? null} />
        </div>
      </div>,
    );
  }

  return (
    <div className="grid-wrap">
      <div role="grid" aria-label={t("datasets.grid")} aria-rowcount={(total ?? 0) + 1} aria-colcount={5} className="sgrid" onKeyDown={onKey}>
        {/* one scroller holds the sticky header and the rows, so columns line up whatever the scrollbar's width */}
        <div className="sgrid-scroll" ref={scroller}>
          <div role="rowgroup" className="sgrid-head">
            <div role="row" aria-rowindex={1} className="srow head">
              <div role="columnheader" className="c-index">{t("datasets.col.index")}</div>
              <div role="columnheader" className="c-preview">{t("datasets.col.preview")}</div>
              <div role="columnheader" className="c-turns">{t("datasets.col.turns")}</div>
              <div role="columnheader" className="c-tokens">{t("datasets.col.tokens")}</div>
              <div role="columnheader" className="c-flags">{t("datasets.col.flags")}</div>
            </div>
          </div>
          <div role="rowgroup" className="sgrid-body" style={{ height: (total ?? 0) * ROW_HEIGHT }}>
            {rows}
          </div>
          {total === 0 && <p className="muted grid-empty">{t("datasets.noMatch")}</p>}
        </div>
      </div>
    </div>
  );
}
