// Quantize and GGUF export as job kinds ("quantize": a quantized model folder our engine runs; "gguf": a GGUF file
// for llama.cpp & co.). Each job runs the CLI's own code (`moe-studio quantize …` / `moe-studio export-gguf …`) in a
// child process (electron/jobs/cli-process.ts), so a slow or crashing job never blocks the main process or the engine
// worker, and a cancel is a SIGINT the command already handles (it removes its temporary output).
// Outputs go to the app's models folder (<models>/<name>, where downloads go too): the browser can only name a destination there.
// When the output is written it gets an origin sidecar (library/local.ts) and the kind measures both models — file size always; memory, tokens/s and accuracy when
// the engine can run the output (a quantized model folder) — and that comparison is the job's result.
//
// States, persistence, cancel, retry and remove are the job service's (electron/jobs/service.ts). After a crash the
// kind's interrupted() sweep removes the dead CLI's temporary output at once (its pid is in the job's detail).
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { RpcError, type Job, type JobLabel, type QuantizeResult } from "../contract.js";
import { cliJob, cliPath, type Cli } from "../jobs/cli-process.js";
import type { JobKindHandler } from "../jobs/kind.js";
import type { JobService, SavedDetail } from "../jobs/service.js";
import type { JobsStore } from "../store/jobs.js";
import { recordOrigin } from "../library/local.js";
import { TextTokenizer } from "../text/tokenizer.js";
import { pidGoneSince, sweepLeftovers } from "./leftovers.js";

export { cliPath };

/** Bytes of a model's weights: a file's size, or the *.safetensors files of a folder. */
export function modelBytes(path: string): number {
  const s = statSync(path);
  if (s.isFile()) return s.size;
  return readdirSync(path)
    .filter((f) => f.endsWith(".safetensors"))
    .reduce((a, f) => a + statSync(join(path, f)).size, 0);
}

/** The fixed token stream accuracy is measured on (English and Chinese, like the app's users). */
export const ACCURACY_TEXT =
  "The quick brown fox jumps over the lazy dog. Mixture-of-Experts models route each token to a few experts. " +
  "量化把权重从十六位压缩到八位或四位，模型变小，速度变快。";
const ACCURACY_TOKENS = 32;

/** Mean KL(p ‖ q) of the next-token distributions (softmax of each logits row) and the top-1 agreement. */
export function compareLogits(p: number[][], q: number[][]): { kl: number; top1: number } {
  if (p.length !== q.length || p.length === 0) throw new Error(`logits rows differ: ${p.length} vs ${q.length}`);
  let kl = 0;
  let agree = 0;
  for (let i = 0; i < p.length; i++) {
    const a = p[i];
    const b = q[i];
    if (a.length !== b.length) throw new Error(`vocabulary sizes differ: ${a.length} vs ${b.length}`);
    // log-softmax with the max subtracted; KL = Σ p (log p - log q)
    const lse = (x: number[]) => {
      let m = -Infinity;
      for (const v of x) if (v > m) m = v;
      let s = 0;
      for (const v of x) s += Math.exp(v - m);
      return m + Math.log(s);
    };
    const la = lse(a);
    const lb = lse(b);
    let k = 0;
    let ia = 0;
    let ib = 0;
    for (let t = 0; t < a.length; t++) {
      const lpa = a[t] - la;
      k += Math.exp(lpa) * (lpa - (b[t] - lb));
      if (a[t] > a[ia]) ia = t;
      if (b[t] > b[ib]) ib = t;
    }
    kl += Math.max(0, k);
    if (ia === ib) agree++;
  }
  return { kl: kl / p.length, top1: agree / p.length };
}

/** "decode: 16 tokens in … = 53.10 tok/s" etc. from `moe-studio bench`. */
export function parseBench(out: string): { prefill: number | null; decode: number | null; peakBytes: number | null } {
  const num = (re: RegExp) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : null;
  };
  const mib = num(/peak RSS: ([\d.]+) MiB/);
  return { prefill: num(/prefill: .* = ([\d.]+) tok\/s/), decode: num(/decode: .* = ([\d.]+) tok\/s/), peakBytes: mib === null ? null : mib * 1024 * 1024 };
}

/** What a quantize or gguf job is started with (and retried with): the output path is fixed at the first start. */
export interface QuantizeParams {
  sourceDir: string;
  target: "gguf" | "model";
  format: "f16" | "q8_0" | "q4_0" | "q4_k";
  output: string;
}

/** The job detail the CLI runner saves: the pid of the CLI working on it and when it was seen. */
interface CliDetail {
  pid?: number;
  pidSeenAt?: number;
}

const FORMAT_NAMES: Record<QuantizeParams["format"], string> = { f16: "F16", q8_0: "Q8_0", q4_0: "Q4_0", q4_k: "Q4_K" };

/** A job's line in the activity panel: the output's name, as the Quantize panel and the models folder show it. */
function title(p: QuantizeParams): string {
  return p.target === "gguf" ? `Export ${basename(p.output)} (GGUF ${FORMAT_NAMES[p.format]})` : `Quantize ${basename(p.output)} (${FORMAT_NAMES[p.format]})`;
}

function label(p: QuantizeParams): JobLabel {
  return { key: p.target === "gguf" ? "gguf" : "quantize", args: { name: basename(p.output), format: FORMAT_NAMES[p.format] } };
}

/** A row the quantize service wrote before the job system (detail: { job: the old QuantizeJob, pid }). */
interface LegacyDetail {
  job: {
    id: string;
    target: QuantizeParams["target"];
    format: QuantizeParams["format"];
    sourceDir: string;
    output: string;
    state: string;
    progress: number;
    message: string | null;
    notes: string[];
    result: Omit<QuantizeResult, "target" | "format" | "output" | "notes"> | null;
  };
  pid: number | null;
}

/**
 * Rewrites the rows an earlier version's quantize service kept (kind "quantize", its own detail) into the job
 * service's form, so that a job interrupted or finished before the update is still listed — and one that was
 * running is turned into interrupted, its dead CLI's leftovers swept, like any other. Run before the JobService is
 * constructed on the same store; rows already in the new form are left as they are.
 */
export function upgradeLegacyQuantizeRows(store: JobsStore): number {
  let n = 0;
  for (const r of store.list<LegacyDetail | SavedDetail>("quantize")) {
    const d = r.detail as LegacyDetail;
    if (!d || typeof d !== "object" || "params" in d || !d.job || d.job.id !== r.id) continue;
    const j = d.job;
    const params: QuantizeParams = { sourceDir: j.sourceDir, target: j.target, format: j.format, output: j.output };
    const status = j.state === "comparing" ? "running" : j.state === "error" ? "failed" : j.state;
    const detail: SavedDetail = {
      params,
      detail: j.state === "running" || j.state === "comparing" ? { ...(d.pid === null ? {} : { pid: d.pid }), pidSeenAt: r.updatedAt } : {},
      title: title(params),
      label: label(params),
      subject: params.sourceDir,
      progress: { done: j.progress, total: 1, unit: "fraction" },
      message: status === "failed" ? null : j.message,
      result: j.result ? { ...j.result, target: j.target, format: j.format, output: j.output, notes: j.notes } : null,
    };
    store.delete(r.id);
    store.save({ ...r, kind: j.target === "gguf" ? "gguf" : "quantize", status, detail, error: status === "failed" ? j.message : null });
    n++;
  }
  return n;
}

export class QuantizeService {
  constructor(
    /** The app's models folder, the one downloads go to (LibraryService.modelsDir: a setting, else <data>/models). */
    private readonly modelsDir: () => string,
    private readonly jobs: JobService,
  ) {
    jobs.register(this.kind("quantize"));
    jobs.register(this.kind("gguf"));
  }

  folder(): string {
    return this.modelsDir();
  }

  start(i: { dir: string; target: QuantizeParams["target"]; format: QuantizeParams["format"]; name: string }): Job {
    const dir = resolve(i.dir);
    if (i.target === "model" && i.format === "f16") throw new RpcError("invalid_input", "a quantized model folder is q8_0, q4_0 or q4_k (f16 is for GGUF export)");
    const name = i.target === "gguf" && !i.name.toLowerCase().endsWith(".gguf") ? `${i.name}.gguf` : i.name;
    const params: QuantizeParams = { sourceDir: dir, target: i.target, format: i.format, output: join(this.folder(), name) };
    return this.jobs.start(i.target === "gguf" ? "gguf" : "quantize", params);
  }

  private kind(kind: "quantize" | "gguf"): JobKindHandler<QuantizeParams> {
    return {
      kind,
      canPause: false,
      canResume: false,
      title,
      label,
      subject: (p) => p.sourceDir,
      // at a start and at a retry (the source may be gone, the name taken since)
      validate: (p) => {
        if (!existsSync(join(p.sourceDir, "config.json"))) throw new RpcError("not_found", `${p.sourceDir}: not a model folder (no config.json)`);
        if (this.jobs.list().some((j) => (j.kind === "quantize" || j.kind === "gguf") && (j.status === "running" || j.status === "pausing"))) {
          throw new RpcError("busy", "a quantize job is already running; wait for it or cancel it");
        }
        if (existsSync(p.output)) throw new RpcError("invalid_input", `${p.output} already exists; choose another name`);
      },
      start: (p, report) =>
        cliJob(async (cli) => {
          const t0 = performance.now();
          mkdirSync(dirname(p.output), { recursive: true });
          const notes: string[] = [];
          const onLine = (line: string) => {
            // export-gguf --json: "progress DONE TOTAL"; quantize: "quantize:  42%  <tensor>"
            const m = /^progress (\d+) (\d+)$/.exec(line);
            const pct = /^quantize:\s+(\d+)%/.exec(line);
            if (m) report.progress(Number(m[2]) > 0 ? Number(m[1]) / Number(m[2]) : 0, 1, "fraction");
            else if (pct) report.progress(Number(pct[1]) / 100, 1, "fraction");
            else if (line.startsWith("export-gguf: note: ")) notes.push(line.slice("export-gguf: note: ".length));
            else return false;
            return true;
          };
          if (p.target === "gguf") {
            await cli(["export-gguf", "--model", p.sourceDir, "--type", p.format, "--out", p.output, "--json"], { onLine });
          } else {
            const bits = p.format === "q8_0" ? "8" : "4";
            await cli(["quantize", "--model", p.sourceDir, "--bits", bits, "--format", p.format, "--out", p.output], { onLine });
          }
          report.progress(1, 1, "fraction");
          // the Models view names it "Quantized … from <source>" (library/local.ts); written before the comparison, which
          // takes a while, so the listing has it as soon as the output exists. Not recorded: a note, the output stays.
          const why = recordOrigin(p.output, { origin: "quantize", source: p.sourceDir, format: p.format });
          if (why) notes.push(why);
          if (p.target === "gguf") {
            const side = (path: string) => ({ path, fileBytes: modelBytes(path), memoryBytes: null, prefillTokensPerSecond: null, decodeTokensPerSecond: null });
            notes.push("GGUF files run in llama.cpp, Ollama, LM Studio and Jan; MoE Studio's engine runs quantized model folders, so only the sizes are compared here.");
            const result: QuantizeResult = { target: p.target, format: p.format, output: p.output, notes, source: side(p.sourceDir), quantized: side(p.output), klDivergence: null, top1Agreement: null, seconds: (performance.now() - t0) / 1000 };
            return result;
          }
          report.message("Comparing the quantized model with the original: size, memory, speed and accuracy");
          const c = await compare(cli, p.sourceDir, p.output);
          const result: QuantizeResult = { target: p.target, format: p.format, output: p.output, notes, ...c, seconds: (performance.now() - t0) / 1000 };
          return result;
        }, { report }),
      interrupted: (p, d: CliDetail) => {
        // the CLI we spawned shares our pid namespace, so "gone" is certain: no need for the sweep's age guard. A
        // process with its pid that began after it was seen is another one (reuse).
        if (typeof d.pid === "number" && pidGoneSince(d.pid, d.pidSeenAt ?? 0)) {
          sweepLeftovers([dirname(p.output)], { minAgeMs: 0, match: (l) => l.pid === d.pid && l.target === p.output });
        }
      },
    };
  }
}

/**
 * Both models measured the same way, each in its own process (so memory is that model's): `moe-studio bench`
 * (32 prompt tokens, 16 generated: prefill/decode tokens/s and peak RSS) and `moe-studio logits` on the fixed
 * token stream for KL and top-1.
 */
export async function compare(cli: Cli, src: string, out: string) {
  const ids = TextTokenizer.fromFolder(src).encode(ACCURACY_TEXT, { addSpecialTokens: false }).slice(0, ACCURACY_TOKENS);
  const measure = async (dir: string) => {
    const b = parseBench(await cli(["bench", "--model", dir, "--prompt-tokens", "32", "--gen-tokens", "16"]));
    const logits = (JSON.parse(await cli(["logits", "--model", dir, "--ids", ids.join(",")])) as { logits: number[][] }).logits;
    return { side: { path: dir, fileBytes: modelBytes(dir), memoryBytes: b.peakBytes, prefillTokensPerSecond: b.prefill, decodeTokensPerSecond: b.decode }, logits };
  };
  const a = await measure(src);
  const b = await measure(out);
  const { kl, top1 } = compareLogits(a.logits, b.logits);
  return { source: a.side, quantized: b.side, klDivergence: kl, top1Agreement: top1 };
}
