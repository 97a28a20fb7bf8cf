// Quantize / export jobs for the app: each runs the CLI's own code (`moe-studio export-gguf …` or
// `moe-studio quantize …`) in a child process, so a slow or crashing job never blocks the main process or the
// engine worker, and a cancel is a SIGINT the command already handles (it removes its temporary output).
// Outputs go to the app's models folder (<models>/<name>, where downloads go too): the browser can only name a destination there.
// When a job is done the service measures both models: file size always; memory, tokens/s and accuracy when the
// engine can run the output (a quantized model folder; a GGUF file is for llama.cpp and friends).
//
// With a JobsStore the jobs outlive the process: each is saved when it starts, on every state change and at most once
// a second of progress, with the pid of the CLI doing the work. A job still "running" or "comparing" at the next start
// was cut off by a crash or a forced quit: it is listed as "interrupted" (Retry starts it again, Remove forgets it),
// and its CLI's temporary output is removed at once when that process is gone (services/leftovers.ts).
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { RpcError, type QuantizeJob } from "../contract.js";
import type { JobsStore } from "../store/jobs.js";
import { TextTokenizer } from "../text/tokenizer.js";
import { pidGoneSince, sweepLeftovers } from "./leftovers.js";
import type { Emit } from "./models.js";

import { cliPath } from "../jobs/cli-process.js";

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

interface Running {
  job: QuantizeJob;
  child: ChildProcess | null;
  cancelled: boolean;
  /** When the job started (ms since the epoch), and the pid of the CLI that last worked on it. */
  startedAt: number;
  pid: number | null;
  savedAt: number;
}

/** The jobs table's detail for a quantize job. */
interface QuantizeDetail {
  job: QuantizeJob;
  pid: number | null;
}

const JOB_KIND = "quantize";
/** Saved at most this often while only the progress changes (state changes are saved at once). */
const SAVE_PROGRESS_MS = 1_000;
/** Finished jobs kept in the list across restarts (the oldest beyond this are forgotten at start). */
const KEEP_FINISHED = 50;
const ACTIVE: readonly QuantizeJob["state"][] = ["running", "comparing"];

export class QuantizeService {
  private jobs = new Map<string, Running>();
  private disposed = false;

  constructor(
    /** The app's models folder, the one downloads go to (LibraryService.modelsDir: a setting, else <data>/models). */
    private readonly modelsDir: () => string,
    private readonly emit: Emit,
    /** Where jobs are kept across restarts; without it they live in memory only. */
    private readonly store: JobsStore | null = null,
  ) {
    if (store) this.restore(store);
  }

  /** The jobs of an earlier run: an active one was cut off (interrupted); its dead CLI's temporary output goes now. */
  private restore(store: JobsStore): void {
    const records = store.list<QuantizeDetail>(JOB_KIND).filter((r) => r.detail?.job?.id === r.id);
    const finished = records.filter((r) => !ACTIVE.includes(r.detail.job.state));
    const forget = new Set(finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED)).map((r) => r.id));
    for (const r of records) {
      if (forget.has(r.id)) {
        store.delete(r.id);
        continue;
      }
      let job = r.detail.job;
      const pid = r.detail.pid;
      if (ACTIVE.includes(job.state)) {
        job = { ...job, state: "interrupted", message: "MoE Studio stopped while this job was running (a crash or a forced quit)" };
        // the CLI we spawned shares our pid namespace, so "gone" is certain: no need for the sweep's age guard. The
        // record was saved while that CLI ran, so a process with its pid that began later is another one (reuse).
        if (pid !== null && pidGoneSince(pid, r.updatedAt)) sweepLeftovers([dirname(job.output)], { minAgeMs: 0, match: (l) => l.pid === pid && l.target === job.output });
        store.save({ id: r.id, kind: JOB_KIND, status: job.state, startedAt: r.startedAt, updatedAt: Date.now(), detail: { job, pid }, error: job.message });
      }
      this.jobs.set(job.id, { job, child: null, cancelled: false, startedAt: r.startedAt, pid, savedAt: 0 });
    }
  }

  private save(r: Running): void {
    // after dispose() the database is closing: a job still running then is left "running", so that the next start
    // lists it as interrupted (which it was: the app stopped it)
    if (!this.store || this.disposed) return;
    r.savedAt = Date.now();
    const error = r.job.state === "error" || r.job.state === "interrupted" ? r.job.message : null;
    try {
      this.store.save({ id: r.job.id, kind: JOB_KIND, status: r.job.state, startedAt: r.startedAt, updatedAt: r.savedAt, detail: { job: r.job, pid: r.pid }, error });
    } catch {
      // a full or read-only disk: the job goes on, only its record is behind (it is saved again on the next change)
    }
  }

  folder(): string {
    return this.modelsDir();
  }

  list(): QuantizeJob[] {
    return [...this.jobs.values()].map((r) => r.job);
  }

  start(i: { dir: string; target: QuantizeJob["target"]; format: QuantizeJob["format"]; name: string }): QuantizeJob {
    const dir = resolve(i.dir);
    if (!existsSync(join(dir, "config.json"))) throw new RpcError("not_found", `${dir}: not a model folder (no config.json)`);
    if ([...this.jobs.values()].some((r) => r.job.state === "running" || r.job.state === "comparing")) {
      throw new RpcError("busy", "a quantize job is already running; wait for it or cancel it");
    }
    if (i.target === "model" && i.format === "f16") throw new RpcError("invalid_input", "a quantized model folder is q8_0, q4_0 or q4_k (f16 is for GGUF export)");
    mkdirSync(this.folder(), { recursive: true });
    const name = i.target === "gguf" && !i.name.toLowerCase().endsWith(".gguf") ? `${i.name}.gguf` : i.name;
    const output = join(this.folder(), name);
    if (existsSync(output)) throw new RpcError("invalid_input", `${output} already exists; choose another name`);
    const job: QuantizeJob = { id: randomUUID(), target: i.target, format: i.format, sourceDir: dir, output, state: "running", progress: 0, message: null, notes: [], result: null };
    const run: Running = { job, child: null, cancelled: false, startedAt: Date.now(), pid: null, savedAt: 0 };
    this.jobs.set(job.id, run);
    this.save(run);
    this.emit("quantize.job", job);
    void this.run(run);
    return job;
  }

  cancel(id: string) {
    const r = this.jobs.get(id);
    if (!r) throw new RpcError("not_found", `no quantize job ${id}`);
    if (r.job.state === "running" || r.job.state === "comparing") {
      r.cancelled = true;
      r.child?.kill("SIGINT");
    }
    return { ok: true as const };
  }

  /** Forgets a job that is not running (its output, if any, stays). */
  remove(id: string) {
    const r = this.jobs.get(id);
    if (!r) throw new RpcError("not_found", `no quantize job ${id}`);
    if (ACTIVE.includes(r.job.state)) throw new RpcError("busy", "the job is running: cancel it first");
    this.jobs.delete(id);
    this.store?.delete(id);
    return { ok: true as const };
  }

  /** Starts an interrupted, failed or cancelled job again (same model, format and output name), in place of the old one. */
  retry(id: string): QuantizeJob {
    const r = this.jobs.get(id);
    if (!r) throw new RpcError("not_found", `no quantize job ${id}`);
    if (r.job.state !== "interrupted" && r.job.state !== "error" && r.job.state !== "cancelled") {
      throw new RpcError("invalid_input", `the job is ${r.job.state}: only an interrupted, failed or cancelled job can be retried`);
    }
    const job = this.start({ dir: r.job.sourceDir, target: r.job.target, format: r.job.format, name: basename(r.job.output) });
    this.remove(id);
    return job;
  }

  private update(r: Running, patch: Partial<QuantizeJob>) {
    const stateChanged = patch.state !== undefined && patch.state !== r.job.state;
    r.job = { ...r.job, ...patch };
    if (stateChanged || Date.now() - r.savedAt >= SAVE_PROGRESS_MS) this.save(r);
    this.emit("quantize.job", r.job);
  }

  /** Runs `moe-studio ARGS`; progress lines update the job; resolves with stdout, rejects with the error line. */
  private command(r: Running, args: string[], onProgress?: (f: number) => void): Promise<string> {
    return new Promise((resolvePromise, reject) => {
      const child = spawn(process.execPath, [cliPath(), ...args], { env: { ...process.env, ELECTRON_RUN_AS_NODE: "1" }, stdio: ["ignore", "pipe", "pipe"] });
      r.child = child;
      if (child.pid !== undefined && child.pid !== r.pid) {
        r.pid = child.pid;
        this.save(r);
      }
      let out = "";
      let errTail = "";
      let buf = "";
      child.stdout!.on("data", (d: Buffer) => (out += d.toString("utf8")));
      child.stderr!.on("data", (d: Buffer) => {
        buf += d.toString("utf8");
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          // export-gguf --json: "progress DONE TOTAL"; quantize: "quantize:  42%  <tensor>"
          const m = /^progress (\d+) (\d+)$/.exec(line);
          const pct = /^quantize:\s+(\d+)%/.exec(line);
          if (m && onProgress) onProgress(Number(m[2]) > 0 ? Number(m[1]) / Number(m[2]) : 0);
          else if (pct && onProgress) onProgress(Number(pct[1]) / 100);
          else if (line.startsWith("export-gguf: note: ")) r.job.notes.push(line.slice("export-gguf: note: ".length));
          else if (line.trim()) errTail = line;
        }
      });
      child.on("error", reject);
      child.on("close", (code) => {
        r.child = null;
        if (code === 0) resolvePromise(out);
        else reject(new Error(errTail.replace(/^moe-studio: /, "") || `exited with code ${code}`));
      });
    });
  }

  private async run(r: Running) {
    const t0 = performance.now();
    const { job } = r;
    try {
      let lastEmit = 0;
      const onProgress = (f: number) => {
        const now = performance.now();
        if (now - lastEmit > 100 || f >= 1) {
          lastEmit = now;
          this.update(r, { progress: f });
        }
      };
      if (job.target === "gguf") {
        await this.command(r, ["export-gguf", "--model", job.sourceDir, "--type", job.format, "--out", job.output, "--json"], onProgress);
      } else {
        const bits = job.format === "q8_0" ? "8" : "4";
        await this.command(r, ["quantize", "--model", job.sourceDir, "--bits", bits, "--format", job.format, "--out", job.output], onProgress);
      }
      this.update(r, { progress: 1, state: "comparing" });
      const notes = [...r.job.notes];
      if (job.target === "gguf") {
        const side = (path: string) => ({ path, fileBytes: modelBytes(path), memoryBytes: null, prefillTokensPerSecond: null, decodeTokensPerSecond: null });
        notes.push("GGUF files run in llama.cpp, Ollama, LM Studio and Jan; MoE Studio's engine runs quantized model folders, so only the sizes are compared here.");
        this.update(r, { state: "done", notes, result: { source: side(job.sourceDir), quantized: side(job.output), klDivergence: null, top1Agreement: null, seconds: (performance.now() - t0) / 1000 } });
      } else {
        const c = await this.compare(r, job.sourceDir, job.output);
        this.update(r, { state: "done", notes, result: { ...c, seconds: (performance.now() - t0) / 1000 } });
      }
    } catch (e) {
      if (r.cancelled) this.update(r, { state: "cancelled", message: null });
      else this.update(r, { state: "error", message: e instanceof Error ? e.message : String(e) });
    }
  }

  /**
   * Both models measured the same way, each in its own process (so memory is that model's): `moe-studio bench`
   * (32 prompt tokens, 16 generated: prefill/decode tokens/s and peak RSS) and `moe-studio logits` on the fixed
   * token stream for KL and top-1.
   */
  async compare(r: Running, src: string, out: string) {
    const ids = TextTokenizer.fromFolder(src).encode(ACCURACY_TEXT, { addSpecialTokens: false }).slice(0, ACCURACY_TOKENS);
    const measure = async (dir: string) => {
      const b = parseBench(await this.command(r, ["bench", "--model", dir, "--prompt-tokens", "32", "--gen-tokens", "16"]));
      const logits = (JSON.parse(await this.command(r, ["logits", "--model", dir, "--ids", ids.join(",")])) as { logits: number[][] }).logits;
      return { side: { path: dir, fileBytes: modelBytes(dir), memoryBytes: b.peakBytes, prefillTokensPerSecond: b.prefill, decodeTokensPerSecond: b.decode }, logits };
    };
    const a = await measure(src);
    const b = await measure(out);
    const { kl, top1 } = compareLogits(a.logits, b.logits);
    return { source: a.side, quantized: b.side, klDivergence: kl, top1Agreement: top1 };
  }

  dispose() {
    this.disposed = true;
    for (const r of this.jobs.values()) {
      if (r.child) {
        r.cancelled = true;
        r.child.kill("SIGINT");
      }
    }
  }
}
