// QuantizeService (the app's Quantize action: the "quantize" and "gguf" kinds of the job service) with the real CLI
// in child processes and the jobs in a real database file: a GGUF export job reports progress and ends with the size
// comparison as its result; Cancel mid-export leaves nothing; a taken name, a folder that is not a model and a path for a name
// are refused; the comparison used for quantized model folders (bench + logits in separate processes, KL/top-1 on
// a fixed token stream) measures an identical copy as KL 0 and top-1 100%.
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { calls, events as eventSchemas, QuantizeResult, RpcError, type Job } from "../../electron/contract.js";
import { cliJob } from "../../electron/jobs/cli-process.js";
import { JobService } from "../../electron/jobs/service.js";
import { compare, compareLogits, parseBench, QuantizeService } from "../../electron/services/quantize.js";
import { pidAlive } from "../../electron/services/leftovers.js";
import { openDatabase } from "../../electron/store/db.js";
import { JobsStore } from "../../electron/store/jobs.js";
import { MODELS, ROOT } from "./fixtures.js";
import { listLocal, readOrigin } from "../../electron/library/local.js";
// @ts-expect-error plain ESM helper shared with check_gguf.py
import { makeLargeLlama } from "../fixtures/gguf/make_models.mjs";

let data: string;
let events: Job[];
let jobs: JobService;
let svc: QuantizeService;
let db: ReturnType<typeof openDatabase>;

beforeAll(() => {
  data = mkdtempSync(join(tmpdir(), "moe-quantize-svc-"));
  events = [];
  db = openDatabase(join(data, "moe-studio.db"));
  jobs = new JobService({ store: new JobsStore(db), emit: ((name: string, payload: Job) => {
    if (name === "jobs.job") events.push(payload);
  }) as never });
  svc = new QuantizeService(() => join(data, "models"), jobs);
});
afterAll(async () => {
  await jobs.dispose();
  db.close();
  rmSync(data, { recursive: true, force: true });
});

async function finished(id: string, timeout = 120_000, service: JobService = jobs): Promise<Job> {
  const t0 = Date.now();
  for (;;) {
    const j = service.get(id);
    if (j.status === "done" || j.status === "failed" || j.status === "cancelled") return j;
    if (Date.now() - t0 > timeout) throw new Error(`job ${id} still ${j.status}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const resultOf = (j: Job) => QuantizeResult.parse(j.result);

describe("QuantizeService", () => {
  it("a GGUF export job: progress events, then done with both file sizes", async () => {
    const job = svc.start({ dir: join(MODELS, "qwen3"), target: "gguf", format: "q8_0", name: "qwen3-q8" });
    expect(job).toMatchObject({ kind: "gguf", status: "running", subject: join(MODELS, "qwen3"), canPause: false, canResume: false });
    const done = await finished(job.id);
    expect(done.status, done.error ?? "").toBe("done");
    const r = resultOf(done);
    expect(r.output).toBe(join(data, "models", "qwen3-q8.gguf"));
    expect(readFileSync(r.output).subarray(0, 4).toString("ascii")).toBe("GGUF");
    expect(r.source.fileBytes).toBe(readFileSync(join(MODELS, "qwen3", "model.safetensors")).length);
    expect(r.quantized.fileBytes).toBe(readFileSync(r.output).length);
    // f32 source -> Q8_0 (8.5 bits) and f32 norms: well under a third of the bytes
    expect(r.quantized.fileBytes / r.source.fileBytes).toBeLessThan(0.4);
    expect(r.klDivergence).toBeNull(); // the engine does not run GGUF files: not measured, not invented
    // the Models view's listing names where it came from (the sidecar beside the file: a GGUF has no folder)
    expect(readOrigin(r.output, false)).toEqual({ origin: "quantize", source: join(MODELS, "qwen3"), format: "q8_0" });
    const mine = events.filter((e) => e.id === job.id);
    expect(mine.some((e) => e.status === "running" && (e.progress?.done ?? 0) > 0 && e.progress!.done < 1)).toBe(true);
    expect(mine.at(-1)!.status).toBe("done");
    // every event is valid against the contract
    for (const e of mine) expect(() => eventSchemas["jobs.job"].parse(e)).not.toThrow();
    // and the record in the database says the same
    expect(new JobsStore(db).list("gguf").find((x) => x.id === job.id)!.status).toBe("done");
  });

  it("a model-folder job runs `moe-studio quantize`, then measures both models: sizes, memory, tokens/s, KL and top-1", async () => {
    const job = svc.start({ dir: join(MODELS, "qwen3_moe"), target: "model", format: "q8_0", name: "qwen3_moe-q8" });
    expect(job.kind).toBe("quantize");
    const done = await finished(job.id, 300_000);
    expect(done.status, done.error ?? "").toBe("done");
    const r = resultOf(done);
    expect(existsSync(join(r.output, "config.json"))).toBe(true);
    expect(listLocal(join(data, "models")).find((e) => e.path === r.output)).toMatchObject({ kind: "model", architecture: "qwen3_moe", origin: { origin: "quantize", source: join(MODELS, "qwen3_moe"), format: "q8_0" } });
    // bf16 -> Q8_0 (8.5 bits/weight) with f32 norms/routers kept: a bit over half the bytes
    expect(r.quantized.fileBytes / r.source.fileBytes).toBeLessThan(0.7);
    for (const side of [r.source, r.quantized]) {
      expect(side.decodeTokensPerSecond).toBeGreaterThan(0);
      expect(side.memoryBytes).toBeGreaterThan(1024 * 1024);
    }
    // int8 weights on the fixed stream: KL well under 1e-2 and most top-1 kept (the quantize branch's own accuracy
    // tests hold the tight per-fixture bounds; this checks the app measures and reports them)
    expect(r.klDivergence!).toBeGreaterThan(0);
    expect(r.klDivergence!).toBeLessThan(1e-2);
    expect(r.top1Agreement!).toBeGreaterThan(0.8);
    // the comparison runs after the output is written, with a message saying so
    expect(events.filter((e) => e.id === job.id).some((e) => e.status === "running" && e.progress?.done === 1 && /Comparing/.test(e.message ?? ""))).toBe(true);
  });

  it("Cancel mid-export stops the CLI (SIGINT): state cancelled, no file and no temporary file left", async () => {
    const big = makeLargeLlama(join(data, "src", "large_llama"));
    const job = svc.start({ dir: big, target: "gguf", format: "q8_0", name: "large" });
    const t0 = Date.now();
    while (!((jobs.get(job.id).progress?.done ?? 0) > 0)) {
      if (Date.now() - t0 > 60_000) throw new Error("no progress");
      await new Promise((r) => setTimeout(r, 20));
    }
    jobs.cancel(job.id);
    const done = await finished(job.id);
    expect(done.status).toBe("cancelled");
    expect(done.progress!.done).toBeLessThan(1);
    expect(done.result).toBeNull();
    expect(existsSync(join(data, "models", "large.gguf"))).toBe(false);
    expect(readdirSync(join(data, "models")).filter((f) => f.startsWith("large"))).toEqual([]);
    // after a restart (a new service on the same database file) the job is still cancelled, and still nothing is there
    const again = new JobService({ store: new JobsStore(db), emit: () => undefined });
    new QuantizeService(() => join(data, "models"), again);
    expect(again.get(job.id)).toMatchObject({ status: "cancelled", kind: "gguf" });
    expect(readdirSync(join(data, "models")).filter((f) => f.startsWith("large"))).toEqual([]);
    // retried there, it is the same export again (same source, format, name)
    const retried = again.retry(job.id);
    expect(() => again.get(job.id)).toThrow(RpcError);
    expect(retried).toMatchObject({ kind: "gguf", status: "running", subject: big, title: "Export large.gguf (GGUF Q8_0)" });
    again.cancel(retried.id);
    expect((await finished(retried.id, 60_000, again)).status).toBe("cancelled");
    expect(readdirSync(join(data, "models")).filter((f) => f.startsWith("large"))).toEqual([]);
  });

  it("refuses a taken name, a folder that is not a model, and a path instead of a name", () => {
    expect(() => svc.start({ dir: join(MODELS, "qwen3"), target: "gguf", format: "q8_0", name: "qwen3-q8" })).toThrow(/qwen3-q8\.gguf already exists/);
    expect(() => svc.start({ dir: data, target: "gguf", format: "q8_0", name: "x" })).toThrow(RpcError);
    const input = calls["quantize.start"].input;
    expect(input.safeParse({ dir: "/m", target: "gguf", format: "q8_0", name: "../evil" }).success).toBe(false);
    expect(input.safeParse({ dir: "/m", target: "gguf", format: "q8_0", name: ".." }).success).toBe(false);
    expect(input.safeParse({ dir: "/m", target: "gguf", format: "q3_k", name: "x" }).success).toBe(false);
    expect(input.safeParse({ dir: "/m", target: "gguf", format: "q4_k", name: "ok name" }).success).toBe(true);
  });

  it("an export that fails reports the CLI's one-line error and leaves nothing", async () => {
    const job = svc.start({ dir: join(MODELS, "hunyuan_large"), target: "gguf", format: "f16", name: "hl" });
    const done = await finished(job.id);
    expect(done.status).toBe("failed");
    expect(done.error).toMatch(/has no llama\.cpp architecture/);
    expect(existsSync(join(data, "models", "hl.gguf"))).toBe(false);
  });

  it("compare(): an identical copy measures KL 0 and top-1 100%, with tokens/s and memory from bench", async () => {
    const copy = join(data, "qwen3-copy");
    cpSync(join(MODELS, "qwen3"), copy, { recursive: true });
    const exec = cliJob((cli) => compare(cli, join(MODELS, "qwen3"), copy), { report: { progress: () => undefined, message: () => undefined, detail: () => undefined } });
    const c = (await exec.done) as Awaited<ReturnType<typeof compare>>;
    expect(c.klDivergence).toBe(0);
    expect(c.top1Agreement).toBe(1);
    for (const s of [c.source, c.quantized]) {
      expect(s.decodeTokensPerSecond).toBeGreaterThan(0);
      expect(s.prefillTokensPerSecond).toBeGreaterThan(0);
      expect(s.memoryBytes).toBeGreaterThan(1024 * 1024);
    }
  });
});

describe("QuantizeService across a crash", () => {
  it("an export killed mid-way with its app (SIGKILL to the process group) is listed as interrupted after a restart; Retry and Remove", async () => {
    const root = mkdtempSync(join(tmpdir(), "moe-quantize-crash-"));
    const models = join(root, "models");
    const dbFile = join(root, "moe-studio.db");
    try {
      const big = makeLargeLlama(join(root, "src", "large_llama"));
      // the "app": a process that owns the database and runs the job through the compiled service, as the app does
      const app = join(root, "app.mjs");
      const out = (m: string) => JSON.stringify(pathToFileURL(join(ROOT, "out/electron", m)).href);
      writeFileSync(
        app,
        `import { openDatabase } from ${out("store/db.js")};
import { JobsStore } from ${out("store/jobs.js")};
import { JobService } from ${out("jobs/service.js")};
import { QuantizeService } from ${out("services/quantize.js")};
const [dbFile, models, src] = process.argv.slice(2);
const jobs = new JobService({ store: new JobsStore(openDatabase(dbFile)), emit: (name, job) => { if (name === "jobs.job" && job.progress?.done > 0) process.stdout.write("progress\\n"); } });
new QuantizeService(() => models, jobs).start({ dir: src, target: "gguf", format: "q8_0", name: "large" });
`,
      );
      const child = spawn(process.execPath, [app, dbFile, models, big], { detached: true, stdio: ["ignore", "pipe", "inherit"] });
      await new Promise<void>((resolveP, reject) => {
        child.stdout.on("data", () => resolveP());
        child.once("exit", (code) => reject(new Error(`the app exited (${code}) before any progress`)));
      });
      process.kill(-child.pid!, "SIGKILL"); // the app and its CLI child, as a power cut or an OOM kill of the session would
      await new Promise((r) => child.once("exit", r));

      const db = openDatabase(dbFile);
      try {
        type Saved = { detail: { pid: number } };
        const [rec] = new JobsStore(db).list<Saved>("gguf");
        expect(rec.status).toBe("running");
        const pid = rec.detail.detail.pid;
        await expect.poll(() => pidAlive(pid), { timeout: 10_000 }).toBe(false);
        const temp = readdirSync(models).filter((f) => f.startsWith(`large.gguf.tmp-${pid}-`));
        expect(temp).toHaveLength(1); // what the killed CLI was writing

        // "restart": a new job service on the same database, the quantize kinds registered with it
        const seen: Job[] = [];
        const again = new JobService({ store: new JobsStore(db), emit: ((n: string, j: Job) => seen.push(j)) as never });
        new QuantizeService(() => models, again);
        const [job] = again.list();
        expect(job.id).toBe(rec.id);
        expect(job.status).toBe("interrupted");
        expect(job.message).toMatch(/stopped while this job was running/);
        expect(job.progress!.done).toBeLessThan(1); // as last saved (progress is saved at most 4 times a second)
        expect(() => calls["jobs.list"].output.parse([job])).not.toThrow();
        expect(readdirSync(models)).toEqual([]); // its dead CLI's temporary file went at once; no output either
        expect(new JobsStore(db).list("gguf")[0].status).toBe("interrupted");
        // a third start still lists it (interrupted is not active: not re-marked, not lost)
        expect(new JobService({ store: new JobsStore(db), emit: () => undefined }).list().map((j) => j.status)).toEqual(["interrupted"]);
        expect(() => again.resume(job.id)).toThrow(/cannot be resumed/);

        // Retry: a new job with the same source, format and name, in place of the interrupted one
        const retried = again.retry(job.id);
        expect(retried).toMatchObject({ kind: "gguf", subject: big, status: "running", title: job.title });
        expect(again.list().map((j) => j.id)).toEqual([retried.id]);
        expect(() => again.remove(retried.id)).toThrow(/running: cancel it first/);
        expect(() => again.retry("nope")).toThrow(RpcError);
        // the app quits while the retry runs: dispose() stops the CLI (SIGINT, it removes its temporary file) and
        // the job is saved as cancelled — what the user then sees after the next start
        await expect.poll(() => new JobsStore(db).list<{ detail: { pid?: number } }>("gguf")[0]?.detail.detail.pid ?? null, { timeout: 30_000 }).not.toBeNull();
        const cliPid = new JobsStore(db).list<Saved>("gguf")[0].detail.detail.pid;
        await again.dispose();
        expect(pidAlive(cliPid)).toBe(false);
        const third = new JobService({ store: new JobsStore(db), emit: () => undefined });
        new QuantizeService(() => models, third);
        expect(third.list().map((j) => [j.id, j.status])).toEqual([[retried.id, "cancelled"]]);
        expect(readdirSync(models)).toEqual([]);
        // Remove forgets it, also for the next start
        third.remove(retried.id);
        expect(third.list()).toEqual([]);
        expect(new JobsStore(db).list("gguf")).toEqual([]);
      } finally {
        db.close();
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe("comparison math", () => {
  it("compareLogits: KL of softmax rows and top-1, against a hand computation", () => {
    // p = softmax([0, ln 3]) = [1/4, 3/4]; q = softmax([0, 0]) = [1/2, 1/2]
    // KL = 1/4 ln(1/2) + 3/4 ln(3/2) = 0.130812...
    const { kl, top1 } = compareLogits([[0, Math.log(3)], [5, 1]], [[0, 0], [2, 1]]);
    expect(kl).toBeCloseTo((0.25 * Math.log(0.5) + 0.75 * Math.log(1.5)) / 2 + klOf([5, 1], [2, 1]) / 2, 12);
    // row 0: p's argmax is token 1, q's (a tie) the first index, 0: disagree; row 1: both token 0
    expect(top1).toBe(0.5);
  });

  it("parseBench reads the CLI's bench lines", () => {
    const out = "prefill: 32 tokens in 10.0 ms = 3200.00 tok/s\ndecode: 16 tokens in 100.0 ms = 160.00 tok/s\npeak RSS: 12.5 MiB\n";
    expect(parseBench(out)).toEqual({ prefill: 3200, decode: 160, peakBytes: 12.5 * 1024 * 1024 });
  });
});

function klOf(a: number[], b: number[]): number {
  const sm = (x: number[]) => {
    const e = x.map(Math.exp);
    const s = e.reduce((u, v) => u + v, 0);
    return e.map((v) => v / s);
  };
  const p = sm(a);
  const q = sm(b);
  return p.reduce((acc, pi, i) => acc + pi * Math.log(pi / q[i]), 0);
}
