// The job service (electron/jobs/service.ts) with real kinds and a real SQLite database file: a chunked file copy
// (test/helpers/copy-kind.mjs: pause at a chunk boundary, resume from the saved offset, cancel removes its partial
// file) and a kind that runs the real moe-studio CLI in a child process (electron/jobs/cli-process.ts). "Restart" is
// a new JobService on the same database file; "a crash" is a child app process killed with SIGKILL mid-job.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { events as eventSchemas, RpcError, type Job } from "../../electron/contract.js";
import { cliProcess } from "../../electron/jobs/cli-process.js";
import { PAUSED, type JobKindHandler } from "../../electron/jobs/kind.js";
import { FLUSH_MS, JobService } from "../../electron/jobs/service.js";
import { openDatabase, type Db } from "../../electron/store/db.js";
import { JobsStore, type JobRecord } from "../../electron/store/jobs.js";
// @ts-expect-error plain ESM helper shared with the child app process below
import { copyKind } from "../helpers/copy-kind.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
type CopyParams = { src: string; out: string };
const kindOf = (o?: { kind?: string; canPause?: boolean; chunk?: number; delayMs?: number }) => copyKind(PAUSED, o) as JobKindHandler<CopyParams>;

let dir: string;
let dbFile: string;
const dbs: Db[] = [];
const services: JobService[] = [];

function open(opts: { now?: () => number; kinds?: JobKindHandler<CopyParams>[]; store?: JobsStore } = {}) {
  const db = openDatabase(dbFile);
  dbs.push(db);
  const events: { name: string; payload: unknown }[] = [];
  const jobs = new JobService({ store: opts.store ?? new JobsStore(db), emit: ((name: string, payload: unknown) => events.push({ name, payload })) as never, ...(opts.now ? { now: opts.now } : {}) });
  for (const k of opts.kinds ?? [kindOf()]) jobs.register(k);
  services.push(jobs);
  return { jobs, db, events, rows: () => new JobsStore(db).list() as JobRecord<{ detail: Record<string, unknown> }>[] };
}

async function until(jobs: JobService, id: string, pred: (j: Job) => boolean, timeout = 30_000): Promise<Job> {
  const t0 = Date.now();
  for (;;) {
    const j = jobs.get(id);
    if (pred(j)) return j;
    if (Date.now() - t0 > timeout) throw new Error(`job ${id} still ${j.status} (${JSON.stringify(j.progress)})`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
const settled = (j: Job) => ["done", "failed", "cancelled", "paused"].includes(j.status);
const midway = (j: Job) => (j.progress?.done ?? 0) > 0;

function source(bytes: number): { src: string; data: Buffer } {
  const data = randomBytes(bytes);
  const src = join(dir, `src-${bytes}-${Math.random().toString(36).slice(2)}.bin`);
  writeFileSync(src, data);
  return { src, data };
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "moe-jobs-"));
  dbFile = join(dir, "moe-studio.db");
});
afterEach(async () => {
  for (const s of services.splice(0)) await s.dispose();
  for (const d of dbs.splice(0)) d.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("JobService", () => {
  it("runs a job to done: running with progress, then done with the kind's result; every event matches the contract", async () => {
    const { jobs, events, rows } = open();
    const { src, data } = source(512 * 1024);
    const out = join(dir, "out.bin");
    const job = jobs.start("export", { src, out });
    expect(job).toMatchObject({ kind: "export", status: "running", title: `Copy ${src}`, subject: out, canPause: true, canResume: false, result: null });
    const done = await until(jobs, job.id, settled);
    expect(done.status).toBe("done");
    expect(done.result).toEqual({ bytes: data.length });
    expect(done.progress).toEqual({ done: data.length, total: data.length, unit: "bytes" });
    expect(readFileSync(out).equals(data)).toBe(true);
    expect(existsSync(`${out}.partial`)).toBe(false);
    const mine = events.filter((e) => e.name === "jobs.job").map((e) => e.payload as Job);
    for (const e of mine) expect(() => eventSchemas["jobs.job"].parse(e)).not.toThrow();
    expect(mine.at(-1)!.status).toBe("done");
    expect(rows().map((r) => r.status)).toEqual(["done"]);
    expect(jobs.list("export").map((j) => j.id)).toEqual([job.id]);
    expect(jobs.list("quantize")).toEqual([]);
  });

  it("refuses what its kind refuses before a row exists, and answers unknown ids and kinds clearly", () => {
    const { jobs, rows } = open();
    expect(() => jobs.start("export", { src: join(dir, "nope"), out: join(dir, "o") })).toThrow(/no such file/);
    expect(rows()).toEqual([]);
    expect(() => jobs.start("train", {})).toThrow(/train jobs are not available/);
    for (const f of [() => jobs.get("x"), () => jobs.cancel("x"), () => jobs.pause("x"), () => jobs.resume("x"), () => jobs.retry("x"), () => jobs.remove("x")]) {
      expect(f).toThrow(RpcError);
    }
  });

  it("cancel midway: nothing half-written, cancelled; after a restart still cancelled and nothing there; retry starts it again in its place", async () => {
    const a = open();
    const { src, data } = source(4 * 1024 * 1024);
    const out = join(dir, "out.bin");
    const job = a.jobs.start("export", { src, out });
    await until(a.jobs, job.id, midway);
    expect(() => a.jobs.remove(job.id)).toThrow(/running: cancel it first/);
    a.jobs.cancel(job.id);
    const c = await until(a.jobs, job.id, settled);
    expect(c.status).toBe("cancelled");
    expect(c.progress!.done).toBeLessThan(data.length);
    expect(existsSync(out)).toBe(false);
    expect(existsSync(`${out}.partial`)).toBe(false);
    expect(() => a.jobs.cancel(job.id)).not.toThrow(); // already cancelled: nothing to do
    expect(() => a.jobs.pause(job.id)).toThrow(/only a running job/);

    const b = open();
    expect(b.jobs.get(job.id)).toMatchObject({ status: "cancelled", title: c.title, subject: out, progress: c.progress });
    expect(existsSync(out) || existsSync(`${out}.partial`)).toBe(false);
    const again = b.jobs.retry(job.id);
    expect(again.id).not.toBe(job.id);
    expect(b.events).toContainEqual({ name: "jobs.removed", payload: { id: job.id } });
    expect(() => b.jobs.get(job.id)).toThrow(RpcError);
    expect((await until(b.jobs, again.id, settled)).status).toBe("done");
    expect(readFileSync(out).equals(data)).toBe(true);
    expect(b.rows().map((r) => [r.id, r.status])).toEqual([[again.id, "done"]]);
    expect(() => b.jobs.retry(again.id)).toThrow(/only a failed, cancelled or interrupted job/);
    b.jobs.remove(again.id);
    expect(b.rows()).toEqual([]);
    expect(readFileSync(out).equals(data)).toBe(true); // what it produced stays
  });

  it("pause midway saves the resume point; a paused job stays paused across a restart and resumes there to a whole file", async () => {
    const a = open();
    const { src, data } = source(4 * 1024 * 1024);
    const out = join(dir, "out.bin");
    const job = a.jobs.start("export", { src, out });
    await until(a.jobs, job.id, midway);
    expect(a.jobs.pause(job.id).status).toBe("pausing");
    const p = await until(a.jobs, job.id, settled);
    expect(p).toMatchObject({ status: "paused", canPause: false, canResume: true });
    const [row] = a.rows();
    expect(row.status).toBe("paused");
    const offset = row.detail.detail.offset as number;
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThan(data.length);
    expect(existsSync(out)).toBe(false); // nothing that looks whole
    expect(readFileSync(`${out}.partial`).subarray(0, offset).equals(data.subarray(0, offset))).toBe(true);

    const b = open();
    expect(b.jobs.get(job.id)).toMatchObject({ status: "paused", canResume: true });
    const r = b.jobs.resume(job.id);
    expect(r.status).toBe("running");
    const d = await until(b.jobs, job.id, settled);
    expect(d.status).toBe("done");
    expect(readFileSync(out).equals(data)).toBe(true);
    // it continued from the offset: the first progress after the resume is one chunk past it
    const after = b.events.filter((e) => e.name === "jobs.job").map((e) => e.payload as Job).find((j) => j.progress && j.progress.done > offset);
    expect(after).toBeDefined();
  });

  it("a job its app was killed under (SIGKILL) is interrupted at the next start, its leftovers swept; resume then finishes it whole", async () => {
    const { src, data } = source(8 * 1024 * 1024);
    const out = join(dir, "out.bin");
    const app = join(dir, "app.mjs");
    const url = (p: string) => JSON.stringify(pathToFileURL(join(ROOT, p)).href);
    writeFileSync(
      app,
      `import { openDatabase } from ${url("out/electron/store/db.js")};
import { JobsStore } from ${url("out/electron/store/jobs.js")};
import { JobService } from ${url("out/electron/jobs/service.js")};
import { PAUSED } from ${url("out/electron/jobs/kind.js")};
import { copyKind } from ${url("test/helpers/copy-kind.mjs")};
const [dbFile, src, out] = process.argv.slice(2);
const jobs = new JobService({ store: new JobsStore(openDatabase(dbFile)), emit: (name, j) => { if (name === "jobs.job" && j.progress?.done > 0) process.stdout.write("progress\\n"); } });
jobs.register(copyKind(PAUSED));
jobs.start("export", { src, out });
`,
    );
    const child = spawn(process.execPath, [app, dbFile, src, out], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.once("data", () => resolve());
      child.once("exit", (code) => reject(new Error(`the app exited (${code}) before any progress`)));
    });
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    expect(existsSync(`${out}.partial`)).toBe(true); // what the dead process was writing

    // a new start without the kind registered yet: interrupted at once, the sweep waits for the kind
    const db = openDatabase(dbFile);
    dbs.push(db);
    const bare = new JobService({ store: new JobsStore(db), emit: () => undefined });
    services.push(bare);
    const [j] = bare.list();
    expect(j).toMatchObject({ kind: "export", status: "interrupted", canResume: false });
    expect(j.message).toMatch(/stopped while this job was running/);
    expect(new JobsStore(db).list()[0].status).toBe("interrupted");
    expect(existsSync(`${out}.partial`)).toBe(true);
    bare.register(kindOf());
    expect(existsSync(`${out}.partial`)).toBe(false);
    expect(bare.get(j.id)).toMatchObject({ status: "interrupted", canResume: true });
    // interrupted is not active: a third start does not sweep or re-mark it, and it is not lost
    const third = open();
    expect(third.jobs.list().map((x) => [x.id, x.status])).toEqual([[j.id, "interrupted"]]);
    await third.jobs.dispose();
    // resume: the partial is gone, so the kind starts over, and finishes whole
    const r = bare.resume(j.id);
    expect(r.status).toBe("running");
    expect((await until(bare, j.id, settled)).status).toBe("done");
    expect(readFileSync(out).equals(data)).toBe(true);
  });

  it("a label (the title's message key) is announced, kept across a restart, and a key this version does not know falls back to the title", async () => {
    const labelled = { ...kindOf(), label: (p: CopyParams) => ({ key: "download" as const, args: { name: p.out } }) };
    const a = open({ kinds: [labelled] });
    const { src } = source(64 * 1024);
    const out = join(dir, "labelled.bin");
    const job = a.jobs.start("export", { src, out });
    expect(job.label).toEqual({ key: "download", args: { name: out } });
    await until(a.jobs, job.id, settled);
    // a row a later version wrote with a key this one has no message for
    const store = new JobsStore(a.db);
    const row = store.list<{ label: unknown }>().find((r) => r.id === job.id)!;
    expect(row.detail.label).toEqual({ key: "download", args: { name: out } });
    store.save({ ...row, id: "later-version-row", detail: { ...row.detail, label: { key: "not-a-key-yet", args: {} } } });
    const b = open({ kinds: [kindOf()] });
    expect(b.jobs.get(job.id).label).toEqual({ key: "download", args: { name: out } });
    expect(b.jobs.get("later-version-row")).toMatchObject({ label: null, title: `Copy ${src}` });
    expect(() => eventSchemas["jobs.job"].parse(b.jobs.get(job.id))).not.toThrow();
  });

  it("onJob: a main-process listener hears every change the renderer does, and one that throws harms nothing", async () => {
    const { jobs, events } = open();
    const heard: string[] = [];
    jobs.onJob(() => {
      throw new Error("a broken listener");
    });
    const off = jobs.onJob((j) => heard.push(j.status));
    const { src } = source(256 * 1024);
    const job = jobs.start("export", { src, out: join(dir, "heard.bin") });
    const done = await until(jobs, job.id, settled);
    expect(done.status).toBe("done");
    const sent = events.filter((e) => e.name === "jobs.job").map((e) => (e.payload as Job).status);
    expect(heard).toEqual(sent);
    expect(heard.at(-1)).toBe("done");
    off();
    const n = heard.length;
    const again = jobs.start("export", { src, out: join(dir, "unheard.bin") });
    await until(jobs, again.id, settled);
    expect(heard.length).toBe(n);
  });

  it("coalesces progress: at most one write and one event per job every FLUSH_MS, state changes at once", async () => {
    class CountingStore extends JobsStore {
      saves = 0;
      override save<D>(r: JobRecord<D>): void {
        this.saves++;
        super.save(r);
      }
    }
    const db = openDatabase(dbFile);
    dbs.push(db);
    const store = new CountingStore(db);
    const { jobs, events } = open({ store, kinds: [kindOf({ chunk: 1024, delayMs: 0 })] });
    const { src } = source(1024 * 1024); // 1024 progress reports
    const t0 = Date.now();
    const job = jobs.start("export", { src, out: join(dir, "out.bin") });
    expect((await until(jobs, job.id, settled, 60_000)).status).toBe("done");
    const ms = Date.now() - t0;
    const ticks = Math.ceil(ms / FLUSH_MS) + 1;
    const mine = events.filter((e) => e.name === "jobs.job" && (e.payload as Job).id === job.id);
    // start + done + the detail write at start, plus one per flush window
    expect(mine.length).toBeLessThanOrEqual(ticks + 2);
    expect(store.saves).toBeLessThanOrEqual(ticks + 3);
    expect(mine.length).toBeGreaterThan(2); // and progress did come through while it ran
  });

  it("never waits for a write lock another connection holds (an import's worker): the row is written once it is free", async () => {
    const { jobs, rows } = open({ kinds: [kindOf({ chunk: 64 * 1024, delayMs: 5 })] });
    const other = openDatabase(dbFile);
    dbs.push(other);
    other.exec("BEGIN IMMEDIATE"); // the write lock, as a bulk import's transaction holds it
    const { src } = source(1024 * 1024);
    const t0 = performance.now();
    const job = jobs.start("export", { src, out: join(dir, "out.bin") });
    await until(jobs, job.id, midway);
    // the busy timeout is 5 s: a start, a detail write and progress writes that waited for it would take that long
    expect(performance.now() - t0).toBeLessThan(2500);
    expect(rows().map((r) => r.id)).not.toContain(job.id); // nothing could be written yet
    other.exec("COMMIT");
    expect((await until(jobs, job.id, settled)).status).toBe("done");
    for (let t = Date.now(); Date.now() - t < 5000 && rows().find((r) => r.id === job.id)?.status !== "done"; ) await new Promise((r) => setTimeout(r, 20));
    expect(rows().find((r) => r.id === job.id)).toMatchObject({ status: "done" });
    expect(other.pragma("busy_timeout", { simple: true })).toBe(5000);
    expect((jobs as unknown as { store: JobsStore }).store.db.pragma("busy_timeout", { simple: true })).toBe(5000); // restored after each try
  });

  it("dispose(): a pausable job pauses, the others are cancelled; both awaited and saved", async () => {
    const a = open({ kinds: [kindOf(), kindOf({ kind: "import", canPause: false })] });
    const one = source(8 * 1024 * 1024);
    const two = source(8 * 1024 * 1024);
    const p = a.jobs.start("export", { src: one.src, out: join(dir, "one.bin") });
    const c = a.jobs.start("import", { src: two.src, out: join(dir, "two.bin") });
    await until(a.jobs, p.id, midway);
    await until(a.jobs, c.id, midway);
    await a.jobs.dispose();
    expect(a.jobs.get(p.id).status).toBe("paused");
    expect(a.jobs.get(c.id).status).toBe("cancelled");
    expect(existsSync(join(dir, "two.bin.partial"))).toBe(false);
    expect(existsSync(join(dir, "one.bin.partial"))).toBe(true);
    expect(() => a.jobs.start("export", { src: one.src, out: join(dir, "x.bin") })).toThrow(/shutting down/);
    const b = open({ kinds: [kindOf(), kindOf({ kind: "import", canPause: false })] });
    expect(b.jobs.list().map((j) => j.status)).toEqual(["paused", "cancelled"]);
    expect(() => b.jobs.resume(c.id)).toThrow(/only a paused or interrupted job/);
    b.jobs.cancel(p.id); // a paused job cancelled: over, and it stays so
    expect(b.jobs.get(p.id).status).toBe("cancelled");
    expect(open().jobs.get(p.id).status).toBe("cancelled");
  });

  it("keeps finished jobs for 14 days, and the newest 200", async () => {
    const day = 24 * 3600 * 1000;
    const { src } = source(16);
    const old = open({ now: () => Date.now() - 15 * day });
    const stale = old.jobs.start("export", { src, out: join(dir, "stale.bin") });
    await until(old.jobs, stale.id, settled);
    const paused = old.jobs.start("export", { src: source(4 * 1024 * 1024).src, out: join(dir, "p.bin") });
    old.jobs.pause(paused.id);
    await until(old.jobs, paused.id, settled);
    expect(old.jobs.get(paused.id).status).toBe("paused");
    const a = open();
    // the stale finished one is gone; the paused one (not finished) stays however old
    expect(a.jobs.list().map((j) => j.id)).toEqual([paused.id]);
    for (let i = 0; i < 201; i++) {
      const j = a.jobs.start("export", { src, out: join(dir, `o${i}.bin`) });
      await until(a.jobs, j.id, settled);
    }
    const finished = a.jobs.list().filter((j) => j.status === "done");
    expect(finished).toHaveLength(200);
    expect(a.events.filter((e) => e.name === "jobs.removed")).toHaveLength(1);
    expect(a.rows().length).toBe(201);
  });
});

describe("cli-process", () => {
  it("a CLI that fails ends the job failed with its last stderr line; the child's pid is in the detail", async () => {
    const cliKind: JobKindHandler<{ model: string }> = {
      kind: "gguf",
      canPause: false,
      canResume: false,
      title: (p) => `Export ${p.model}`,
      subject: (p) => p.model,
      start: (p, report) => cliProcess(["export-gguf", "--model", p.model, "--type", "q8_0", "--out", join(dir, "x.gguf"), "--json"], { report }),
    };
    const { jobs, rows } = open({ kinds: [cliKind as unknown as JobKindHandler<CopyParams>] });
    const job = jobs.start("gguf", { model: join(dir, "no-model") });
    const f = await until(jobs, job.id, settled);
    expect(f.status).toBe("failed");
    expect(f.error).toBe(`${join(dir, "no-model")}: model folder not found`);
    expect(rows()[0].detail.detail.pid).toEqual(expect.any(Number));
  });
});

describe("rows an earlier version's quantize service wrote", () => {
  it("are listed by the job service after the upgrade: a running one interrupted, a done one with its comparison", async () => {
    const { QuantizeService, upgradeLegacyQuantizeRows } = await import("../../electron/services/quantize.js");
    const { QuantizeResult } = await import("../../electron/contract.js");
    const db = openDatabase(dbFile);
    dbs.push(db);
    const store = new JobsStore(db);
    const side = (path: string) => ({ path, fileBytes: 10, memoryBytes: null, prefillTokensPerSecond: null, decodeTokensPerSecond: null });
    const legacy = (id: string, state: string, target: "gguf" | "model", result: unknown) => ({
      id, kind: "quantize", status: state, startedAt: 1000, updatedAt: Date.now() - 1000, error: null,
      detail: { job: { id, target, format: "q8_0", sourceDir: "/m/qwen3", output: `/models/${id}`, state, progress: 0.5, message: null, notes: ["n"], result }, pid: 999_999_999 },
    });
    store.save(legacy("a", "running", "gguf", null));
    store.save(legacy("b", "done", "model", { source: side("/m/qwen3"), quantized: side("/models/b"), klDivergence: 0.001, top1Agreement: 1, seconds: 2 }));
    store.save(legacy("c", "error", "gguf", null));
    expect(upgradeLegacyQuantizeRows(store)).toBe(3);
    expect(upgradeLegacyQuantizeRows(store)).toBe(0); // once
    const jobs = new JobService({ store, emit: () => undefined });
    services.push(jobs);
    new QuantizeService(() => join(dir, "models"), jobs);
    const byId = Object.fromEntries(jobs.list().map((j) => [j.id, j]));
    expect(byId.a).toMatchObject({ kind: "gguf", status: "interrupted", title: "Export a (GGUF Q8_0)", subject: "/m/qwen3", progress: { done: 0.5, total: 1, unit: "fraction" } });
    expect(byId.b).toMatchObject({ kind: "quantize", status: "done" });
    expect(QuantizeResult.parse(byId.b.result)).toMatchObject({ target: "model", format: "q8_0", output: "/models/b", notes: ["n"], klDivergence: 0.001 });
    expect(byId.c).toMatchObject({ kind: "gguf", status: "failed" });
    for (const j of jobs.list()) expect(() => eventSchemas["jobs.job"].parse(j)).not.toThrow();
  });
});

describe("jobs.* over the contract", () => {
  it("quantize.start answers a Job; jobs.list / cancel / retry / remove validate their input and act on it; a restart of the app lists it", async () => {
    const { createAppServices } = await import("../../electron/services/app.js");
    const { createDispatcher } = await import("../../electron/rpc.js");
    const dataDir = join(dir, "data");
    const emitted: string[] = [];
    let app = await createAppServices({ dataDir, emit: (name) => emitted.push(name), transport: "ws" });
    try {
      let call = createDispatcher(app.handlers, { validateOutput: true });
      const model = join(ROOT, "test/fixtures/models/qwen3");
      const job = (await call("quantize.start", { dir: model, target: "gguf", format: "q8_0", name: "q" })) as Job;
      expect(job).toMatchObject({ kind: "gguf", status: "running", subject: model });
      await expect(call("quantize.start", { dir: model, target: "gguf", format: "q8_0", name: "q2" })).rejects.toMatchObject({ code: "busy" });
      await expect(call("jobs.list", { kind: "bogus" })).rejects.toMatchObject({ code: "invalid_input" });
      await expect(call("jobs.cancel", { id: "nope" })).rejects.toMatchObject({ code: "not_found" });
      await expect(call("jobs.pause", { id: job.id })).rejects.toMatchObject({ code: "invalid_input" }); // an export cannot pause
      await expect(call("jobs.remove", { id: job.id })).rejects.toMatchObject({ code: "busy" });
      await call("jobs.cancel", { id: job.id });
      const t0 = Date.now();
      let j = job;
      while (!["cancelled", "done", "failed"].includes(j.status) && Date.now() - t0 < 60_000) {
        await new Promise((r) => setTimeout(r, 50));
        [j] = (await call("jobs.list", { kind: "gguf" })) as Job[];
      }
      expect(j.status).toBe("cancelled");
      expect(existsSync(join(dataDir, "models", "q.gguf"))).toBe(false);
      expect(emitted).toContain("jobs.job");
      expect(emitted).not.toContain("quantize.job");

      // the app restarts: the job is listed as it was; retry runs it to done in its place
      await app.dispose();
      app = await createAppServices({ dataDir, emit: () => undefined, transport: "ws" });
      call = createDispatcher(app.handlers, { validateOutput: true });
      expect(((await call("jobs.list", {})) as Job[]).map((x) => [x.id, x.status])).toEqual([[job.id, "cancelled"]]);
      const again = (await call("jobs.retry", { id: job.id })) as Job;
      for (;;) {
        const cur = ((await call("jobs.list", {})) as Job[]).find((x) => x.id === again.id)!;
        if (cur.status !== "running") {
          expect(cur.status, cur.error ?? "").toBe("done");
          expect((cur.result as { output: string }).output).toBe(join(dataDir, "models", "q.gguf"));
          break;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(((await call("jobs.list", {})) as Job[]).map((x) => x.id)).toEqual([again.id]);
      await call("jobs.remove", { id: again.id });
      expect(await call("jobs.list", {})).toEqual([]);
      expect(existsSync(join(dataDir, "models", "q.gguf"))).toBe(true);
    } finally {
      await app.dispose();
    }
  });
});
