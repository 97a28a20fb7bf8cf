// What `moe-studio pull` prints on a terminal: one progress line (bar, percent, bytes, speed, ETA, current file),
// cut to the terminal's width.
import { describe, expect, it } from "vitest";
import { formatEta, progressLine } from "../../electron/cli/pull.js";
import type { DownloadProgress } from "../../electron/library/downloader.js";

const p: DownloadProgress = {
  id: "Qwen--Qwen3-0.6B",
  repo: "Qwen/Qwen3-0.6B",
  source: "hf",
  dir: "/m/Qwen--Qwen3-0.6B",
  state: "downloading",
  totalBytes: 1_503_300_000,
  doneBytes: 616_353_000,
  bytesPerSecond: 12_400_000,
  etaSeconds: 72,
  files: [
    { path: "config.json", size: 726, doneBytes: 726, state: "done" },
    { path: "model.safetensors", size: 1_503_299_274, doneBytes: 616_352_274, state: "downloading" },
  ],
  error: null,
  errorKind: null,
};

describe("pull's progress line", () => {
  it("bar, percent, bytes, speed, ETA and the file being fetched", () => {
    expect(progressLine(p, 120)).toBe("[########------------]  41%  616.4 MB / 1.5 GB  12.4 MB/s  ETA 1:12  model.safetensors");
    expect(progressLine(p, 40)).toHaveLength(39);
    expect(formatEta(3725)).toBe("1:02:05");
    expect(formatEta(null)).toBe("--:--");
  });
});
