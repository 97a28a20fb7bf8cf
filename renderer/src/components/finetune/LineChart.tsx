// A small SVG line chart (no chart library: the app ships no dependency for one chart). Series against step on a
// left axis and optionally a right one; each series is a class (colour comes from styles.css, so both themes work
// and no inline style is needed). The chart is a figure with a text summary; the numbers themselves are in the
// table the caller shows beside it.
import type { ReactElement } from "react";

export interface ChartSeries {
  id: string;
  label: string;
  points: [number, number][];
  /** finetune-s-<tone>: colour and stroke in styles.css */
  tone: string;
  axis?: "left" | "right";
  /** dots instead of a line (evaluations are sparse) */
  dots?: boolean;
}

const W = 640;
const H = 260;
// the top margin holds the axis names, so the highest tick never sits on them
const PAD = { l: 52, r: 56, t: 24, b: 28 };

/** Round tick values over [lo, hi]: 1, 2 or 5 × 10^k steps, about `n` of them. */
export function ticks(lo: number, hi: number, n = 4): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

export function fmtTick(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  // small learning rates: as many digits as the tick needs (9.5e-3 beside 1e-2), never two ticks reading the same
  return a >= 1e4 || a < 1e-2 ? Number(v.toPrecision(3)).toExponential() : String(Number(v.toPrecision(3)));
}

function extent(series: ChartSeries[], axis: "left" | "right"): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of series) if ((s.axis ?? "left") === axis) for (const [, y] of s.points) if (Number.isFinite(y)) (lo = Math.min(lo, y)), (hi = Math.max(hi, y));
  if (lo === Infinity) return null;
  if (lo === hi) return [lo - (lo === 0 ? 1 : Math.abs(lo) * 0.1), hi + (hi === 0 ? 1 : Math.abs(hi) * 0.1)];
  const pad = (hi - lo) * 0.05;
  return [Math.max(lo >= 0 ? 0 : -Infinity, lo - pad), hi + pad];
}

export function LineChart({ series, label, xLabel, leftLabel, rightLabel }: { series: ChartSeries[]; label: string; xLabel: string; leftLabel: string; rightLabel?: string }): ReactElement {
  let x0 = Infinity;
  let x1 = -Infinity;
  for (const s of series) for (const [x] of s.points) (x0 = Math.min(x0, x)), (x1 = Math.max(x1, x));
  if (x0 === Infinity) (x0 = 0), (x1 = 1);
  if (x0 === x1) x1 = x0 + 1;
  const left = extent(series, "left");
  const right = extent(series, "right");
  const sx = (x: number) => PAD.l + ((x - x0) / (x1 - x0)) * (W - PAD.l - PAD.r);
  const sy = (y: number, [lo, hi]: [number, number]) => PAD.t + (1 - (y - lo) / (hi - lo)) * (H - PAD.t - PAD.b);
  const path = (s: ChartSeries, dom: [number, number]) =>
    s.points.map(([x, y], i) => `${i === 0 ? "M" : "L"}${sx(x).toFixed(1)},${sy(y, dom).toFixed(1)}`).join("");

  return (
    <svg className="finetune-chart" viewBox={`0 0 ${W} ${H}`} role="img" aria-label={label} preserveAspectRatio="none">
      <rect className="finetune-chart-bg" x={PAD.l} y={PAD.t} width={W - PAD.l - PAD.r} height={H - PAD.t - PAD.b} />
      {left &&
        ticks(left[0], left[1]).map((v) => (
          <g key={`l${v}`}>
            <line className="finetune-grid" x1={PAD.l} x2={W - PAD.r} y1={sy(v, left)} y2={sy(v, left)} />
            <text className="finetune-tick" x={PAD.l - 6} y={sy(v, left) + 4} textAnchor="end">
              {fmtTick(v)}
            </text>
          </g>
        ))}
      {right &&
        ticks(right[0], right[1]).map((v) => (
          <text key={`r${v}`} className="finetune-tick" x={W - PAD.r + 6} y={sy(v, right) + 4} textAnchor="start">
            {fmtTick(v)}
          </text>
        ))}
      {ticks(x0, x1, 5)
        .filter((v) => Number.isInteger(v))
        .map((v) => (
          <text key={`x${v}`} className="finetune-tick" x={sx(v)} y={H - PAD.b + 16} textAnchor="middle">
            {v}
          </text>
        ))}
      <text className="finetune-axis" x={W / 2} y={H - 2} textAnchor="middle">
        {xLabel}
      </text>
      <text className="finetune-axis" x={4} y={2} textAnchor="start" dominantBaseline="hanging">
        {leftLabel}
      </text>
      {rightLabel && right && (
        <text className="finetune-axis" x={W - 4} y={2} textAnchor="end" dominantBaseline="hanging">
          {rightLabel}
        </text>
      )}
      {series.map((s) => {
        const dom = (s.axis ?? "left") === "left" ? left : right;
        if (!dom || s.points.length === 0) return null;
        return s.dots || s.points.length === 1 ? (
          <g key={s.id} className={`finetune-s finetune-s-${s.tone}`}>
            {s.points.map(([x, y]) => (
              <circle key={x} cx={sx(x)} cy={sy(y, dom)} r={3} />
            ))}
          </g>
        ) : (
          <path key={s.id} className={`finetune-s finetune-s-${s.tone}`} d={path(s, dom)} />
        );
      })}
    </svg>
  );
}
