// Windowing for long lists with a fixed row height: which rows are on screen, and which pages of rows to fetch.
// With row height h, viewport height v and scroll offset s, the rows that intersect the viewport are
//   first = floor(s / h),  last = min(total, ceil((s + v) / h))        (last exclusive)
// and `overscan` extra rows on each side keep a fast scroll from showing blank rows before React repaints.

export interface RowWindow {
  /** First row to render (inclusive). */
  start: number;
  /** One past the last row to render. */
  end: number;
}

export function rowWindow(scrollTop: number, viewport: number, rowHeight: number, total: number, overscan = 8): RowWindow {
  if (total <= 0 || rowHeight <= 0) return { start: 0, end: 0 };
  const first = Math.max(0, Math.floor(Math.max(0, scrollTop) / rowHeight));
  const last = Math.min(total, Math.ceil((Math.max(0, scrollTop) + Math.max(0, viewport)) / rowHeight));
  const start = Math.max(0, Math.min(first, total - 1) - overscan);
  const end = Math.min(total, Math.max(last, start + 1) + overscan);
  return { start, end };
}

/** Page numbers (of `pageSize` rows each) that hold rows [start, end). */
export function pagesFor(win: RowWindow, pageSize: number): number[] {
  if (win.end <= win.start) return [];
  const out: number[] = [];
  for (let p = Math.floor(win.start / pageSize); p * pageSize < win.end; p++) out.push(p);
  return out;
}
