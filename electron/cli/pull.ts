// `moe-studio pull REPO_ID`: download a model from the Hugging Face hub (or a mirror: --endpoint / HF_ENDPOINT) or
// ModelScope into the models folder, with the same resumable, checksummed downloader as the app. A progress bar on a
// terminal; plain lines (each file done, every 10 %) when the output is a pipe or a log. Ctrl-C pauses: the partial
// files stay, and the same command resumes from them. A file the hub lists without a checksum is "size-checked",
// never "verified", and named again at the end; --require-checksums refuses such a model before fetching a byte.
import { join } from "node:path";
import { DownloadStopped, ModelDownload, type DownloadProgress } from "../library/downloader.js";
import { checkRepoId, type HubSource } from "../library/hub.js";
import { sweepLeftovers } from "../services/leftovers.js";
import { defaultDataDir } from "../services/paths.js";

type Flags = Record<string, string | true>;

export interface PullIo {
  out: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
}

const str = (flags: Flags, k: string) => (typeof flags[k] === "string" ? (flags[k] as string) : undefined);

export function formatBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function formatEta(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return "--:--";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}` : `${m}:${String(sec).padStart(2, "0")}`;
}

/** One line: "[########------------]  41%  120.3 MB / 293.1 MB  12.4 MB/s  ETA 0:14  model-00002-of-00003.safetensors" */
export function progressLine(p: DownloadProgress, width = 80): string {
  const frac = p.totalBytes > 0 ? p.doneBytes / p.totalBytes : 0;
  const bar = 20;
  const filled = Math.round(frac * bar);
  const current = p.files.find((f) => f.state === "downloading" || f.state === "verifying")?.path ?? "";
  const line = `[${"#".repeat(filled)}${"-".repeat(bar - filled)}] ${String(Math.floor(frac * 100)).padStart(3)}%  ${formatBytes(p.doneBytes)} / ${formatBytes(p.totalBytes)}  ${formatBytes(p.bytesPerSecond)}/s  ETA ${formatEta(p.etaSeconds)}  ${current}`;
  return line.length > width - 1 ? line.slice(0, width - 1) : line;
}

export async function cmdPull(repoArg: string | undefined, flags: Flags, io: PullIo = { out: process.stdout, env: process.env }): Promise<number> {
  if (!repoArg) throw new Error("pull needs a model id, e.g. moe-studio pull Qwen/Qwen3-0.6B");
  const repo = checkRepoId(repoArg);
  const source = (str(flags, "source") ?? "hf") as HubSource;
  if (source !== "hf" && source !== "modelscope") throw new Error(`--source must be hf or modelscope, got "${source}"`);
  // as huggingface-cli: HF_ENDPOINT and HF_TOKEN (flags win)
  const endpoint = str(flags, "endpoint") ?? (source === "hf" ? io.env.HF_ENDPOINT : undefined);
  const token = str(flags, "token") ?? (source === "hf" ? io.env.HF_TOKEN : undefined) ?? null;
  const modelsDir = str(flags, "dir") ?? join(defaultDataDir(io.env), "models");
  const stall = Number(io.env.MOE_STUDIO_STALL_MS);
  // temporary files of an earlier pull, quantize or export into this folder that was killed (never resumable state)
  sweepLeftovers([modelsDir]);
  const tty = !!io.out.isTTY;
  let lastPct = -1;
  let filesDone = 0;

  const onProgress = (p: DownloadProgress) => {
    if (tty) {
      io.out.write(`\r${progressLine(p, (io.out as { columns?: number }).columns ?? 80)}\x1b[K`);
      return;
    }
    const done = p.files.filter((f) => f.state === "done");
    if (done.length > filesDone) {
      for (const f of done.slice(filesDone)) io.out.write(`${f.checksum === "none" ? "size-checked" : "verified"} ${f.path} (${formatBytes(f.size)})\n`);
      filesDone = done.length;
    }
    const pct = p.totalBytes > 0 ? Math.floor((p.doneBytes / p.totalBytes) * 10) * 10 : 0;
    if (p.state === "downloading" && pct > lastPct) {
      lastPct = pct;
      io.out.write(`${pct}% ${formatBytes(p.doneBytes)} / ${formatBytes(p.totalBytes)} ${formatBytes(p.bytesPerSecond)}/s ETA ${formatEta(p.etaSeconds)}\n`);
    }
  };

  const d = new ModelDownload({
    modelsDir,
    repo,
    source,
    ...(endpoint ? { endpoint } : {}),
    ...(str(flags, "revision") ? { revision: str(flags, "revision") } : {}),
    token,
    ...(stall > 0 ? { stallMs: stall } : {}),
    ...(flags["require-checksums"] === true ? { requireChecksums: true } : {}),
    onProgress,
    progressMs: tty ? 100 : 500,
  });
  const resumed = d.progress();
  if (resumed.state === "paused" || resumed.state === "interrupted") {
    filesDone = resumed.files.filter((f) => f.state === "done").length;
    io.out.write(`resuming ${repo}: ${formatBytes(resumed.doneBytes)} of ${formatBytes(resumed.totalBytes)} already here\n`);
  } else {
    io.out.write(`pulling ${repo} from ${source === "hf" ? (endpoint ?? "https://huggingface.co") : (endpoint ?? "ModelScope")}\n`);
  }
  const onSigint = () => void d.pause();
  process.once("SIGINT", onSigint);
  try {
    const dir = await d.start();
    if (tty) io.out.write("\n");
    const unchecked = d.progress().files.filter((f) => f.checksum === "none").map((f) => f.path);
    if (unchecked.length > 0) io.out.write(`no checksum from the hub (size-checked only): ${unchecked.join(", ")}\n`);
    io.out.write(`done: ${dir}\n`);
    return 0;
  } catch (e) {
    if (tty) io.out.write("\n");
    if (e instanceof DownloadStopped) {
      io.out.write(`paused: run the same command again to resume\n`);
      return 130;
    }
    throw e;
  } finally {
    process.off("SIGINT", onSigint);
  }
}
