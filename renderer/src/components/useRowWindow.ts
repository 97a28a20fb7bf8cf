// The rows a fixed-row-height scroller shows now: follows scroll (once per animation frame) and resizes.
import { useEffect, useState, type RefObject } from "react";
import { rowWindow, type RowWindow } from "../virtual.js";

/** `offset`: pixels above the first row inside the scroller (a sticky header), not part of the rows. */
export function useRowWindow(ref: RefObject<HTMLElement | null>, rowHeight: number, total: number, overscan = 8, offset = 0): RowWindow & { scrollTop: number; height: number } {
  const [view, setView] = useState({ scrollTop: 0, height: 0 });
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    let frame = 0;
    const read = () => {
      frame = 0;
      setView((v) => (v.scrollTop === el.scrollTop && v.height === el.clientHeight ? v : { scrollTop: el.scrollTop, height: el.clientHeight }));
    };
    const onScroll = () => {
      if (!frame) frame = requestAnimationFrame(read);
    };
    read();
    el.addEventListener("scroll", onScroll, { passive: true });
    const ro = new ResizeObserver(onScroll);
    ro.observe(el);
    return () => {
      el.removeEventListener("scroll", onScroll);
      ro.disconnect();
      if (frame) cancelAnimationFrame(frame);
    };
  }, [ref]);
  return { ...rowWindow(view.scrollTop - offset, view.height - offset, rowHeight, total, overscan), ...view };
}
